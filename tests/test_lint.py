"""`workbench lint --target tensorrt`: real violations are flagged, the workbench's own INT8 output is clean."""
import json
import sys
from pathlib import Path

import onnx
import pytest
from conftest import run_cli
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import CalibrationDataReader

import workbench as wb
from workbench.graph.lint import lint


def rules(model):
    return {f.rule for f in lint(model).findings}


@pytest.mark.parametrize("placement", ["tensorrt", "all"])
def test_own_int8_output_is_clean(mnist, mnist_calib, placement):
    t = wb.apply(mnist, wb.Recipe("int8", placement=placement), mnist_calib, progress=False)
    assert lint(onnx.load(str(t.path))).clean


def _ort_quantize(mnist, mnist_calib, tmp_path, **options):
    data = list(mnist_calib.take(32).batches(16))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(data)

        def get_next(self):
            return next(self.it, None)

    out = tmp_path / "q.onnx"
    quantize_static(str(mnist.path), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, **options)
    return onnx.load(str(out))


def test_flags_what_tensorrt_rejects(mnist, mnist_calib, tmp_path):
    unsigned = _ort_quantize(mnist, mnist_calib, tmp_path, activation_type=QuantType.QUInt8)  # + INT32 biases
    found = rules(unsigned)
    # zero point 128 on signed inputs (rejected); 0 after the ReLUs, where TensorRT-RTX builds a signed INT8
    # quantizer of the same scale (lint_device's unsigned-quantize case): half the calibrated range
    assert {"int32-dequantize", "unsigned-zero-point", "unsigned-quantize"} <= found
    signed = _ort_quantize(mnist, mnist_calib, tmp_path, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    assert "nonzero-zero-point" in rules(signed) and "int32-dequantize" in rules(signed)


def test_lint_agrees_with_tensorrt_on_the_device_cases():
    """One case per rule (and the patterns lint dropped), each checked with TensorRT-RTX on an H100
    (benchmarks/lint_device.py, its DEVICE table): lint reports exactly the rule whose case the parser rejected or
    ran in float, and nothing for the cases that built in INT8."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import lint_device

    cases = lint_device.cases()
    assert set(cases) == set(lint_device.DEVICE)
    for name, (expected, model) in cases.items():
        found = sorted(rules(model)) or ["clean"]
        assert found == [expected], (name, found, lint_device.DEVICE[name])
        errors = [f for f in lint(model).findings if f.severity == "error"]
        assert bool(errors) == lint_device.DEVICE[name].startswith("parser rejects"), name


ENGINE_LOG = [  # two engine-layer lines of TensorRT-RTX's verbose build log (half-quantized-weights case, H100)
    "VERBOSE: Engine Layer Information:\n"
    "Name: __myl_CastMulCast_myl0_0, LayerType: kgen, Inputs: [], Constants: [ { Name: c0, Dimensions: [256,1,1,1], "
    "Datatype: Float, Format: (Linear) }, { Name: c1, Dimensions: [256,64,3,3], Datatype: Int8, Format: (NHWC) }], "
    "Outputs: [ { Name: w, Dimensions: [256,64,3,3], Datatype: Float, Format: (NHWC) }], TacticName: t0, "
    "StreamId: 0, Metadata: [ONNX Layer: dq_w]\n"
    "Name: conv_myl0_2, LayerType: correlation, Inputs: [ { Name: x, Dimensions: [1,64,32,32], Datatype: Float, "
    "Format: (NHWC) }, { Name: w, Dimensions: [256,64,3,3], Datatype: Float, Format: (NHWC) }], Constants: [ { "
    "Name: b, Dimensions: [1,256,1,1], Datatype: Float, Format: (NHWC) }], Outputs: [ { Name: y, Dimensions: "
    "[1,256,32,32], Datatype: Float, Format: (NHWC) }], TacticName: stub, StreamId: 0, Metadata: [ONNX Layer: conv]"
    "[ONNX Layer: relu]",
]


def test_device_check_reads_the_conv_precision_from_the_build_log():
    """The device script's reading of the verbose log: the Conv reads Float x Float, its weights dequantized by a
    kernel of their own."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import lint_device

    layers = lint_device._engine_layers(ENGINE_LOG)
    assert layers == {"engine_layers": 2, "conv_reads": "Float x Float", "int8_conv_layers": "0 of 1",
                      "conv_layer_holds": "conv+relu", "qdq_layers": "dq_w: kgen Float/Int8->Float"}


def test_cli_exit_codes(mnist, mnist_calib, tmp_path):
    t = wb.apply(mnist, wb.Recipe("int8"), mnist_calib, progress=False)
    clean = run_cli("lint", str(t.path))
    assert clean.returncode == 0 and json.loads(clean.stdout)["clean"]
    onnx.save(_ort_quantize(mnist, mnist_calib, tmp_path, activation_type=QuantType.QUInt8), tmp_path / "bad.onnx")
    bad = run_cli("lint", str(tmp_path / "bad.onnx"), "--json",
                          str(tmp_path / "l.json"))
    assert bad.returncode == 1 and json.loads((tmp_path / "l.json").read_text())["errors"] > 0
