"""The worst inputs of a verdict as HTML: which samples break, their scores, what each input is (an image
thumbnail with FP32's and the candidate's boxes, a waveform, the values) and what FP32 and the candidate say for it
in the task's terms, so a user sees what fails. Drawing only: the scores and readouts come from the analysis."""
from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

FP32_COLOUR, CANDIDATE_COLOUR = "#1a9850", "#d73027"


def worst_inputs_html(scores: Any, data: Any = None, limit: int = 5) -> str:
    """A table of the worst samples of `scores` (analysis.results.Scores) by per-sample cosine, then by the task's
    per-sample score, each with its input drawn from `data` (a Dataset) and the task's readout."""
    if scores is None or not (scores.worst_samples or scores.task_worst):
        return ""
    task = {r["index"]: r["score"] for r in scores.task_worst}
    cosines = {r["index"]: r for r in scores.worst_samples}
    readouts = {r["index"]: r for r in getattr(scores, "readouts", [])}
    order = list(dict.fromkeys([r["index"] for r in scores.worst_samples[:limit]]
                               + [r["index"] for r in scores.task_worst[:limit]]))
    rows = []
    for index in order:
        readout = readouts.get(index, {})
        picture = _drawing(data, index, readout.get("boxes")) if data is not None else ""
        sample = cosines.get(index)
        where = html.escape(sample["output"]) if sample else ""
        cosine = f"{sample['cosine']:.4f}" if sample else ""
        score = f"{task[index]:.3f}" if index in task else ""
        said = (f"<span style='color:{FP32_COLOUR}'>FP32: {html.escape(readout['fp32'])}</span><br>"
                f"<span style='color:{CANDIDATE_COLOUR}'>this recipe: {html.escape(readout['candidate'])}</span>"
                if readout else "")
        rows.append(f"<tr><td>{index}</td><td>{picture}</td><td>{where}</td><td>{cosine}</td><td>{score}</td>"
                    f"<td style='font-size:90%'>{said}</td></tr>")
    head = ("<tr><th>sample</th><th>input</th><th>output</th><th>per-sample cosine</th><th>task score</th>"
            "<th>what the model says</th></tr>")
    summary = (f"per-sample cosine mean {scores.cosine:.4f}, 5th percentile {scores.cosine_p5:.4f}, worst "
               f"{scores.cosine_worst:.4f} on '{html.escape(str(scores.deciding))}' (pooled over all samples: "
               f"{scores.pooled_cosine:.4f})")
    legend = (f" · boxes: <span style='color:{FP32_COLOUR}'>FP32</span>, "
              f"<span style='color:{CANDIDATE_COLOUR}'>this recipe</span>"
              if any("boxes" in r for r in readouts.values()) else "")
    return (f"<div class='workbench-worst'><b>Worst inputs</b> — {summary}{legend}"
            f"<table style='border-collapse:collapse'>{head}{''.join(rows)}</table></div>")


def _drawing(data: Any, index: int, boxes: dict | None = None) -> str:
    """The sample's first input as a thumbnail (images, with boxes), a waveform (1-D signals) or its first
    values."""
    if index >= len(data):
        return ""
    name = next(iter(data.inputs))
    value = np.asarray(data.slice(index, index + 1)[name])
    if data.axis(name) is None:
        value = value[None]
    sample = value[0] if value.ndim else value
    if not np.issubdtype(sample.dtype, np.floating):
        return html.escape(" ".join(str(v) for v in sample.ravel()[:12]))
    if sample.ndim == 3 and min(sample.shape[0], sample.shape[-1]) in (1, 3):
        return _thumbnail(sample if sample.shape[-1] in (1, 3) else sample.transpose(1, 2, 0), boxes)
    if sample.ndim == 1 or (sample.ndim == 2 and min(sample.shape) == 1):
        return _waveform(sample.ravel())
    return html.escape(np.array2string(sample.ravel()[:6], precision=3))


def _thumbnail(image: np.ndarray, boxes: dict | None = None, size: int = 64) -> str:
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return ""
    image = image.astype(np.float64)
    lo, hi = np.nanmin(image), np.nanmax(image)
    pixels = ((image - lo) / (hi - lo if hi > lo else 1.0) * 255).astype(np.uint8)
    picture = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).convert("RGB")
    if boxes:  # in the input's pixel coordinates: drawn before scaling, shown larger so they can be read
        size = 160
        pen = ImageDraw.Draw(picture)
        for key, colour in (("fp32", FP32_COLOUR), ("candidate", CANDIDATE_COLOUR)):
            for x1, y1, x2, y2, *_ in boxes.get(key, []):
                pen.rectangle([x1, y1, x2, y2], outline=colour, width=2 if key == "fp32" else 1)
    picture.thumbnail((size, size))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return f"<img src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'/>"


def _waveform(signal: np.ndarray, width: int = 160, height: int = 36) -> str:
    step = max(1, len(signal) // width)
    points = signal[: step * (len(signal) // step)].reshape(-1, step)
    lo, hi = float(points.min()), float(points.max())
    span = hi - lo if hi > lo else 1.0
    top = (1 - (points.max(1) - lo) / span) * height
    bottom = (1 - (points.min(1) - lo) / span) * height
    path = " ".join(f"M{i},{t:.1f}V{b:.1f}" for i, (t, b) in enumerate(zip(top, bottom)))
    return (f"<svg width='{len(points)}' height='{height}'><path d='{path}' stroke='#1f77b4' "
            "stroke-width='1'/></svg>")
