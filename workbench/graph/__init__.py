"""Stage 1, the ONNX graph itself: subgraph-aware topology, clean-up (constant and BatchNorm folding), the TensorRT
lint, MAC counting, and the local-sensitivity graph surgery. Reads graphs, runs nothing."""
