"""NNCF's side of benchmarks/peers.py, run by the peer environment's python (.venv-peers: nncf, onnx, onnxruntime;
never the workbench's). Quantizes an FP32 ONNX model with NNCF's ONNX backend (symmetric preset, per-tensor
activations, per-channel weights), either plainly (`quantize`) or with accuracy control
(`quantize_with_accuracy_control`) on the same statistic the workbench's diagnosis targets: the mean over samples of
the per-sample cosine between the quantized and the FP32 outputs (FP32 scores 1.0, so max_drop 0.01 asks ≥ 0.99).

NNCF cannot be told to keep activations signed (`signedness_to_force=True` conflicts with every HW config in 3.4),
and it quantizes what follows a ReLU as uint8, which older TensorRT parsers reject and TensorRT-RTX 1.7 builds as an
INT8 quantizer of unknown range (lint's unsigned-quantize). So beside NNCF's own output (OUT) the driver writes
OUT-trt.onnx: each uint8 quantizer turned into the int8 one covering the same range (zero point 0: scale
× 255/127; zero point 128: the same scale), the cost TensorRT-legal Q/DQ has for that model.

    .venv-peers/bin/python benchmarks/_nncf_driver.py FP32.onnx CALIB.npz EVAL.npz OUT.onnx [--accuracy-control]
"""
from __future__ import annotations

import argparse
import json
import time

import nncf
import numpy as np
import onnx
import onnxruntime as ort
from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters


def samples(path: str) -> list[dict[str, np.ndarray]]:
    arrays = dict(np.load(path))
    arrays.pop("labels", None)
    count = len(next(iter(arrays.values())))
    return [{k: v[i:i + 1] for k, v in arrays.items()} for i in range(count)]


def session(model: onnx.ModelProto | str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # Q/DQ simulated, as TensorRT
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def flat(outputs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(o, np.float64).ravel() for o in outputs])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 1.0 if na == nb == 0 else float(a @ b / max(na * nb, 1e-30))


def signed(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every uint8 Q/DQ as the signed int8 Q/DQ that covers the same range with zero point 0."""
    from onnx import numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {i.name: i for i in model.graph.initializer}
    done = set()
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        scale_name, zero_name = node.input[1], node.input[2]
        if zero_name in done or zero_name not in inits or scale_name not in inits:
            continue
        zero = numpy_helper.to_array(inits[zero_name])
        if zero.dtype != np.uint8:
            continue
        scale = numpy_helper.to_array(inits[scale_name]).astype(np.float32)
        reach = np.maximum(zero.astype(np.float32), 255.0 - zero.astype(np.float32))
        new_scale = np.where(zero == 128, scale, scale * reach / 127.0).astype(np.float32)
        inits[scale_name].CopyFrom(numpy_helper.from_array(new_scale, scale_name))
        inits[zero_name].CopyFrom(numpy_helper.from_array(np.zeros_like(zero, dtype=np.int8), zero_name))
        done.add(zero_name)
    quantized = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2
                 and n.input[2] in done}
    for value in model.graph.value_info:  # the quantizers' outputs and the zero points themselves
        if value.name in quantized or value.name in done:
            value.type.tensor_type.elem_type = onnx.TensorProto.INT8
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("fp32")
    parser.add_argument("calib")
    parser.add_argument("eval")
    parser.add_argument("out")
    parser.add_argument("--accuracy-control", action="store_true")
    parser.add_argument("--max-drop", type=float, default=0.01)
    args = parser.parse_args()

    model = onnx.load(args.fp32)
    calib, evaluation = samples(args.calib), samples(args.eval)
    reference_session = session(args.fp32)
    reference = [flat(reference_session.run(None, feed)) for feed in evaluation]
    sessions: dict[int, tuple[onnx.ModelProto, ort.InferenceSession]] = {}

    def validate(candidate: onnx.ModelProto, items) -> tuple[float, list[float]]:
        if id(candidate) not in sessions:  # NNCF calls once per sample while ranking: one session per model
            sessions.clear()
            sessions[id(candidate)] = (candidate, session(candidate))
        run = sessions[id(candidate)][1]
        values = [cosine(flat(run.run(None, feed)), reference[i]) for i, feed in items]
        return float(np.mean(values)), values

    params = AdvancedQuantizationParameters(
        activations_quantization_params=QuantizationParameters(per_channel=False),
        weights_quantization_params=QuantizationParameters(per_channel=True))
    common = {"preset": nncf.QuantizationPreset.PERFORMANCE, "subset_size": len(calib)}
    calibration = nncf.Dataset(calib)
    start = time.perf_counter()
    if args.accuracy_control:
        validation = nncf.Dataset(list(enumerate(evaluation)), lambda item: item[1])
        quantized = nncf.quantize_with_accuracy_control(
            model, calibration, validation, validate, max_drop=args.max_drop, drop_type=nncf.DropType.ABSOLUTE,
            advanced_quantization_parameters=params, **common)
    else:
        quantized = nncf.quantize(model, calibration, advanced_parameters=params, **common)
    seconds = time.perf_counter() - start
    onnx.save(quantized, args.out)
    onnx.save(signed(quantized), args.out[:-len(".onnx")] + "-trt.onnx")
    print(json.dumps({"seconds": seconds, "nncf": nncf.__version__}))


if __name__ == "__main__":
    main()
