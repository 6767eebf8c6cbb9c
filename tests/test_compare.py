"""Per-layer comparison: contract, independent numpy check, agreement with ORT's qdq_loss_debug."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import workbench as wb
from workbench.analysis.compare import compare
from workbench.zoo.planted import digits, planted


@pytest.fixture(scope="module")
def int8_all(mnist, mnist_calib):
    return wb.apply(mnist, wb.Recipe("int8", placement="all"), mnist_calib, progress=False)


@pytest.fixture(scope="module")
def report(int8_all, mnist_eval):
    return compare(int8_all, mnist_eval.take(256), progress=False)


def test_rows_follow_the_fp32_graph_with_module_paths(report, mnist):
    tensors = list(report.layers["tensor"])
    assert tensors == ["input"] + [n.output[0] for n in mnist.proto.graph.node]
    conv = report.layers.set_index("node").loc["node_conv2d_1"]
    assert conv["module"] == "features.3" and conv["op_type"] == "Conv" and conv["quantized"]
    assert report.first_divergence is None, "mnist-cnn INT8 is healthy"
    assert 30 < report.outputs[0]["sqnr_db"] < 60 and report.outputs[0]["cosine"] > 0.999
    d = json.loads(report.to_json())
    assert set(d["layers"][0]) >= {"tensor", "node", "op_type", "module", "sqnr_db", "cosine", "max_abs", "mean_abs"}


def _all_outputs(path, tensors):
    m = onnx.load(str(path))
    del m.graph.output[:]
    m.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), opts), tensors


def test_metrics_match_an_independent_numpy_computation(report, int8_all, mnist, mnist_eval):
    data = mnist_eval.take(256).inputs["input"]
    ref_sess, _ = _all_outputs(mnist.path, ["conv2d_1", "logits"])
    cand_sess, _ = _all_outputs(int8_all.path, ["conv2d_1_DequantizeLinear_Output", "logits"])
    ref = [np.concatenate(x) for x in zip(*[ref_sess.run(None, {"input": data[i:i + 50]}) for i in range(0, 256, 50)])]
    cand = [np.concatenate(x) for x in zip(*[cand_sess.run(None, {"input": data[i:i + 50]}) for i in range(0, 256, 50)])]
    layer, output = report.layers.set_index("tensor").loc["conv2d_1"], report.outputs[0]
    for (r, c), row in zip(zip(ref, cand), [layer, output]):
        rows_r, rows_c = r.reshape(len(r), -1).astype(np.float64), c.reshape(len(c), -1).astype(np.float64)
        r, c = r.astype(np.float64).ravel(), c.astype(np.float64).ravel()
        assert row["pooled_sqnr_db"] == pytest.approx(20 * np.log10(np.linalg.norm(r) / np.linalg.norm(r - c)),
                                                      abs=1e-3)
        assert row["pooled_cosine"] == pytest.approx(r @ c / np.linalg.norm(r) / np.linalg.norm(c), abs=1e-6)
        assert row["max_abs"] == pytest.approx(np.abs(r - c).max(), rel=1e-6)
    # the output's verdict is per sample: the mean, 5th percentile and worst of the per-sample scores
    per_cos = (rows_r * rows_c).sum(1) / np.linalg.norm(rows_r, axis=1) / np.linalg.norm(rows_c, axis=1)
    per_sqnr = 20 * np.log10(np.linalg.norm(rows_r, axis=1) / np.linalg.norm(rows_r - rows_c, axis=1))
    assert output["cosine"] == pytest.approx(per_cos.mean(), abs=1e-6)
    assert output["cosine_worst"] == pytest.approx(per_cos.min(), abs=1e-6)
    assert output["cosine_p5"] == pytest.approx(np.percentile(per_cos, 5), abs=1e-6)
    assert output["sqnr_db"] == pytest.approx(per_sqnr.mean(), abs=1e-3)
    assert output["worst_samples"][0]["index"] == int(per_cos.argmin())
    # a layer is judged per sample too: the mean per-sample noise power in dB, the mean per-sample cosine
    r, c = ref[0].reshape(256, -1).astype(np.float64), cand[0].reshape(256, -1).astype(np.float64)
    noise = ((r - c) ** 2).sum(1) / (r ** 2).sum(1)
    assert layer["sqnr_db"] == pytest.approx(-10 * np.log10(noise.mean()), abs=1e-3)
    assert layer["sqnr_worst_db"] == pytest.approx(-10 * np.log10(noise.max()), abs=1e-3)
    assert layer["cosine"] == pytest.approx(np.mean((r * c).sum(1) / np.linalg.norm(r, axis=1)
                                                    / np.linalg.norm(c, axis=1)), abs=1e-6)


def test_sqnr_agrees_with_onnxruntime_qdq_loss_debug(report, int8_all, mnist, mnist_eval, tmp_path):
    from onnxruntime.quantization import qdq_loss_debug as dbg
    from onnxruntime.quantization.calibrate import CalibrationDataReader

    data = mnist_eval.take(256)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(list(data.batches(32)))

        def get_next(self):
            return next(self.it, None)

    dbg.modify_model_output_intermediate_tensors(str(mnist.path), str(tmp_path / "f.onnx"), save_as_external_data=False)
    dbg.modify_model_output_intermediate_tensors(str(int8_all.path), str(tmp_path / "q.onnx"), save_as_external_data=False)
    float_acts = dbg.collect_activations(str(tmp_path / "f.onnx"), Reader())
    qdq_acts = dbg.collect_activations(str(tmp_path / "q.onnx"), Reader())
    errors = dbg.compute_activation_error(dbg.create_activation_matching(qdq_acts, float_acts))
    ours = report.layers.set_index("tensor")
    checked = 0
    for tensor, err in errors.items():
        if "xmodel_err" in err and tensor in ours.index and ours.loc[tensor, "quantized"]:
            assert ours.loc[tensor, "pooled_sqnr_db"] == pytest.approx(err["xmodel_err"], abs=0.05), tensor
            checked += 1
    assert checked >= 8


def test_framework_check_compares_pytorch_with_the_onnx_export(report):
    pytest.importorskip("torch")
    assert report.framework["ok"] and report.framework["outputs"][0]["sqnr_db"] > 80


def test_planted_collapse_is_the_first_divergence():
    spec, model = planted((1,))
    t = wb.apply(model, wb.Recipe("int8"), digits("calib"), progress=False)
    r = compare(t, digits("eval"), progress=False)
    assert r.first_divergence == "block2.conv_out"
    assert r.largest_drop["node"] == spec.culprits()[0]
    row = r.layers.set_index("node").loc["block3.conv"]
    assert row["sqnr_db"] < 10 < 30 < row["local_sqnr_db"], "local sensitivity is not masked by the collapse upstream"


def test_saved_outputs_load_as_polygraphy_run_results(int8_all, mnist_eval, tmp_path):
    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json

    compare(int8_all, mnist_eval.take(64), save_dir=tmp_path, framework=False, progress=False)
    results = RunResults.load(str(tmp_path / "outputs.json"))
    assert len(results) == 2
    for _, iters in results.items():
        assert [list(it.keys()) for it in iters] == [["logits"]] * len(iters)
        assert sum(len(it["logits"]) for it in iters) == 64
    inputs = load_json(str(tmp_path / "inputs.json"))
    assert sum(len(feed["input"]) for feed in inputs) == 64


def test_a_toggle_reuses_the_reference_engine_and_gets_the_same_numbers(int8_all, mnist, mnist_calib, mnist_eval):
    """The app's precision toggle keeps the FP32 side's marked engine (issue 16: toggle time); numbers unchanged."""
    from workbench.analysis import compare as module

    data = mnist_eval.take(64)
    plain = compare(int8_all, data, progress=False, local_sensitivity=False, framework=False)
    module.prepare_reference(int8_all)  # what the app does in the background after Build & compare
    kept = list(module._REFERENCE_ENGINE.values())
    first = compare(int8_all, data, progress=False, local_sensitivity=False, framework=False, reuse_reference=True)
    toggled = wb.apply(mnist, wb.Recipe("int8", placement="all", exclude=("node_conv2d_1",)), mnist_calib,
                       progress=False)
    again = compare(toggled, data, progress=False, local_sensitivity=False, framework=False, reuse_reference=True)
    assert len(kept) == 1 and list(module._REFERENCE_ENGINE.values()) == kept, "the same engine served the toggle"
    assert first.layers.equals(plain.layers) and first.outputs == plain.outputs
    fresh = compare(toggled, data, progress=False, local_sensitivity=False, framework=False)
    assert again.layers.equals(fresh.layers) and again.outputs == fresh.outputs
    assert "node_conv2d_1" in again.excluded_nodes and not again.layers.equals(first.layers)
    # the FP32 side's values of these 64 samples were kept: the next toggle runs only the candidate
    assert len(module._KEPT_VALUES) == 1
    engine = kept[0]

    class NoReferenceRuns:
        def runner(self):
            runner = engine.runner()
            runner.infer = lambda feed: pytest.fail("the reference ran again")
            return runner

    module._REFERENCE_ENGINE[next(iter(module._REFERENCE_ENGINE))] = NoReferenceRuns()
    replayed = compare(int8_all, data, progress=False, local_sensitivity=False, framework=False, reuse_reference=True)
    assert replayed.layers.equals(plain.layers) and replayed.outputs == plain.outputs


def test_a_stored_run_is_read_without_building_an_engine(mnist, mnist_eval, monkeypatch, tmp_path):
    """Issue 28 (parse once): the run cache's key comes from the backend's settings, so a stored run costs a file
    read, not an ONNX Runtime session; the outputs are the ones computed."""
    from workbench.analysis.evaluate import cached_run
    from workbench.runtime import get_backend

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("WORKBENCH_RUN_CACHE", raising=False)
    backend, data = get_backend(), mnist_eval.take(16)
    first = cached_run(backend, mnist, data)
    monkeypatch.setattr(type(backend), "build", lambda self, path: pytest.fail("an engine was built for a stored run"))
    again = cached_run(backend, mnist, data)
    assert again.keys() == first.keys() and all(np.array_equal(again[k], first[k]) for k in first)
