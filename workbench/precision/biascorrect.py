"""Empirical bias correction (Nagel et al., "Data-Free Quantization", 2019, section 4.2, measured on data): INT8
rounding of weights and activations shifts the mean of a layer's output, most where many small weights round the
same way; the shift per output channel, measured on calibration data, is added back to the layer's float bias.

Each layer's shift is measured locally: the quantized layer is cloned to read the FP32 model's own input through
its Q/DQ (workbench.graph.sensitivity.local_branches), so one pass measures every layer, and a layer's correction does
not count the shift its upstream layers already correct. The bias stays a float initializer, as TensorRT reads it
(QuantizeBias off), so the corrected graph builds as the uncorrected one does.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from workbench.model.data import Dataset

SAMPLES = 64  # calibration samples the shifts are measured on
OPS = ("Conv", "Gemm")  # layers with a bias input to absorb the shift (MatMul has none)


@dataclass
class BiasCorrection:
    node: str
    bias: str  # the new initializer (the original stays for any other reader)
    shift_rms: float  # RMS over channels of the mean output shift
    output_rms: float  # RMS of the layer's FP32 output, for scale

    def to_dict(self) -> dict:
        return asdict(self)


def output_shifts(fp32: onnx.ModelProto, qdq: onnx.ModelProto, nodes: list[str], data: Dataset,
                  batch_size: int = 16) -> dict[str, tuple[np.ndarray, float]]:
    """node → (mean of FP32 output − quantized output per output channel (axis 1), FP32 output RMS)."""
    from workbench.graph.sensitivity import local_branches
    from workbench.runtime import marked_outputs

    combined, pairs = local_branches(fp32, qdq, nodes)
    if not pairs:
        return {}
    tensors = sorted({t for pair in pairs.values() for t in pair})
    sums: dict[str, np.ndarray] = {}
    squares: dict[str, float] = {}
    counts: dict[str, int] = {}
    for out in marked_outputs(combined, tensors, data, batch_size, "bias correction"):
        for node, (reference, clone) in pairs.items():
            ref = np.asarray(out[reference], dtype=np.float64)
            if ref.ndim < 2:
                continue
            diff = np.moveaxis(ref - np.asarray(out[clone], dtype=np.float64), 1, 0).reshape(ref.shape[1], -1)
            sums[node] = sums.get(node, 0.0) + diff.sum(axis=1)
            squares[node] = squares.get(node, 0.0) + float((ref ** 2).sum())
            counts[node] = counts.get(node, 0) + diff.shape[1]
    return {node: (sums[node] / counts[node], float(np.sqrt(squares[node] / (counts[node] * len(sums[node])))))
            for node in sums}


def correct_bias(qdq: onnx.ModelProto, fp32: onnx.ModelProto, data: Dataset, nodes: list[str]
                 ) -> tuple[onnx.ModelProto, list[BiasCorrection]]:
    """The quantized model with each listed Conv/Gemm's bias moved by its measured output shift."""
    by_name = {n.name: n for n in qdq.graph.node}
    chosen = [n for n in nodes if n in by_name and by_name[n].op_type in OPS]
    shifts = output_shifts(fp32, qdq, chosen, data.take(min(len(data), SAMPLES)))
    inits = {i.name: i for i in qdq.graph.initializer}
    done = []
    for name, (shift, rms) in shifts.items():
        node = by_name[name]
        channels = len(shift)
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in inits:
                continue
            bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
            if bias.shape != (channels,):
                continue
        else:
            bias = np.zeros(channels, np.float32)
        new = f"{node.input[2] if len(node.input) > 2 and node.input[2] else name + '.bias'}/corrected"
        qdq.graph.initializer.append(numpy_helper.from_array((bias + shift).astype(np.float32), new))
        if len(node.input) > 2:
            node.input[2] = new
        else:
            node.input.append(new)
        done.append(BiasCorrection(name, new, round(float(np.sqrt(np.mean(shift ** 2))), 6), round(rms, 6)))
    return qdq, done
