"""Stage 4, precision as an ONNX → ONNX transform: the recipe, calibration, INT8 Q/DQ, FP16/BF16, and the rescaling
transforms that run before quantization (equalization, smoothing, bias correction). Runs models through the
runtime (stage 3) to collect statistics."""
