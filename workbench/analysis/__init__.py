"""Stage 5, what the transformed model does: evaluation against the FP32 reference, layer-by-layer comparison, the
diagnosis (ranking, remedies, fallback search) and latency benchmarks."""
