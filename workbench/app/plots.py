"""Plotly figures built from reports (never from models). Every latency figure names its backend context."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import pandas as pd

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from workbench.analysis.bench import LatencyReport
    from workbench.analysis.compare import LayerReport
    from workbench.analysis.diagnose import Diagnosis


def _go():
    import plotly.graph_objects as go

    return go


# One colour per recipe in every figure: the first recipe of a precision takes its precision's colour, further
# ones of the same precision the next free colour of the palette, in the order the report lists them.
PRECISION_COLORS = {"fp32": "#1f77b4", "fp16": "#2ca02c", "bf16": "#9467bd", "int8": "#ff7f0e"}
PALETTE = ["#d62728", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939"]


def recipe_colors(labels: Iterable[str]) -> dict[str, str]:
    """Recipe label (e.g. 'int8 minmax equalized') → colour, stable for the same list of recipes."""
    out: dict[str, str] = {}
    spare = iter(PALETTE * 4)
    for label in dict.fromkeys(labels):
        base = PRECISION_COLORS.get(label.split(" ", 1)[0])
        out[label] = base if base is not None and base not in out.values() else next(spare)
    return out


def _log_batches(fig, batches: Iterable[int], **where) -> None:
    """A log batch axis labelled at the measured batch sizes only (no stray minor labels)."""
    ticks = sorted({int(b) for b in batches})
    fig.update_xaxes(title_text="batch", type="log", tickmode="array", tickvals=ticks, ticktext=[str(b) for b in ticks],
                     **where)


def layer_figure(report: "LayerReport", fallback: Iterable[str] = (), title: str | None = None) -> "go.Figure":
    """SQNR along the FP32 graph (topological order) with cosine, local sensitivity, the first divergence and
    the fallback nodes marked. Hover shows tensor, node, module and every metric."""
    go = _go()
    from plotly.subplots import make_subplots

    t = report.layers.reset_index(drop=True)
    x = list(range(len(t)))
    fallback = set(fallback)
    hover = [f"<b>{r.tensor}</b><br>node {r.node} ({r.op_type})" + (f"<br>module {r.module}" if r.module else "")
             + f"<br>SQNR {r.sqnr_db:.1f} dB · cosine {r.cosine:.5f}<br>max |Δ| {r.max_abs:.3g} · mean |Δ| {r.mean_abs:.3g}"
             + ("<br>quantized (Q/DQ)" if r.quantized else "") for r in t.itertuples()]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=x, y=t["sqnr_db"], mode="lines+markers", name="SQNR (dB)", text=hover,
                             hovertemplate="%{text}<extra></extra>", customdata=t["node"]), secondary_y=False)
    if t["local_sqnr_db"].notna().any():
        fig.add_trace(go.Scatter(x=x, y=t["local_sqnr_db"], mode="markers", name="local SQNR (node alone, dB)",
                                 marker={"symbol": "diamond-open", "size": 9}, customdata=t["node"]),
                      secondary_y=False)
    fig.add_trace(go.Scatter(x=x, y=t["cosine"], mode="lines", name="cosine", line={"dash": "dot"},
                             customdata=t["node"]), secondary_y=True)
    marked = t[t["node"].map(lambda n: report.folded.get(n, n)).isin(fallback) | t["node"].isin(fallback)]
    if not marked.empty:
        fig.add_trace(go.Scatter(x=list(marked.index), y=marked["sqnr_db"], mode="markers", name="kept in FP32",
                                 marker={"symbol": "x", "size": 14, "color": "crimson"}, customdata=marked["node"]),
                      secondary_y=False)
    fig.add_hline(y=report.threshold_db, line_dash="dash", line_color="gray",
                  annotation_text=f"{report.threshold_db:g} dB threshold")
    if report.first_divergence is not None:
        i = int(t.index[t["tensor"] == report.first_divergence][0])
        fig.add_vline(x=i, line_color="orange", annotation_text=f"first divergence: {report.first_divergence}")
    fig.update_xaxes(tickvals=x, ticktext=list(t["tensor"]), tickangle=-45, title="tensor (FP32 graph order)")
    fig.update_yaxes(title_text="SQNR vs FP32 (dB)", secondary_y=False)
    fig.update_yaxes(title_text="cosine", secondary_y=True)
    label = report.context.get("label", "")
    fig.update_layout(title=title or f"Per-layer accuracy: {_recipe_label(report.recipe)} vs FP32 ({label}, "
                      f"{report.samples} samples)", hovermode="closest", legend={"orientation": "h", "y": -0.35})
    return fig


def diagnosis_figure(d: "Diagnosis") -> "go.Figure":
    """The layer figure of the INT8 model with the suggested fallback nodes marked."""
    return layer_figure(d.report, d.fallback)


def ranking_figure(d: "Diagnosis", top: int = 15) -> "go.Figure":
    go = _go()
    rows = pd.DataFrame([r.to_dict() for r in d.ranking[:top]])
    colors = ["crimson" if n in d.fallback else "steelblue" for n in rows["node"]]
    measured = "reverted_cosine" in rows and rows["reverted_cosine"].notna().any()
    fig = go.Figure(go.Bar(x=rows["reverted_cosine" if measured else "score"], y=rows["node"], orientation="h",
                           marker_color=colors, hovertext=rows["module"]))
    if measured:  # the measured search's order: what reverting each node alone does to the verdict
        fig.update_layout(title=f"Quantized nodes by measured effect: per-sample cosine mean on {d.ranking_samples} "
                                "samples with the node alone reverted; red = fallback",
                          xaxis={"title": "cosine with it reverted"})
    else:
        fig.update_layout(title="Quantized nodes by harm (relative noise power when quantized alone); red = fallback",
                          xaxis={"type": "log", "title": "relative noise power"})
    fig.update_layout(yaxis={"autorange": "reversed"})
    return fig


def latency_distribution(report: "LatencyReport") -> "go.Figure":
    go = _go()
    fig = go.Figure()
    colors = recipe_colors(recipe for recipe, _ in report.samples)
    for (recipe, batch), samples in report.samples.items():
        fig.add_trace(go.Box(y=samples, name=f"{recipe} · batch {batch}", boxpoints="outliers",
                             marker_color=colors[recipe], legendgroup=recipe))
    fig.update_layout(title=f"Latency distribution per recipe ({report.label})", yaxis_title="latency (ms)")
    return fig


def batch_figure(report: "LatencyReport") -> "go.Figure":
    """Throughput and p50 latency versus batch size, one line per recipe."""
    go = _go()
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("throughput (samples/s)", "p50 latency (ms)"))
    colors = recipe_colors(report.results["recipe"])
    for recipe, rows in report.results.groupby("recipe", sort=False):
        line = {"color": colors[recipe]}
        fig.add_trace(go.Scatter(x=rows["batch"], y=rows["throughput"], mode="lines+markers", name=recipe,
                                 legendgroup=recipe, line=line, marker=line), row=1, col=1)
        fig.add_trace(go.Scatter(x=rows["batch"], y=rows["p50_ms"], mode="lines+markers", name=recipe,
                                 legendgroup=recipe, showlegend=False, line=line, marker=line), row=1, col=2)
    _log_batches(fig, report.results["batch"])
    fig.update_layout(title=f"Throughput and latency versus batch ({report.label})")
    return fig


def pareto_figure(table: pd.DataFrame, quality: str | None = None, context: str = "") -> "go.Figure":
    """Accuracy (top-1 or output cosine) against p50 latency per recipe, Pareto front highlighted."""
    go = _go()
    quality = quality or table.attrs.get("quality") or ("top1" if "top1" in table else "cosine")
    colors = recipe_colors(table["recipe"])
    fig = go.Figure()
    for row in table.itertuples():
        fig.add_trace(go.Scatter(
            x=[row.p50_ms], y=[getattr(row, quality)], mode="markers+text", text=[row.recipe],
            textposition="top center", name=row.recipe, legendgroup=row.recipe,
            marker={"size": 13 if row.pareto else 9, "color": colors[row.recipe],
                    "line": {"width": 2, "color": "black"} if row.pareto else {"width": 0}}))
    front = table[table["pareto"]].sort_values("p50_ms")
    fig.add_trace(go.Scatter(x=front["p50_ms"], y=front[quality], mode="lines", name="Pareto front",
                             line={"color": "black", "dash": "dot"}))
    label = context or table.attrs.get("label", "")
    fig.update_layout(title=f"{quality} versus p50 latency" + (f" ({label})" if label else ""),
                      xaxis_title="p50 latency (ms)", yaxis_title=quality)
    return fig


def _recipe_label(recipe: dict) -> str:
    from workbench.precision.recipe import Recipe

    return Recipe(**{**recipe, "exclude": tuple(recipe.get("exclude", ()))}).label


def histogram_figure(tensor: str, counts, edges, ranges: dict[str, float], observed_amax: float) -> "go.Figure":
    """One activation's distribution (log counts) with the clipping range each calibration method picks, so you
    can see why a tensor is crushed (range too wide) or clipped (range too narrow)."""
    go = _go()
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centers, y=counts, name=tensor, marker_color="steelblue"))
    colors = {"minmax": "crimson", "entropy": "darkorange"}
    for method, amax in ranges.items():
        color = colors.get(method, "seagreen")
        for x in (-amax, amax):
            fig.add_vline(x=x, line_color=color, line_dash="dash")
        fig.add_annotation(x=amax, y=1, yref="paper", text=f"{method}: ±{amax:.3g}", showarrow=False,
                           font={"color": color}, yshift=-14 * list(ranges).index(method))
    fig.update_layout(title=f"Activation histogram of '{tensor}' (max |value| {observed_amax:.3g}) with each "
                      "calibration method's INT8 range", yaxis_type="log", xaxis_title="value",
                      yaxis_title="count (log)", bargap=0)
    return fig
