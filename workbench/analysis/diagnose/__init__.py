"""Where INT8 collapses and the smallest set of nodes to keep in higher precision to fix it.

Cheap fixes first (clean-up, placement, range estimators, per-tensor calibration overrides, rescalings, bias
correction), then the fallback search. Default search (analysis.search): every candidate node reverted alone and its
effect on the target measured on a ranking subset, greedy revert with re-ranking, then a put-back pass; budget
2⌈log2 N⌉ + 4 evaluations on the whole evaluation set, the ranking runs reported apart. The "local" search ranks by
each node's local sensitivity (quantized alone on exact FP32 inputs; one per-layer comparison pass) and takes the
shortest prefix that meets the target by bisection, then prunes with leftover budget: ⌈log2 N⌉ + 3 evaluations.
The local ranking also orders what the measured search measures and names each node's cause.
"""
from workbench.analysis.cost import MAC_COST, fallback_cost
from workbench.analysis.diagnose.causes import cause, rank, tensor_issues
from workbench.analysis.diagnose.deployment import score_heldout
from workbench.analysis.diagnose.explain import explain
from workbench.analysis.diagnose.remedies import DEFAULT_REMEDIES, REMEDIES, REMEDY_STEPS, Remedy
from workbench.analysis.diagnose.result import Diagnosis
from workbench.analysis.diagnose.run import Start, diagnose
from workbench.analysis.diagnose.target import FLOOR_FACTOR, FLOOR_SQNR_DB, Target, cosine_lower_bound, task_target

__all__ = ["DEFAULT_REMEDIES", "FLOOR_FACTOR", "FLOOR_SQNR_DB", "MAC_COST", "REMEDIES", "REMEDY_STEPS", "Diagnosis",
           "Remedy", "Start", "Target", "cause", "cosine_lower_bound", "diagnose", "explain", "fallback_cost", "rank",
           "score_heldout", "task_target", "tensor_issues"]
