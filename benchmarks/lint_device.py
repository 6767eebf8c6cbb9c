"""Does `workbench lint --target tensorrt` agree with TensorRT's parser and builder? One small negative case per
lint rule, checked on the accelerator machine with TensorRT-RTX (README, "TensorRT on a GPU machine").

    python benchmarks/lint_device.py export .device/lint        # here: write the cases and lint them
    python benchmarks/lint_device.py check .device/lint         # there, after device-install: parse and build

Every case is one 3x3 Conv (64 → 256 channels, 32x32) with its Q/DQ written by hand, plus the ops a rule needs.
`check` records per case: parse (and the parser's error), build (and the builder's error), plan bytes, and from
the builder's verbose log (its per-layer engine information, printed at build time even where the runtime cannot
deserialize the plan) the data types the Conv's kernel really reads: `Int8 x Int8` runs in INT8, `Float x Float`
runs in float; and the engine layers the Q/DQ nodes became. Control cases: the same Conv all-float, correctly
quantized, and with 7-bit weights. The verbose logs go to one file, lint-logs.txt.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _table import markdown_table  # noqa: E402

C_IN, C_OUT, HW = 64, 256, 32


# What TensorRT-RTX 1.7.1.116 did with each case on an H100 and again on an H200 (2026-11-25, same results;
# `check` prints it again). Cases named
# after a rule lint no longer has (unpaired-dq, unpaired-q, per-channel-opset) were built in INT8 there, so lint
# stopped reporting them.
DEVICE = {
    "control-fp32": "builds; Conv reads Float x Float",
    "control-int8": "builds; Conv reads Int8 x Int8",
    "control-int8-7bit-weights": "builds; Conv reads Int8 x Int8",
    "int32-dequantize": "parser rejects: DQ input has type Int32 but must have type FP8, FP4, Int4, Int8, or UInt8",
    "unsigned-zero-point": "parser rejects: Non-zero zero point is not supported",
    "unsigned-quantize": "builds; Conv reads Int8 x Int8, the UINT8 quantizer (zero point 0) becomes a Float->Int8 "
                         "kernel with the Relu (act+q_x), as a signed one does (H100, 2026-12-06)",
    "nonzero-zero-point": "parser rejects: Non-zero zero point is not supported",
    "half-quantized-weights": "builds; runs in float: Conv reads Float x Float, weights dequantized by a kernel",
    "half-quantized-input": "builds; runs in float: Conv reads Float x Float after a fake-quantize kernel",
    "qdq-not-fused": "builds; the Q/DQ before Exp is folded into a Float->Float kernel (fake quantization)",
    "control-exp-float": "builds; Conv reads Int8 x Int8, Exp in float",
    "unpaired-dq": "builds in INT8: the Cast to INT8 becomes the quantizer, Conv reads Int8 x Int8",
    "unpaired-q": "builds in INT8: Conv reads Int8 x Int8, the extra reader gets its own cast",
    "per-channel-opset": "builds in INT8 (opset 10 with per-channel scales; ONNX Runtime loads it too)",
    "control-relu6": "builds; Conv reads Int8 x Int8, the Clip fused into its epilogue kernel (MulAddMaxMin)",
    "equalized-relu6": "builds; Conv reads Int8 x Int8, Relu + per-channel Min fused into the same epilogue kernel "
                       "(MulAddReluMinMove): as many engine layers as the Clip (H200, 2026-11-26)",
    "control-act-quantize": "builds; Conv reads Int8 x Int8, the Relu fused into the Quantize kernel: 3 engine layers",
    "smoothed-mul": "builds; Conv reads Int8 x Int8, Relu + per-channel Mul fused into the same Quantize kernel: 3 "
                    "engine layers, as without the Mul (H200, 2026-11-26)",
    "onnx-ml-scaler": "parser rejects: Plugin not found (no importer for ai.onnx.ml Scaler)",
    "onnx-ml-array-feature-extractor": "parser rejects: Plugin not found (no importer for ArrayFeatureExtractor)",
}


def cases() -> dict[str, tuple[str, object]]:
    """name → (what lint should say, ONNX model)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, (C_OUT, C_IN, 3, 3)).astype(np.float32)
    bias = rng.normal(0, 0.1, C_OUT).astype(np.float32)
    w_scale = (np.abs(w).reshape(C_OUT, -1).max(1) / 127).astype(np.float32)
    w_q = np.clip(np.round(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    x_scale = np.float32(4.0 / 127)

    def init(name, array):
        return numpy_helper.from_array(np.asarray(array), name)

    def model(nodes, inits, outputs=("y",), opset=17, inputs=None, out_types=None):
        inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C_IN, HW, HW])]
        shapes = {"y": [1, C_OUT, HW, HW], "xq_float": [1, C_IN, HW, HW]}
        outs = [helper.make_tensor_value_info(o, (out_types or {}).get(o, TensorProto.FLOAT), shapes[o])
                for o in outputs]
        graph = helper.make_graph(nodes, "case", inputs, outs, inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m

    conv = helper.make_node("Conv", ["xin", "win", "b"], ["c"], name="conv", pads=[1, 1, 1, 1])
    relu = helper.make_node("Relu", ["c"], ["y"], name="relu")
    float_w = [init("w", w), init("b", bias)]
    q_w = [init("wq", w_q), init("ws", w_scale), init("wz", np.zeros(C_OUT, np.int8)), init("b", bias)]
    dq_w = helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["win"], name="dq_w", axis=0)
    xs, xz = init("xs", x_scale), init("xz", np.int8(0))

    def q_x(zero="xz", scale="xs", source="x"):
        return [helper.make_node("QuantizeLinear", [source, scale, zero], ["xq"], name="q_x"),
                helper.make_node("DequantizeLinear", ["xq", scale, zero], ["xin"], name="dq_x")]

    conv_fw = helper.make_node("Conv", ["xin", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1])
    act = helper.make_node("Relu", ["x"], ["a"], name="act")
    ident_x = helper.make_node("Identity", ["x"], ["xin"], name="x_id")
    w7_scale = (np.abs(w).reshape(C_OUT, -1).max(1) / 64).astype(np.float32)
    w7 = np.clip(np.round(w / w7_scale[:, None, None, None]), -64, 64).astype(np.int8)
    cases = {
        "control-fp32": ("clean", model([ident_x, conv_fw, relu], float_w)),
        "control-int8": ("clean", model(q_x() + [dq_w, conv, relu], q_w + [xs, xz])),
        "control-int8-7bit-weights": ("clean", model(q_x() + [dq_w, conv, relu], [
            init("wq", w7), init("ws", w7_scale), init("wz", np.zeros(C_OUT, np.int8)), init("b", bias), xs, xz])),
    }
    bias_i32 = np.round(bias / (x_scale * w_scale)).astype(np.int32)
    conv_qb = helper.make_node("Conv", ["xin", "win", "bin"], ["c"], name="conv", pads=[1, 1, 1, 1])
    cases["int32-dequantize"] = ("int32-dequantize", model(
        q_x() + [dq_w, helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bin"], name="dq_b", axis=0),
                 conv_qb, relu],
        q_w + [xs, xz, init("bq", bias_i32), init("bs", (x_scale * w_scale).astype(np.float32)),
               init("bz", np.zeros(C_OUT, np.int32))]))
    cases["unpaired-dq"] = ("clean", model(
        [helper.make_node("Cast", ["x"], ["xq"], name="cast_int8", to=TensorProto.INT8),
         helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xin"], name="dq_x"), dq_w, conv, relu],
        q_w + [xs, xz]))
    cases["unpaired-q"] = ("clean", model(
        q_x() + [dq_w, conv, relu, helper.make_node("Cast", ["xq"], ["xq_float"], name="cast_back",
                                                     to=TensorProto.FLOAT)],
        q_w + [xs, xz], outputs=("y", "xq_float")))
    cases["unsigned-zero-point"] = ("unsigned-zero-point", model(
        q_x(zero="xz8") + [dq_w, conv, relu], q_w + [xs, init("xz8", np.uint8(128))]))
    cases["unsigned-quantize"] = ("unsigned-quantize", model(  # NNCF's quantizer after a ReLU: UINT8, zero point 0
        [act] + q_x(zero="xz0u", source="a") + [dq_w, conv, relu], q_w + [xs, init("xz0u", np.uint8(0))]))
    cases["nonzero-zero-point"] = ("nonzero-zero-point", model(
        q_x(zero="xz5") + [dq_w, conv, relu], q_w + [xs, init("xz5", np.int8(5))]))
    dq_w10 = helper.make_node("DequantizeLinear", ["wq", "ws"], ["win"], name="dq_w")
    cases["per-channel-opset"] = ("clean", model(
        [helper.make_node("QuantizeLinear", ["x", "xs"], ["xq"], name="q_x"),
         helper.make_node("DequantizeLinear", ["xq", "xs"], ["xin"], name="dq_x"), dq_w10, conv, relu],
        [init("wq", w_q), init("ws", w_scale), init("b", bias), xs], opset=10))
    cases["half-quantized-weights"] = ("half-quantized", model([ident_x, dq_w, conv, relu], q_w))
    cases["half-quantized-input"] = ("half-quantized", model(q_x() + [conv_fw, relu], float_w + [xs, xz]))
    exp = helper.make_node("Exp", ["cin"], ["y"], name="exp")
    cut = helper.make_node("Mul", ["c", "tenth"], ["cin0"], name="scale_down")
    cases["qdq-not-fused"] = ("qdq-not-fused", model(
        q_x() + [dq_w, conv, cut, helper.make_node("QuantizeLinear", ["cin0", "cs", "xz"], ["cq"], name="q_c"),
                 helper.make_node("DequantizeLinear", ["cq", "cs", "xz"], ["cin"], name="dq_c"), exp],
        q_w + [xs, xz, init("tenth", np.float32(0.1)), init("cs", np.float32(0.05))]))
    cases["control-exp-float"] = ("clean", model(
        q_x() + [dq_w, conv, cut, helper.make_node("Identity", ["cin0"], ["cin"], name="id_c"), exp],
        q_w + [xs, xz, init("tenth", np.float32(0.1))]))
    # Equalization (workbench.precision.equalize) turns a ReLU6 after a Conv into Relu + Min with per-channel bounds.
    clip6 = helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="relu6")
    cases["control-relu6"] = ("clean", model(q_x() + [dq_w, conv, clip6], q_w + [
        xs, xz, init("lo", np.float32(0.0)), init("hi", np.float32(6.0))]))
    bound = (6.0 / rng.uniform(0.05, 2.0, C_OUT)).astype(np.float32).reshape(1, C_OUT, 1, 1)
    cases["equalized-relu6"] = ("clean", model(q_x() + [dq_w, conv, helper.make_node("Relu", ["c"], ["r"], name="relu"),
                                                         helper.make_node("Min", ["r", "bound"], ["y"], name="bound")],
                                               q_w + [xs, xz, init("bound", bound)]))
    # Smoothing (workbench.precision.smooth) puts a per-channel Mul between an activation and the Quantize of a Conv's input.
    inverse = (1.0 / rng.uniform(0.05, 2.0, C_IN)).astype(np.float32).reshape(1, C_IN, 1, 1)
    cases["control-act-quantize"] = ("clean", model([act] + q_x(source="a") + [dq_w, conv, relu], q_w + [xs, xz]))
    cases["smoothed-mul"] = ("clean", model(
        [act, helper.make_node("Mul", ["a", "inverse"], ["a_smoothed"], name="a/smooth")]
        + q_x(source="a_smoothed") + [dq_w, conv, relu], q_w + [xs, xz, init("inverse", inverse)]))
    ml = helper.make_opsetid("ai.onnx.ml", 3)
    scaler = helper.make_node("Scaler", ["x_flat"], ["x_scaled"], name="scaler", domain="ai.onnx.ml",
                              offset=[0.0], scale=[2.0])
    cases["onnx-ml-scaler"] = ("onnx-ml", model(
        [helper.make_node("Reshape", ["x", "flat"], ["x_flat"], name="flatten"), scaler,
         helper.make_node("Reshape", ["x_scaled", "shape"], ["xin"], name="unflatten"), conv_fw, relu],
        float_w + [init("flat", np.array([1, -1], np.int64)), init("shape", np.array([1, C_IN, HW, HW], np.int64))]))
    cases["onnx-ml-scaler"][1].opset_import.append(ml)
    afe = helper.make_node("ArrayFeatureExtractor", ["c_flat", "pick"], ["picked"], name="pick_features",
                           domain="ai.onnx.ml")
    cases["onnx-ml-array-feature-extractor"] = ("onnx-ml", model(
        [ident_x, conv_fw, helper.make_node("Reshape", ["c", "flat"], ["c_flat"], name="flatten"), afe,
         helper.make_node("Relu", ["picked"], ["y"], name="relu")],
        float_w + [init("flat", np.array([1, -1], np.int64)), init("pick", np.array([0, 1, 2], np.int64))],
        ))
    cases["onnx-ml-array-feature-extractor"][1].opset_import.append(ml)
    cases["onnx-ml-array-feature-extractor"][1].graph.output[0].CopyFrom(
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]))
    for name, (_, m) in cases.items():
        if name != "per-channel-opset":  # invalid ONNX on purpose: opset 10 has no per-channel Q/DQ
            onnx.checker.check_model(m, full_check=True)
    return cases


