"""The "local" fallback search: the shortest prefix of the local-sensitivity ranking that meets the target, by
bisection, then pruning with the budget left (fewer runs than analysis.search's measured search, larger fallbacks
on depthwise CNNs)."""
from __future__ import annotations

import math

from workbench.analysis.compare import LayerReport
from workbench.analysis.cost import fallback_cost
from workbench.analysis.diagnose.causes import rank
from workbench.analysis.diagnose.target import Target
from workbench.analysis.evaluate import Evaluator
from workbench.analysis.results import Scores, Search, Trial
from workbench.precision.recipe import Recipe


def search_budget(nodes: int) -> int:
    """Evaluations the fallback search may spend on N quantized nodes, counting the starting recipe's."""
    return math.ceil(math.log2(max(nodes, 2))) + 3


def bisection_search(recipe: Recipe, start_scores: Scores, target: Target, reference_metric: float | None,
                     report: LayerReport, base, score, evaluator: Evaluator | None = None) -> Search:
    """Shortest prefix of the ranking that meets the target (bisection), then pruning with leftover budget;
    `score` is diagnose's quantize + evaluate cycle. With a parallel `evaluator`, probes the search may need next
    are submitted ahead (the search reads them in its own order, so its result does not change)."""
    ranking = rank(report, base.quantized_nodes)
    order = [r.node for r in ranking]
    budget = search_budget(len(order))
    trials: list[Trial] = []
    results: dict[tuple[str, ...], Scores] = {(): start_scores}
    width = evaluator.executor.workers if evaluator is not None and evaluator.parallel else 0

    def ahead(candidates: list[list[str]]) -> None:
        if width:
            evaluator.submit([recipe.with_exclude(list(recipe.exclude) + c) for c in candidates
                              if tuple(c) not in results][:width])

    def evaluate(nodes: list[str]) -> bool:
        key = tuple(nodes)
        if key not in results:
            results[key] = score(recipe.with_exclude(list(recipe.exclude) + nodes))
            trials.append(Trial(nodes, results[key], target.met(results[key], reference_metric)))
        return target.met(results[key], reference_metric)

    fallback: list[str] = []
    if not target.met(start_scores, reference_metric) and order:
        ahead([order[:1], order])
        if evaluate(order[:1]):
            fallback = order[:1]
        elif not evaluate(order):
            fallback = order
        else:
            lo, hi = 1, len(order)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                ahead([order[:m] for m in _bisection_probes(lo, hi, width)])
                lo, hi = (lo, mid) if evaluate(order[:mid]) else (mid, hi)
            fallback = order[:hi]
        removals = list(reversed(fallback))
        for k, node in enumerate(removals):
            if len(trials) + 1 >= budget or len(fallback) <= 1:
                break
            ahead([[x for x in fallback if x != n] for n in removals[k:k + width] if n in fallback])
            trial = [x for x in fallback if x != node]
            if evaluate(trial):
                fallback = trial
    return Search(ranking, fallback, results[tuple(fallback)], trials, budget, recipe, report, base,
                  fallback_cost(report.macs, base.quantized_nodes, fallback, recipe.fallback_precision),
                  strategy="local")


def _bisection_probes(lo: int, hi: int, width: int) -> list[int]:
    """The next `width` prefix lengths a bisection over (lo, hi] may probe, breadth first: its midpoint, then the
    midpoints of both halves (one of which it will need next), and so on."""
    probes, queue = [], [(lo, hi)]
    while queue and len(probes) < width:
        a, b = queue.pop(0)
        if b - a > 1:
            m = (a + b) // 2
            probes.append(m)
            queue += [(a, m), (m, b)]
    return probes
