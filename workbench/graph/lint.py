"""TensorRT Q/DQ compatibility lint: what TensorRT's ONNX parser rejects, or builds but runs in float, found
before anyone spends time on a GPU build (docs/DESIGN.md, TensorRT's explicit quantization guide). Ops outside
the standard ONNX domain (scikit-learn's ai.onnx.ml Scaler, ArrayFeatureExtractor, ...) are errors too: the parser
rejected them there ("Plugin not found").

Every rule has a negative case checked against TensorRT-RTX 1.7.1 on an H100 (benchmarks/lint_device.py, README
"Lint against the parser"): errors are parser rejections, warnings are Convs whose kernel reads float. Patterns the
parser accepted and ran in INT8 there are not reported (a DequantizeLinear fed by a Cast to INT8, a
QuantizeLinear also read by a non-DQ node, per-channel Q/DQ at opset 10)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from workbench.graph.topology import GraphIndex

# Ops TensorRT runs in INT8 when their inputs (and weights) are quantized; Q/DQ elsewhere only adds reformats.
INT8_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
# Ops TensorRT can fuse a Q/DQ through or into (data movement, pooling, residual add, activations after conv).
QDQ_FRIENDLY = INT8_OPS | {"Add", "MaxPool", "AveragePool", "GlobalAveragePool", "Reshape", "Transpose", "Flatten",
                           "Concat", "Slice", "Squeeze", "Unsqueeze", "Relu", "Clip", "Identity", "Pad", "Resize",
                           "QuantizeLinear", "DequantizeLinear", "Sigmoid", "Mul", "Split", "Gather",
                           "Shape", "Size"}  # Shape/Size read only the dimensions: no quantization error


@dataclass
class Finding:
    severity: str  # "error": TensorRT rejects it; "warning": it builds but runs slower or not in INT8
    rule: str
    node: str
    message: str


@dataclass
class LintReport:
    model: str
    target: str
    findings: list[Finding]

    @property
    def clean(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        return {"model": self.model, "target": self.target, "clean": self.clean,
                "errors": sum(f.severity == "error" for f in self.findings),
                "warnings": sum(f.severity == "warning" for f in self.findings),
                "findings": [asdict(f) for f in self.findings]}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)


def lint(model: onnx.ModelProto, name: str = "model", target: str = "tensorrt") -> LintReport:
    if target != "tensorrt":
        from workbench.core.errors import WorkbenchError

        raise WorkbenchError(f"unknown lint target {target!r}; supported: tensorrt")
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    index = GraphIndex(g)
    producers, consumers = index.producer, index.consumers
    findings: list[Finding] = []

    def value(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        p = producers.get(name)
        if p is not None and p.op_type == "Constant":
            return numpy_helper.to_array(p.attribute[0].t)
        return None

    for node in g.node:
        if node.domain not in ("", "ai.onnx"):
            findings.append(Finding("error", "onnx-ml" if node.domain == "ai.onnx.ml" else "custom-domain", node.name,
                                    f"{node.op_type} '{node.name}' is in domain '{node.domain}': TensorRT's ONNX "
                                    "parser has no importer for it (\"Plugin not found\"); run that part outside "
                                    "TensorRT or provide a plugin"))
    for node in g.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zero = value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if node.op_type == "DequantizeLinear":
            data = value(node.input[0])
            if data is not None and data.dtype == np.int32:
                findings.append(Finding("error", "int32-dequantize", node.name,
                                        f"DequantizeLinear on INT32 '{node.input[0]}' (a quantized bias): TensorRT's "
                                        "parser rejects it (DQ input must be INT8/UINT8/INT4/FP8/FP4); keep biases "
                                        "in float (QuantizeBias=False)"))
        if node.op_type == "QuantizeLinear" and zero is not None and zero.dtype == np.uint8 and not np.any(zero):
            findings.append(Finding("warning", "unsigned-quantize", node.name,
                                    f"QuantizeLinear '{node.name}' quantizes to UINT8 (zero point 0, as after a ReLU): "
                                    "TensorRT-RTX 1.7 builds a signed INT8 quantizer from it (older parsers reject it, "
                                    "onnx-tensorrt #884), and INT8 at that scale ends at 127 × scale, half the "
                                    "calibrated 0..255, unless the builder rescales (not observable without running "
                                    "it); write INT8 with scale × 255/127"))
        if zero is not None and np.any(zero != 0):
            if zero.dtype == np.uint8:
                findings.append(Finding("error", "unsigned-zero-point", node.name,
                                        f"'{node.name}' uses UINT8 (asymmetric) quantization: TensorRT's parser "
                                        "rejects non-zero zero points; use signed INT8 with zero point 0 "
                                        "(ActivationSymmetric/WeightSymmetric)"))
            else:
                findings.append(Finding("error", "nonzero-zero-point", node.name,
                                        f"'{node.name}' has a non-zero zero point: TensorRT's parser rejects it "
                                        "(its INT8 is symmetric)"))
    findings += _placement(g, producers, consumers, inits)
    return LintReport(name, target, findings)


def _placement(g, producers, consumers, inits) -> list[Finding]:
    """Quantized inputs that TensorRT will not turn into INT8 compute."""
    out: list[Finding] = []
    for node in g.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        dq_inputs = [i for i in node.input if i in producers and producers[i].op_type == "DequantizeLinear"]
        if node.op_type in INT8_OPS:
            data_q = bool(node.input) and node.input[0] in dq_inputs
            weight = node.input[1] if len(node.input) > 1 else None
            weight_q = weight in dq_inputs if weight else False
            if data_q != weight_q and weight in inits | {k: None for k in dq_inputs}:
                which = "its input" if data_q else "its weights"
                out.append(Finding("warning", "half-quantized", node.name,
                                   f"{node.op_type} '{node.name}' has only {which} quantized: TensorRT runs it in "
                                   "float, with the quantization error and, for quantized weights, a dequantize "
                                   "kernel on every run (quantize both the activation and the weight, or neither)"))
        elif dq_inputs and node.op_type not in QDQ_FRIENDLY:
            out.append(Finding("warning", "qdq-not-fused", node.name,
                               f"Q/DQ feeds {node.op_type} '{node.name}': TensorRT has no INT8 {node.op_type}, so it "
                               "folds the pair into a float kernel as a fake quantization: quantization error for "
                               "no INT8 speed (use the 'tensorrt' placement)"))
    return out
