"""What keeping nodes out of INT8 costs: multiply-accumulates per sample left in higher precision, weighted by the
tensor-core rate of the precision each compute node runs in. The precisions come from the recipe's Q/DQ layout
(what the diagnosis claims) or from the engine the builder made (analysis/engine): one Cost type for both."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

# MACs of a layer in each precision, in INT8-MAC units: the dense tensor-core peak of an H100 SXM (INT8 1,979 TOPS,
# FP16/BF16 989 TFLOPS, TF32 495 TFLOPS; TensorRT runs FP32 layers as TF32 unless told not to). An estimate.
MAC_COST = {"int8": 1.0, "fp8": 1.0, "fp16": 2.0, "bf16": 2.0, "fp32": 4.0}


@dataclass(frozen=True)
class Cost:
    """Nodes and MACs per sample left out of INT8, and the MAC-weighted compute against all-INT8 (1.0 = all INT8).
    `source` says whose answer it is: the Q/DQ layout's claim or an engine's layers."""

    nodes_in_higher_precision: int
    nodes_still_int8: int
    higher_precision: str
    macs_per_sample_int8_eligible: int
    macs_per_sample_in_higher_precision: int
    share_of_macs_in_higher_precision: float
    compute_vs_all_int8: float
    source: str = "Q/DQ layout"

    def to_dict(self) -> dict:
        return asdict(self)


def fallback_cost(macs: Mapping[str, int], quantized: Sequence[str], fallback: Sequence[str],
                  precision: str = "fp32") -> Cost:
    """The cost the diagnosis claims: `fallback` (nodes kept out of INT8) run in `precision`, the rest of
    `quantized` (the INT8-eligible nodes) in INT8."""
    total = sum(macs.get(n, 0) for n in quantized)
    kept = sum(macs.get(n, 0) for n in fallback)
    weighted = (total - kept) * MAC_COST["int8"] + kept * MAC_COST[precision]
    return Cost(nodes_in_higher_precision=len(fallback), nodes_still_int8=len(quantized) - len(fallback),
                higher_precision=precision, macs_per_sample_int8_eligible=total,
                macs_per_sample_in_higher_precision=kept,
                share_of_macs_in_higher_precision=kept / total if total else 0.0,
                compute_vs_all_int8=weighted / total if total else 1.0)


def precision_cost(macs: Mapping[str, int], precisions: Mapping[str, str], source: str) -> Cost:
    """The cost of compute nodes running in the given precisions (node → int8, fp16, bf16, fp32; "folded" nodes run
    nothing): e.g. the precisions an engine's layers read."""
    ran = {n: p for n, p in precisions.items() if p != "folded"}
    total = sum(macs.get(n, 0) for n in ran)
    higher = {n: p for n, p in ran.items() if p not in ("int8", "fp8")}
    kept = sum(macs.get(n, 0) for n in higher)
    weighted = sum(macs.get(n, 0) * MAC_COST.get(p, MAC_COST["fp32"]) for n, p in ran.items())
    kinds = sorted(set(higher.values()))
    return Cost(nodes_in_higher_precision=len(higher), nodes_still_int8=len(ran) - len(higher),
                higher_precision="/".join(kinds) if kinds else "none", macs_per_sample_int8_eligible=total,
                macs_per_sample_in_higher_precision=kept,
                share_of_macs_in_higher_precision=kept / total if total else 0.0,
                compute_vs_all_int8=weighted / total if total else 1.0, source=source)
