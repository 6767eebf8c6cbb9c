"""The diagnosis in plain words: which node, which module, how bad, why, what was tried and what the fix costs."""
from __future__ import annotations

from workbench.analysis.diagnose.result import Diagnosis
from workbench.analysis.diagnose.target import Target
from workbench.analysis.results import RankedNode, Scores
from workbench.core.metrics import SQNR_CAP_DB


def _worst(scores: Scores) -> str:
    if scores.cosine_worst is None:
        return "n/a"
    sample = scores.worst_samples[0] if scores.worst_samples else None
    return f"{scores.cosine_worst:.4f}" + (f", #{sample['index']}" if sample else "")


def _name(row: RankedNode) -> str:
    module = f", module {row.module}" if row.module else ""
    return f"{row.node} ({row.op_type}{module})"


def explain(d: Diagnosis, target: Target) -> str:
    """The diagnosis in plain words: which node, which module, how bad, and what the fix costs."""
    b = d.before
    metric = f", {target.metric_name} {b.metrics[target.metric_name]:.4f}" if target.metric is not None else ""
    mode = ("Evaluated " + d.evaluation["evaluation"] + ". ") if d.evaluation.get("coupled") else ""
    if not d.fallback and d.met and len(d.remedies) <= 1:
        return (f"{mode}INT8 is healthy on this data: per-sample cosine mean {b.cosine:.4f} (worst sample "
                f"{_worst(b)}), SQNR {b.sqnr_db:.1f} dB{metric} meets the target ({target.describe()}). No node needs "
                "to stay in higher precision.")
    culprits = [r for r in d.ranking if r.node in d.fallback] or d.initial_ranking[:1] or d.ranking[:1]
    return " ".join(_culprit_lines(d, culprits, mode) + _outcome_lines(d, target))


def _culprit_lines(d: Diagnosis, culprits: list[RankedNode], mode: str) -> list[str]:
    """The most harmful node, in words: how bad, why, and what else hurts."""
    b, top = d.before, culprits[0]
    local = top.local_sqnr_db
    if local is None:
        lines = [f"The most harmful quantized node is {_name(top)}."]
    else:
        verb = "INT8 accuracy collapses at" if local < d.report.threshold_db else "The most harmful quantized node is"
        effect = ("its output is destroyed (Inf/NaN or no signal left)" if local <= -SQNR_CAP_DB + 1 else
                  f"its output keeps {local:.1f} dB SQNR ({min(1.0, top.score):.2%} relative noise power)")
        lines = [f"{verb} {_name(top)}: quantized on its own, with exact FP32 inputs, {effect}."]
    if top.reverted_cosine is not None and top.gain is not None and top.gain > 0:
        lines.append(f"Reverted alone, it lifts the per-sample cosine mean on the {d.ranking_samples}-sample ranking "
                     f"subset to {top.reverted_cosine:.4f}.")
    if mode:
        lines.insert(0, mode.strip())
    if b.deciding:
        lines.append(f"As given, the worst output is '{b.deciding}' (per-sample cosine mean {b.cosine:.4f}, worst "
                     f"sample {_worst(b)}; pooled over all samples {b.pooled_cosine:.4f}).")
    if d.causes.get(top.node):
        lines.append(f"Why: {d.causes[top.node]}.")
    if d.report.first_divergence:
        lines.append(f"The first tensor below {d.report.threshold_db:g} dB along the graph is "
                     f"'{d.report.first_divergence}'.")
    others = [r for r in culprits[1:] if r.local_sqnr_db is not None]
    if others:
        lines.append("Also harmful: " + "; ".join(f"{_name(r)} at {max(r.local_sqnr_db, -SQNR_CAP_DB):.1f} dB"
                                                   for r in others) + ".")
    return lines


def _outcome_lines(d: Diagnosis, target: Target) -> list[str]:
    """The fixes tried, the final recipe, and what it costs."""
    b, a, lines = d.before, d.after, []
    after_metric = f", {target.metric_name} {a.metrics[target.metric_name]:.4f}" if target.metric is not None else ""
    verdict = "meets" if d.met else "still misses"
    if not d.met and not d.misses and d.heldout is not None and not d.heldout.met:
        verdict = f"meets on the evaluation data but misses on held-out data ({'; '.join(d.heldout.misses)})"
    key = target.metric_name if target.metric is not None else "cosine"
    if len(d.remedies) > 1:
        lines.append("Fixes tried, cheapest first: " + "; ".join(
            f"{r.remedy} → {key} {r.scores.value(key):.4f}{' (meets the target)' if r.met else ''}"
            for r in d.remedies[1:])
            + ".")
    if not d.fallback:
        lines.append(f"Final recipe: {d.recipe.label}, every quantized node still INT8; {key} "
                     f"{b.value(key):.4f} → {a.value(key):.4f}; this {verdict} the target ({target.describe()}).")
        return lines
    lines.append(
        f"Keeping {len(d.fallback)} of {d.quantized_nodes} quantized nodes in higher precision "
        f"({', '.join(d.fallback)}) takes the per-sample cosine mean from {b.cosine:.4f} to {a.cosine:.4f} (worst "
        f"sample {_worst(a)}) and SQNR from {b.sqnr_db:.1f} to {a.sqnr_db:.1f} dB{after_metric}; this {verdict} the "
        f"target ({target.describe()})" + (f": {'; '.join(d.misses)}." if d.misses else ".")
    )
    lines.append(f"Cost (from the {d.cost.source}): {d.cost.share_of_macs_in_higher_precision:.2%} of the "
                 f"INT8-eligible multiply-accumulates run in higher precision; {d.cost.nodes_still_int8} nodes stay "
                 f"INT8. Found with {d.evaluations} runs "
                 f"(budget {d.budget})" + (f" and {d.ranking_runs} runs on the {d.ranking_samples}-sample ranking "
                                           "subset, each candidate reverted alone" if d.ranking_runs else "") + ".")
    return lines
