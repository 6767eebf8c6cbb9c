"""The fallback search by measured effect: which quantized nodes to keep out of INT8, chosen by what reverting them
does to the verdict, not by how noisy they are on their own.

Local sensitivity (a node quantized alone on exact FP32 inputs) misses the nodes that matter most on depthwise
CNNs: MobileNetV2's stem and first depthwise convs add little noise locally, but everything downstream amplifies
it. So, as NNCF's accuracy control does, each candidate is reverted alone and the target's margin measured on a
ranking subset (one cheap re-quantize from cached ranges plus one run each); candidates are then reverted greedily,
most helpful first, galloping (1, 1, 2, 4, … per step) so a long fallback still costs O(log N) evaluations on the
whole evaluation set; after a step that helped less than its measurement promised (the candidates overlap), the
next few candidates are measured again on top of what is already reverted; a final pass puts back, largest first,
whatever the target does not need. A candidate is one node: excluding it takes no neighbour out of INT8
(precision.quantize.keep_in_float), so its cost is its own MACs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

from workbench.analysis.results import RankedNode, Scores, Search, Trial

SEARCHES = ("measured", "local")  # diagnose's strategies: this module's, or bisection over the local ranking
DEPLOY_TARGETS = ("tensorrt", "onnxruntime-cpu")  # diagnose's `deploy`: whose arithmetic the target must hold on
# Candidates measured on the ranking subset, most locally sensitive first; the rest follow in local order unmeasured.
MAX_MEASURED = 64
# After a step, re-measure this many of the next candidates when the step gained less than RERANK_WHEN of what its
# measurement predicted (their effects overlap with what was just reverted).
RERANK = 8
RERANK_WHEN = 0.5
# With gains measured from another start (diagnose's second start: the same graph rescaled), only this many of the
# candidates those gains put first are measured again.
MAX_REMEASURED = 2 * RERANK


@dataclass
class Candidate:
    """One node to exclude, its MACs per sample, its local sensitivity and its measured gain in target margin."""

    node: str
    macs: int
    local: float  # its local noise score (see diagnose.rank)
    gain: float | None = None
    cosine: float | None = None  # the per-sample cosine mean on the ranking subset with it reverted


def measured_search(recipe, start_scores: Scores, target, reference_metric: float | None, report, base,
                    score: Callable, rank_score: Callable, ranking: list[RankedNode],
                    rank_evaluator=None, cost: Callable | None = None, threads: int = 1,
                    prior: dict[str, float] | None = None) -> Search:
    """The fallback search of the module docstring. `score(recipe)` is diagnose's cycle on the evaluation data,
    `rank_score(recipe)` the same on the ranking subset; `ranking` the local ranking (orders and prunes what is
    measured); `cost(fallback)` the cost dict. With a parallel `rank_evaluator` (Ray), measurements run ahead as
    tasks; else `threads` of them run at once in this process (each run is one single-threaded ONNX Runtime
    session, which releases the GIL: the same numbers, about `threads` times sooner). `prior`: gains measured by
    a search from another start of the same graph; they order the candidates, and only the first MAX_REMEASURED
    are measured again."""
    candidates = [Candidate(r.node, report.macs.get(r.node, 0), r.score) for r in ranking]  # most harmful first
    if prior:
        candidates.sort(key=lambda c: -prior.get(c.node, -math.inf))  # stable: unknown ones keep the local order
    budget = search_budget(len(base.quantized_nodes))  # the number diagnose's confidence level is split over
    trials: list[Trial] = []
    results: dict[tuple[str, ...], Scores] = {(): start_scores}

    def with_nodes(nodes: list[str]):
        return recipe.with_exclude(list(recipe.exclude) + nodes)

    def flat(chosen: list[Candidate]) -> list[str]:
        return [c.node for c in chosen]

    def evaluate(chosen: list[Candidate]) -> bool:
        key = tuple(flat(chosen))
        if key not in results:
            results[key] = score(with_nodes(list(key)))
            trials.append(Trial(list(key), results[key], target.met(results[key], reference_metric)))
        return target.met(results[key], reference_metric)

    def measure(on: list[Candidate], pool: list[Candidate]) -> None:
        """Each candidate's gain in margin reverted on top of `on`, on the ranking subset."""
        recipes = [with_nodes(flat(on))] + [with_nodes(flat(on + [c])) for c in pool]
        if rank_evaluator is not None and rank_evaluator.parallel:
            rank_evaluator.submit(recipes)
            scores = [rank_score(r) for r in recipes]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max(1, threads)) as pool_:
                scores = list(pool_.map(rank_score, recipes))
        here = _key(target, scores[0], reference_metric)
        for c, s in zip(pool, scores[1:]):
            c.gain, c.cosine = _key(target, s, reference_metric) - here, s.cosine

    def by_gain(pool: list[Candidate]) -> list[Candidate]:
        return sorted(pool, key=lambda c: (-(c.gain if c.gain is not None else -math.inf), c.macs))

    fallback: list[Candidate] = []
    if not target.met(start_scores, reference_metric) and candidates:
        limit = MAX_REMEASURED if prior else MAX_MEASURED
        measured, rest = candidates[:limit], candidates[limit:]
        measure([], measured)
        remaining = by_gain(measured) + rest
        step, singles = 1, 0
        met = False
        while remaining and len(trials) + 1 < budget:
            take = remaining[:step]
            before = _key(target, results[tuple(flat(fallback))], reference_metric)
            if evaluate(fallback + take):
                fallback = _shortest(fallback, take, evaluate)
                met = True
                break
            fallback, remaining = fallback + take, remaining[len(take):]
            singles += 1
            step = 1 if singles < 2 else min(2 * step, max(1, len(remaining)))
            predicted = sum(c.gain or 0.0 for c in take)
            gained = _key(target, results[tuple(flat(fallback))], reference_metric) - before
            if remaining and predicted > 0 and gained < RERANK_WHEN * predicted and remaining[0].gain is not None:
                head = remaining[:RERANK]
                measure(fallback, head)
                remaining = by_gain(head) + remaining[RERANK:]
        if not met and remaining and evaluate(fallback + remaining):
            fallback, met = fallback + remaining, True
        if not met:
            fallback = fallback + remaining
        for c in sorted(fallback, key=lambda c: -c.macs):  # put back what the target does not need, largest first
            if len(trials) + 1 >= budget or len(fallback) <= 1:
                break
            trial = [x for x in fallback if x is not c]
            if evaluate(trial):
                fallback = trial
    nodes = flat(fallback)
    if tuple(nodes) not in results:
        evaluate(fallback)
    order = {c.node: i for i, c in enumerate(by_gain(candidates))}
    by_node = {c.node: c for c in candidates}
    measured_ranking = sorted((replace(r, gain=by_node[r.node].gain, reverted_cosine=by_node[r.node].cosine)
                               if r.node in by_node else r for r in ranking),
                              key=lambda r: order.get(r.node, len(order)))
    return Search(measured_ranking, nodes, results[tuple(nodes)], trials, budget, recipe, report, base,
                  cost(nodes) if cost else {})


def _key(target, scores: Scores, reference_metric: float | None) -> float:
    return target.ranking_key(scores, reference_metric)


def _shortest(fallback: list[Candidate], take: list[Candidate], evaluate: Callable) -> list[Candidate]:
    """The shortest prefix of `take` that, on top of `fallback`, meets the target (bisection; all of `take` does)."""
    lo, hi = 0, len(take)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if evaluate(fallback + take[:mid]) else (mid, hi)
    return fallback + take[:hi]


def search_budget(candidates: int) -> int:
    """Evaluations on the whole evaluation set the measured search may spend on N candidates, counting the
    starting recipe's: galloping and bisection take O(log N), the put-back pass as many again."""
    return 2 * math.ceil(math.log2(max(candidates, 2))) + 4
