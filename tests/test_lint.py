"""`workbench lint --target tensorrt`: real violations are flagged, the workbench's own INT8 output is clean."""
import json
import subprocess
import sys

import onnx
import pytest
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import CalibrationDataReader

import workbench as wb
from workbench.lint import lint


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
    assert {"int32-dequantize", "unsigned-zero-point"} <= found
    signed = _ort_quantize(mnist, mnist_calib, tmp_path, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    assert "nonzero-zero-point" in rules(signed) and "int32-dequantize" in rules(signed)


def test_flags_unpaired_and_unfused_qdq(mnist, mnist_calib):
    t = wb.apply(mnist, wb.Recipe("int8"), mnist_calib, progress=False)
    m = onnx.load(str(t.path))
    dq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == "max_pool2d_QuantizeLinear_Output")
    dq.op_type = "Identity"  # the Q now feeds a non-DQ node
    del dq.input[1:]
    assert "unpaired-q" in rules(m)
    minilm_like = onnx.load(str(t.path))
    node = next(n for n in minilm_like.graph.node if n.name == "node_relu_2")
    node.op_type = "Softmax"  # Q/DQ feeding an op TensorRT has no INT8 kernel for
    node.input[0] = "view_DequantizeLinear_Output"
    assert "qdq-not-fused" in rules(minilm_like)


def test_cli_exit_codes(mnist, mnist_calib, tmp_path):
    t = wb.apply(mnist, wb.Recipe("int8"), mnist_calib, progress=False)
    clean = subprocess.run([sys.executable, "-m", "workbench.cli", "lint", str(t.path)], capture_output=True, text=True)
    assert clean.returncode == 0 and json.loads(clean.stdout)["clean"]
    onnx.save(_ort_quantize(mnist, mnist_calib, tmp_path, activation_type=QuantType.QUInt8), tmp_path / "bad.onnx")
    bad = subprocess.run([sys.executable, "-m", "workbench.cli", "lint", str(tmp_path / "bad.onnx"), "--json",
                          str(tmp_path / "l.json")], capture_output=True, text=True)
    assert bad.returncode == 1 and json.loads((tmp_path / "l.json").read_text())["errors"] > 0
