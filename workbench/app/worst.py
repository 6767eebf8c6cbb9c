"""The worst inputs of a verdict as HTML: which samples break, their scores, and what each input is (an image
thumbnail, a waveform, the values) so a user sees what fails. Drawing only: the scores come from the analysis."""
from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np


def worst_inputs_html(scores: Any, data: Any = None, limit: int = 5) -> str:
    """A table of `scores.worst_samples` (analysis.results.Scores) with each sample's input drawn from `data`
    (a Dataset), and the task's worst samples when it has per-sample scores."""
    if scores is None or not scores.worst_samples:
        return ""
    task = {r["index"]: r["score"] for r in scores.task_worst}
    rows = []
    for sample in scores.worst_samples[:limit]:
        index = sample["index"]
        picture = _drawing(data, index) if data is not None else ""
        score = f"{task[index]:.3f}" if index in task else ""
        rows.append(f"<tr><td>{index}</td><td>{picture}</td><td>{html.escape(sample['output'])}</td>"
                    f"<td>{sample['cosine']:.4f}</td><td>{score}</td></tr>")
    head = ("<tr><th>sample</th><th>input</th><th>output</th><th>per-sample cosine</th><th>task score</th></tr>")
    summary = (f"per-sample cosine mean {scores.cosine:.4f}, 5th percentile {scores.cosine_p5:.4f}, worst "
               f"{scores.cosine_worst:.4f} on '{html.escape(str(scores.deciding))}' (pooled over all samples: "
               f"{scores.pooled_cosine:.4f})")
    return (f"<div class='workbench-worst'><b>Worst inputs</b> — {summary}<table style='border-collapse:collapse'>"
            f"{head}{''.join(rows)}</table></div>")


def _drawing(data: Any, index: int) -> str:
    """The sample's first input as a thumbnail (images), a waveform (1-D signals) or its first values."""
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
        return _thumbnail(sample if sample.shape[-1] in (1, 3) else sample.transpose(1, 2, 0))
    if sample.ndim == 1 or (sample.ndim == 2 and min(sample.shape) == 1):
        return _waveform(sample.ravel())
    return html.escape(np.array2string(sample.ravel()[:6], precision=3))


def _thumbnail(image: np.ndarray, size: int = 64) -> str:
    try:
        from PIL import Image
    except ImportError:
        return ""
    image = image.astype(np.float64)
    lo, hi = np.nanmin(image), np.nanmax(image)
    pixels = ((image - lo) / (hi - lo if hi > lo else 1.0) * 255).astype(np.uint8)
    picture = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
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
