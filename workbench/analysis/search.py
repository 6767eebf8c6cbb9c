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
from dataclasses import dataclass, field, replace
from typing import Any, Callable

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
    run = _Run(recipe, target, reference_metric, score, rank_score, rank_evaluator, threads,
               search_budget(len(base.quantized_nodes)), {(): start_scores})  # the budget diagnose's level splits
    fallback: list[Candidate] = []
    if not target.met(start_scores, reference_metric) and candidates:
        limit = MAX_REMEASURED if prior else MAX_MEASURED
        fallback = run.put_back(run.greedy(candidates[:limit], candidates[limit:]))
    nodes = _nodes(fallback)
    if tuple(nodes) not in run.results:
        run.evaluate(fallback)
    order = {c.node: i for i, c in enumerate(_by_gain(candidates))}
    by_node = {c.node: c for c in candidates}
    measured_ranking = sorted((replace(r, gain=by_node[r.node].gain, reverted_cosine=by_node[r.node].cosine)
                               if r.node in by_node else r for r in ranking),
                              key=lambda r: order.get(r.node, len(order)))
    return Search(measured_ranking, nodes, run.results[tuple(nodes)], run.trials, run.budget, recipe, report, base,
                  cost(nodes) if cost else None)


def _nodes(chosen: list[Candidate]) -> list[str]:
    return [c.node for c in chosen]


def _by_gain(pool: list[Candidate]) -> list[Candidate]:
    return sorted(pool, key=lambda c: (-(c.gain if c.gain is not None else -math.inf), c.macs))


@dataclass
class _Run:
    """One measured search: its scorers, the results of every fallback evaluated, its trials and budget."""

    recipe: Any
    target: Any
    reference_metric: float | None
    score: Callable
    rank_score: Callable
    rank_evaluator: Any
    threads: int
    budget: int
    results: dict[tuple[str, ...], Scores]
    trials: list[Trial] = field(default_factory=list)

    def with_nodes(self, nodes: list[str]):
        return self.recipe.with_exclude(list(self.recipe.exclude) + nodes)

    def key(self, scores: Scores) -> float:
        return _key(self.target, scores, self.reference_metric)

    def evaluate(self, chosen: list[Candidate]) -> bool:
        """Whether these candidates reverted meet the target on the evaluation data (each fallback run once)."""
        key = tuple(_nodes(chosen))
        if key not in self.results:
            self.results[key] = self.score(self.with_nodes(list(key)))
            self.trials.append(Trial(list(key), self.results[key], self.target.met(self.results[key],
                                                                                   self.reference_metric)))
        return self.target.met(self.results[key], self.reference_metric)

    def measure(self, on: list[Candidate], pool: list[Candidate]) -> None:
        """Each candidate's gain in margin reverted on top of `on`, on the ranking subset."""
        recipes = [self.with_nodes(_nodes(on))] + [self.with_nodes(_nodes(on + [c])) for c in pool]
        if self.rank_evaluator is not None and self.rank_evaluator.parallel:
            self.rank_evaluator.submit(recipes)
            scores = [self.rank_score(r) for r in recipes]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max(1, self.threads)) as threads:
                scores = list(threads.map(self.rank_score, recipes))
        here = self.key(scores[0])
        for c, s in zip(pool, scores[1:]):
            c.gain, c.cosine = self.key(s) - here, s.cosine

    def greedy(self, measured: list[Candidate], rest: list[Candidate]) -> list[Candidate]:
        """Revert by measured gain, galloping, re-measuring the next few after a step that gained less than its
        measurement promised; the shortest prefix of the last step that meets the target."""
        self.measure([], measured)
        remaining, fallback = _by_gain(measured) + rest, []
        step, singles = 1, 0
        while remaining and len(self.trials) + 1 < self.budget:
            take = remaining[:step]
            before = self.key(self.results[tuple(_nodes(fallback))])
            if self.evaluate(fallback + take):
                return _shortest(fallback, take, self.evaluate)
            fallback, remaining = fallback + take, remaining[len(take):]
            singles += 1
            step = 1 if singles < 2 else min(2 * step, max(1, len(remaining)))
            predicted = sum(c.gain or 0.0 for c in take)
            gained = self.key(self.results[tuple(_nodes(fallback))]) - before
            if remaining and predicted > 0 and gained < RERANK_WHEN * predicted and remaining[0].gain is not None:
                head = remaining[:RERANK]
                self.measure(fallback, head)
                remaining = _by_gain(head) + remaining[RERANK:]
        if remaining:
            self.evaluate(fallback + remaining)  # everything measured reverted: met or not, that is the fallback
        return fallback + remaining

    def put_back(self, fallback: list[Candidate]) -> list[Candidate]:
        """Put back what the target does not need, largest first, within the budget."""
        for c in sorted(fallback, key=lambda c: -c.macs):
            if len(self.trials) + 1 >= self.budget or len(fallback) <= 1:
                break
            trial = [x for x in fallback if x is not c]
            if self.evaluate(trial):
                fallback = trial
        return fallback


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
