"""What a fallback costs: nodes and multiply-accumulates left out of INT8, weighted by the tensor-core rate of the
precision they run in."""
from __future__ import annotations

from workbench.analysis.compare import LayerReport

# MACs of a layer in each precision, in INT8-MAC units: the dense tensor-core peak of an H100 SXM (INT8 1,979 TOPS,
# FP16 989 TFLOPS, TF32 495 TFLOPS; TensorRT runs FP32 layers as TF32 unless told not to). An estimate, not a timing.
MAC_COST = {"int8": 1.0, "fp16": 2.0, "fp32": 4.0}


def fallback_cost(report: LayerReport, quantized: list[str], fallback: list[str], precision: str = "fp32") -> dict:
    """What the fallback costs: nodes and MACs left out of INT8, and the MAC-weighted compute against all-INT8."""
    total = sum(report.macs.get(n, 0) for n in quantized)
    kept = sum(report.macs.get(n, 0) for n in fallback)
    weighted = (total - kept) * MAC_COST["int8"] + kept * MAC_COST[precision]
    return {"nodes_in_higher_precision": len(fallback), "nodes_still_int8": len(quantized) - len(fallback),
            "higher_precision": precision,
            "macs_per_sample_int8_eligible": total, "macs_per_sample_in_higher_precision": kept,
            "share_of_macs_in_higher_precision": kept / total if total else 0.0,
            "compute_vs_all_int8": weighted / total if total else 1.0}