def export(folder: Path) -> None:
    import onnx

    from workbench.graph.lint import lint

    folder.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, (expected, m) in cases().items():
        onnx.save(m, str(folder / f"{name}.onnx"))
        rules = sorted({f.rule for f in lint(m, name).findings})
        summary[name] = {"lint_expected": expected, "lint": rules or ["clean"]}
        if (rules or ["clean"]) != [expected]:
            print(f"{name}: lint says {rules}, expected {expected}", file=sys.stderr)
    (folder / "lint.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


def check(folder: Path, logs: Path) -> list[dict]:
    import tensorrt_rtx as trt

    class Logger(trt.ILogger):
        def __init__(self):
            super().__init__()
            self.lines: list[str] = []

        def log(self, severity, msg):
            self.lines.append(f"{severity.name}: {msg}")

    summary = json.loads((folder / "lint.json").read_text())
    logs.parent.mkdir(parents=True, exist_ok=True)
    all_logs: list[str] = []
    rows = []
    for path in sorted(folder.glob("*.onnx")):
        logger = Logger()
        logger.min_severity = trt.Logger.Severity.VERBOSE
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        ok = parser.parse(path.read_bytes())
        row = {"case": path.stem, **summary.get(path.stem, {})}
        if not ok:
            errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
            row.update(parse="rejected: " + " | ".join(errors)[:400], build="")
        else:
            row.update(parse=f"ok ({network.num_layers} layers)")
            config = builder.create_builder_config()
            config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
            inputs = [network.get_input(i) for i in range(network.num_inputs)]
            if any(-1 in tuple(t.shape) for t in inputs):  # a whole model with a dynamic batch: batch 1
                profile = builder.create_optimization_profile()
                for t in inputs:
                    shape = tuple(1 if d == -1 else d for d in t.shape)
                    profile.set_shape(t.name, shape, shape, shape)
                config.add_optimization_profile(profile)
            data = builder.build_serialized_network(network, config)
            if data is None:
                errors = [line for line in logger.lines if line.startswith(("ERROR", "INTERNAL_ERROR"))]
                row.update(build="failed: " + " | ".join(errors)[:400])
            else:
                row.update(build="ok", plan_bytes=data.nbytes, **_engine_layers(logger.lines))
        all_logs += [f"===== {path.stem}"] + logger.lines
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    logs.write_text("\n".join(all_logs))
    print(json.dumps({"runtime": f"TensorRT-RTX {trt.__version__}"}))
    return rows


def _engine_layers(lines: list[str]) -> dict:
    """From the verbose build log's engine layer lines ("Name: ..., LayerType: ..., Inputs: [...], Constants:
    [...], Outputs: [...], ..., Metadata: [ONNX Layer: ...]"): how many layers, the data types the Conv's kernel
    reads (activation x weights), and what became of the Q/DQ nodes of the case."""
    import re

    layers = []
    for line in (part for message in lines for part in message.splitlines()):
        if not (line.startswith("Name: ") and ", LayerType: " in line):
            continue
        part = {key: re.findall(r"Datatype: (\w+)", chunk) for key, chunk in zip(
            ("inputs", "constants", "outputs"),
            (line.split("Inputs: [", 1)[-1].split("Constants: [", 1)[0],
             line.split("Constants: [", 1)[-1].split("Outputs: [", 1)[0],
             line.split("Outputs: [", 1)[-1].split("TacticName", 1)[0]))}
        layers.append({"type": line.split(", LayerType: ", 1)[1].split(",", 1)[0],
                       "onnx": re.findall(r"\[ONNX Layer: ([^\]]+)\]", line), **part})
    conv = next((layer for layer in layers if layer["type"] in ("correlation", "convolution") or (
        "conv" in layer["onnx"] and layer["type"] != "kgen")), None)
    conv_reads = None
    if conv is not None:
        weight = conv["constants"][0] if conv["constants"] and len(conv["inputs"]) < 2 else (
            conv["inputs"][1] if len(conv["inputs"]) > 1 else "?")
        conv_reads = f"{conv['inputs'][0] if conv['inputs'] else '?'} x {weight}"
    qdq = [f"{'+'.join(x['onnx'])}: {x['type']} {'/'.join(x['inputs'] or x['constants'])}->{'/'.join(x['outputs'])}"
           for x in layers if any(n.startswith(("q_", "dq_", "cast")) for n in x["onnx"]) and conv is not x]
    convs = [layer for layer in layers if layer["type"] in ("correlation", "convolution")]
    return {"engine_layers": len(layers), "conv_reads": conv_reads,
            "int8_conv_layers": f"{sum(1 for c in convs if c['inputs'][:1] == ['Int8'])} of {len(convs)}",
            "conv_layer_holds": "+".join(conv["onnx"]) if conv is not None else None, "qdq_layers": "; ".join(qdq)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=("export", "check"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--logs", type=Path, default=Path(os.environ.get("OUT", ".")) / "lint-logs.txt")
    args = parser.parse_args()
    if args.step == "export":
        export(args.folder)
        return
    rows = check(args.folder, args.logs)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
