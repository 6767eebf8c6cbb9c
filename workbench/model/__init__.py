"""Stage 2, the user's model and data: loading ONNX files and torch modules (without the zoo), datasets and their
batching, optimization profiles."""
