"""Exclusions are cut out of one cached, fully quantized graph: the same graph ONNX Runtime's quantizer writes when
told to exclude those nodes (TensorRT placement), without re-quantizing every weight channel per toggle."""
import random
import tempfile

import numpy as np
import onnx
import pytest

import workbench as wb
from workbench.analysis.evaluate import run
from workbench.core.log import quiet_onnxruntime
from workbench.precision import quantize as Q
from workbench.precision.calibration import ort_method
from workbench.runtime import get_backend


def _ort_excluding(fp32, ranges, exclude, placement):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    op_types, extra = Q.placement_options(placement)
    with tempfile.TemporaryDirectory() as tmp, quiet_onnxruntime():
        quantize_static(str(fp32), f"{tmp}/q.onnx", calibration_data_reader=None, calibration_cache_path=str(ranges),
                        calibrate_method=ort_method("minmax"), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude),
                        op_types_to_quantize=op_types, extra_options={**Q.TENSORRT_QDQ_OPTIONS, **extra})
        model = onnx.load(f"{tmp}/q.onnx")
    original = onnx.load(str(fp32))
    model = Q.keep_in_float(model, original, set(exclude))
    collateral = Q.unquantize_half(model, original)
    Q.toposort(model.graph)
    return model, collateral


def _signature(model):
    return (sorted((n.op_type, tuple(n.input), tuple(n.output)) for n in model.graph.node),
            sorted(i.name for i in model.graph.initializer))


@pytest.mark.parametrize("placement", ["tensorrt", "all"])
def test_exclusions_from_the_cached_graph_match_onnxruntime_excluding_them(mnist, mnist_calib, mnist_eval, placement):
    first = wb.apply(mnist, wb.Recipe("int8", placement=placement), mnist_calib.take(64), progress=False)
    fp32, ranges = first.model.path, first.calibration.path
    data = mnist_eval.take(64)
    backend = get_backend()
    rng = random.Random(0)
    for count in (1, 3, len(first.quantized_nodes)):
        exclude = rng.sample(first.quantized_nodes, count)
        ours, ours_collateral = Q.quantize_int8(fp32, ranges, "minmax", exclude, True, placement)
        theirs, their_collateral = _ort_excluding(fp32, ranges, exclude, placement)
        assert sorted(ours_collateral) == sorted(their_collateral)
        if placement == "tensorrt":
            assert _signature(ours) == _signature(theirs), exclude
        # placement 'all': a MaxPool after an excluded Conv may take its input's scale instead of its own
        a = run(backend.build_from_bytes(ours.SerializeToString(), "ours"), data)
        b = run(backend.build_from_bytes(theirs.SerializeToString(), "theirs"), data)
        assert all(np.allclose(a[k], b[k], atol=1e-5) for k in a), exclude
