"""Why a node hurts: the local-sensitivity ranking and, per quantized tensor around a node, what its calibrated range
does to its values (clipped, coarse, outlier channels, a ±FLT_MAX mask)."""
from __future__ import annotations

import math

import numpy as np

from workbench.analysis.compare import LayerReport
from workbench.analysis.results import RankedNode
from workbench.model.loading import ModelHandle


def rank(report: LayerReport, quantized: list[str]) -> list[RankedNode]:
    """Quantized nodes, most harmful first: score = relative noise power the node causes on its own (falling back
    to the noise it adds along the graph when no local measurement exists)."""
    table = report.layers
    rows = []
    for node in quantized:
        hits = table[table["node"] == node]
        local = report.local_sqnr.get(node)
        if local is None and hits.empty:
            continue
        score = 10 ** (-local / 10) if local is not None else float(hits.iloc[0]["added_noise"])
        info = report.node_info.get(node, {})
        rows.append(RankedNode(node, float(score), info.get("op_type"), info.get("module"), local,
                               float(hits.iloc[0]["sqnr_db"]) if not hits.empty else None))
    rows.sort(key=lambda r: -r.score)
    return rows


def tensor_issues(node_name: str, model: ModelHandle, report: LayerReport, base) -> list[tuple[str, str, str]]:
    """(tensor, kind, explanation) for each quantized tensor around a node, from the data: its calibrated range,
    INT8 step (range / 127), observed max, typical magnitude (RMS) and per-channel RMS.
    kind: "mask", "clipped", "outlier-channels", "coarse" or "ok"."""
    from workbench.precision.calibration import load_ranges

    if base.calibration is None:
        return []
    ranges = load_ranges(base.ranges_path or base.calibration.path)
    rows = report.layers.set_index("tensor")
    node = next((n for n in model.proto.graph.node if n.name == node_name), None)
    if node is None:
        return []
    out = []
    for tensor in dict.fromkeys([*node.input, *node.output]):
        if tensor not in ranges or tensor not in rows.index or not bool(rows.loc[tensor, "quantized"]):
            continue
        amax = max(abs(ranges[tensor][0]), abs(ranges[tensor][1]))
        step, rms = amax / 127.0, float(rows.loc[tensor, "rms"])
        if not math.isfinite(rms) or rms <= 0:
            continue
        if amax >= 1e30:
            out.append((tensor, "mask", f"'{tensor}' is calibrated to ±{amax:.1e} (it carries an additive mask of "
                        f"±FLT_MAX), so one INT8 step is {step:.1e} and every real value rounds to zero"))
            continue
        observed = report.amax.get(tensor, 0.0)
        if observed > 1.5 * amax:
            out.append((tensor, "clipped", f"'{tensor}' reaches ±{observed:.3g} but calibration set its range to "
                        f"±{amax:.3g}: the larger values are clipped"))
            continue
        channels = report.channel_rms.get(tensor)
        if channels is not None and len(channels) > 1:
            below = int((channels < step).sum())
            median = float(np.median(channels))
            if below and channels.max() > 8 * median:
                out.append((tensor, "outlier-channels", f"'{tensor}' spans ±{amax:.3g} because a few channels are "
                            f"outliers (largest channel RMS {channels.max():.3g}, median {median:.3g}); with one "
                            f"INT8 step of {step:.3g} for the whole tensor, {below} of {len(channels)} channels sit "
                            "below one step"))
                continue
        if step >= 0.5 * rms:
            out.append((tensor, "coarse", f"'{tensor}' spans ±{amax:.3g} but its typical magnitude is {rms:.3g}: "
                        f"one INT8 step ({step:.3g}) is {step / rms:.0%} of it, so most values round to a few levels"))
        else:
            out.append((tensor, "coarse" if rms / step < 8 else "ok",
                        f"'{tensor}' spans ±{amax:.3g} with typical magnitude {rms:.3g} (INT8 step {step:.3g}, "
                        f"{rms / step:.0f} steps per typical value)"))
    return out


def cause(node_name: str, model: ModelHandle, report: LayerReport, base) -> str:
    """Why quantizing this node hurts, in words (see tensor_issues)."""
    return "; ".join(text for _, _, text in tensor_issues(node_name, model, report, base))
