"""A diagnosis as one self-contained HTML file for sharing: what was found, why, what was tried at what cost, the
per-layer plot and the ranking (plotly.js inlined once, so the file opens offline), and latency when measured."""
from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from workbench.app import plots
from workbench.app.worst import worst_inputs_html

if TYPE_CHECKING:
    from workbench.analysis.bench import LatencyReport
    from workbench.analysis.diagnose import Diagnosis

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}.met{color:#1a7f37;font-weight:600}.miss{color:#b42318;font-weight:600}"""


def diagnosis_html(d: "Diagnosis", model_name: str, latency: "LatencyReport | None" = None,
                   tradeoff: pd.DataFrame | None = None) -> str:
    """The report as an HTML string (see the module docstring)."""
    figures = [plots.layer_figure(d.report, d.fallback, title="SQNR along the graph (FP32 order), fallback marked"),
               plots.ranking_figure(d)]
    if latency is not None:
        figures.append(plots.batch_figure(latency))
    if tradeoff is not None:
        figures.append(plots.pareto_figure(tradeoff))
    charts = [figure.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, figure in enumerate(figures)]
    verdict = "<span class='met'>meets</span>" if d.met else "<span class='miss'>misses</span>"
    metric = d.target.metric_name if d.target.metric is not None else None
    remedies = pd.DataFrame([{"step": r.remedy, "per-sample cosine mean": round(r.scores.cosine, 5),
                              "worst sample": None if r.scores.cosine_worst is None else round(r.scores.cosine_worst, 4),
                              "pooled cosine": None if r.scores.pooled_cosine is None else round(r.scores.pooled_cosine, 5),
                              "SQNR (dB)": round(r.scores.sqnr_db, 2), "met": r.met,
                              **{k: round(v, 4) for k, v in r.scores.metrics.items() if k == metric},
                              "nodes in higher precision": r.nodes_in_higher_precision} for r in d.remedies])
    causes = pd.DataFrame([{"node": node, "why": why} for node, why in d.causes.items() if why])
    cost = pd.DataFrame([d.cost.to_dict()])
    heldout = pd.DataFrame([{k: v for k, v in d.heldout.to_dict().items() if not isinstance(v, (dict, list))}]) \
        if d.heldout else None
    sections = [
        f"<h1>INT8 diagnosis: {html.escape(model_name)}</h1>",
        f"<p>Target {html.escape(_target(d))}: the final recipe <code>{html.escape(d.recipe.label)}</code> "
        f"{verdict} it (per-sample cosine mean {d.before.cosine:.5f} → {d.after.cosine:.5f}), found with "
        f"{d.evaluations} "
        f"quantize + evaluate cycles.</p>",
        f"<p>{html.escape(d.explanation)}</p>",
        f"<p>Reproduce: <code>{html.escape(' '.join(['workbench', 'build', model_name, *d.recipe.to_cli_args()]))}"
        "</code></p>",
        "<h2>Remedies tried, cheapest first</h2>", remedies.to_html(index=False, escape=True),
        "<h2>Cost of the final recipe</h2>", cost.to_html(index=False),
        "<h2>Worst inputs of the final recipe (evaluation data)</h2>", worst_inputs_html(d.after) or "<p>none</p>",
    ]
    if heldout is not None:
        sections += ["<h2>Held-out data</h2>", heldout.to_html(index=False),
                     "<p>" + html.escape("; ".join(d.heldout.misses) or "every part of the target met")
                     + "</p>"]
    if not causes.empty:
        sections += ["<h2>Causes</h2>", causes.to_html(index=False, escape=True)]
    if d.warnings:
        sections += ["<h2>Warnings</h2><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in d.warnings) + "</ul>"]
    if latency is not None:
        sections += ["<h2>Latency</h2>", latency.results.to_html(index=False)]
    sections += ["<h2>Plots</h2>", *charts]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>workbench diagnosis: "
            f"{html.escape(model_name)}</title><style>{STYLE}</style></head><body>{''.join(sections)}</body></html>")


def write_diagnosis_html(path: str | Path, d: "Diagnosis", model_name: str, **kwargs) -> Path:
    path = Path(path)
    path.write_text(diagnosis_html(d, model_name, **kwargs), encoding="utf-8")
    return path


def _target(d: "Diagnosis") -> str:
    return d.target.describe()
