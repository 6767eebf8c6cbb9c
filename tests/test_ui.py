"""The app's logic without a browser: every control drives the library; errors stay in the panel."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import workbench as wb
from workbench.app.ui import Workbench


@pytest.fixture
def app():
    """A fresh app per test (1.3 s once the model is cached): no test sees what another one clicked."""
    return Workbench("mnist-cnn", eval_limit=256).wait()


def test_opens_on_int8_with_a_plot(app):
    assert "int8 minmax vs FP32" in app.layer_figure.layout.title.text
    assert [t.name for t in app.layer_figure.data][:2] == ["SQNR (dB)", "local SQNR (node alone, dB)"]
    assert "per-sample cosine mean" in app.status.value and "pooled" in app.status.value
    from workbench.runtime.tensorrt import TensorRT

    if TensorRT.availability()[0]:
        assert "tensorrt" in app.backend.options
    else:
        assert "TensorRT is not installed" in app.backend_note.value and app.backend.options == ("onnxruntime-cpu",)


def test_precision_toggle_rebuilds(app):
    app.precision.value = "fp16"  # the toggle's rebuild runs in the app's worker thread
    app.wait()
    assert "fp16 vs FP32" in app.layer_figure.layout.title.text
    app.precision.value = "int8"
    app.wait()
    assert "int8 minmax vs FP32" in app.layer_figure.layout.title.text


def test_click_a_layer_and_keep_it_in_fp32(app):
    app.select_node("node_conv2d_1")
    assert "features.3" in app.layer_detail.value and app.toggle_button.description == "Keep this node in FP32"
    app.toggle_selected()
    assert app.exclude.value == ("node_conv2d_1",) and "(1 excluded)" in app.status.value
    assert "kept in FP32" in [t.name for t in app.layer_figure.data]
    app.toggle_selected()
    assert app.exclude.value == ()


def test_profile_editor_validates_as_you_type_and_errors_stay_in_the_panel(app):
    box = app.profile_box.children[0]
    box.value = "8x1x28x28,4x1x28x28,16x1x28x28"
    assert "min ≤ opt ≤ max" in app.profile_message.value
    app.run()
    assert "crimson" in app.status.value and "min ≤ opt ≤ max" in app.status.value
    assert app.progress.bar_style == "danger"
    box.value = "1x1x28x28,8x1x28x28,32x1x28x28"
    assert "valid profile" in app.profile_message.value
    app.load("/no/such/model.onnx")
    assert "model file not found" in app.status.value


def test_diagnose_and_latency_tabs(app):
    app.run_diagnosis()
    assert "healthy" in app.diagnosis_text.value and app.apply_button.disabled
    assert re.search(r"done in 1 quantize \+ evaluate cycle \(budget \d+\)", app.status.value), "not 'in 1 runs'"
    app.iterations.value = 10
    app.batches.value = "1,2"
    app.run_latency()
    assert "ONNX Runtime CPU" in app.batch_figure.layout.title.text and len(app.distribution_figure.data) == 4
    colors: dict = {}
    for figure in (app.batch_figure, app.distribution_figure, app.tradeoff_figure):
        for trace in figure.data:
            recipe = (trace.legendgroup or "").split(" · ")[0]
            if recipe:
                color = trace.marker.color if trace.type != "scatter" or trace.mode != "lines+markers" else \
                    trace.line.color
                assert colors.setdefault(recipe, color) == color, f"{recipe} has two colours"
    assert len(colors) == 2 and len(set(colors.values())) == 2, "one colour per recipe, across every figure"
    assert list(app.batch_figure.layout.xaxis.tickvals) == [1, 2], "log batch axis labelled at measured batches only"
    assert app.tradeoff["pareto"].any() and "Pareto front" in [t.name for t in app.tradeoff_figure.data]


def test_copy_as_code_reproduces_the_result(app, tmp_path):
    app.exclude.value = ("node_linear_1",)
    app.run()
    namespace: dict = {}
    exec(app.python_code.value, namespace)
    ours = app.report.outputs[0]["sqnr_db"]
    assert namespace["report"].samples == app.report.samples == 256
    assert namespace["report"].outputs[0]["sqnr_db"] == pytest.approx(ours, abs=1e-6), "the same numbers, not close"
    cmd = shlex.split(app.cli_code.value)
    assert cmd[:3] == ["workbench", "compare", "mnist-cnn"] and "node_linear_1" in cmd and "--limit" in cmd
    r = subprocess.run([sys.executable, "-m", "workbench.app.cli", *cmd[1:]], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["outputs"][0]["sqnr_db"] == pytest.approx(ours, abs=1e-6)


def test_a_diagnosis_fixed_by_placement_is_applied_whole():
    """Review defect: with placement 'all', a diagnosis fixed by switching to 'tensorrt' (no fallback node) left
    Apply disabled, and Apply copied only the fallback list."""
    from workbench.zoo.planted import digits, masked_attention

    app = Workbench(masked_attention(), calib_data=digits("calib"), eval_data=digits("eval")).wait()
    app.placement.value = "all"
    app.run()
    app.run_diagnosis()
    suggested = app.diagnosis.recipe
    assert suggested.placement == "tensorrt" and not suggested.exclude and not app.apply_button.disabled
    app.apply_fallback()
    assert app.placement.value == "tensorrt" and app.recipe() == suggested
    assert app.report.outputs[0]["cosine"] >= 0.99


def test_diagnose_then_apply_restores_a_planted_collapse(tmp_path):
    from workbench.zoo.planted import digits, planted

    spec, model = planted((1,))
    app = Workbench(model, calib_data=digits("calib"), eval_data=digits("eval")).wait()
    assert app.report.outputs[0]["cosine"] < 0.95 and app.report.first_divergence == "block2.conv_out"
    app.run_diagnosis()
    assert spec.culprits()[0] in app.diagnosis_text.value and not app.apply_button.disabled
    app.apply_fallback()
    assert app.recipe() == app.diagnosis.recipe and app.form.widgets["equalize"].value  # equalization, no fallback needed
    assert app.report.outputs[0]["cosine"] >= 0.99 and "equalize=True" in app.python_code.value
    page = Path(app.save_report(str(tmp_path / "report.html"))).read_text()
    assert "Remedies tried, cheapest first" in page and spec.culprits()[0] in page and "plotly" in page
    assert "report saved" in app.status.value


def test_graph_view_colours_by_local_sqnr_and_its_toggle_requantizes():
    """The graph view on the planted collapse: the culprit is the reddest node, the first divergence is marked,
    Q/DQ edges carry a badge; toggling the culprit to FP16 recolours the graph and runs it in FP16."""
    from workbench.app.graphview import sqnr_color
    from workbench.zoo.planted import digits, planted

    spec, model = planted((1,))
    app = Workbench(model, calib_data=digits("calib"), eval_data=digits("eval"), eval_limit=128).wait()
    graph = app.graph_view.graph
    nodes = {n["id"]: n for n in graph["nodes"]}
    culprit = spec.culprits()[0]
    assert nodes[culprit]["color"] == sqnr_color(nodes[culprit]["local_sqnr_db"], graph["threshold_db"])
    assert nodes[culprit]["local_sqnr_db"] < graph["threshold_db"] < nodes["block0.conv"]["local_sqnr_db"]
    assert any(n["divergence"] for n in graph["nodes"]) and any(e["qdq"] for e in graph["edges"])
    assert {e["source"] for e in graph["edges"]} | {e["target"] for e in graph["edges"]} <= set(nodes)
    app.graph_view.selected = culprit
    assert culprit in app.graph_node.value and app.node_precision.value == "INT8"
    app.show_histogram()
    assert {"minmax", "entropy"} <= {a.text.split(":")[0] for a in app.histogram_figure.layout.annotations}
    app.node_precision.value = "FP16"
    app.wait()
    after = {n["id"]: n for n in app.graph_view.graph["nodes"]}
    assert after[culprit]["precision"] == "fp16" and app.recipe().fallback_precision == "fp16"
    assert culprit in app.recipe().exclude and app.report.outputs[0]["cosine"] >= 0.99
    assert app.graph_view.graph["structure"] == graph["structure"], "same graph: the browser only recolours"
    assert app.report.layers["sqnr_db"].notna().sum() > 5, "the FP16 fallback's tensors match the FP32 ones"


def test_a_graph_toggle_shows_a_preview_then_all_samples_and_a_new_toggle_stops_the_rest(monkeypatch):
    """Issue 28: a toggle recolours the graph from PREVIEW_SAMPLES samples first, then from all of them; a toggle
    while the rest runs stops it and wins (the widgets never show a precision the results were not computed in)."""
    import threading

    from workbench.analysis import compare as module
    from workbench.app.ui import app as app_module
    from workbench.core.progress import check_stop
    from workbench.zoo.planted import digits, planted

    spec, model = planted((1,))
    app = Workbench(model, calib_data=digits("calib"), eval_data=digits("eval"), eval_limit=128).wait()
    culprit = spec.culprits()[0]
    shown: list[int] = []
    original = app._show_report
    monkeypatch.setattr(app, "_show_report", lambda *a, **k: (shown.append(a[1].samples), original(*a, **k)))
    app.graph_view.selected = culprit
    app.node_precision.value = "FP32"
    app.wait()
    assert shown == [app_module.PREVIEW_SAMPLES, 128] and app.report.samples == 128
    assert 0 < app.timings["preview_s"] < app.timings["compared_s"] and "preview" not in app.status.value
    assert culprit in app.recipe().exclude and len(module._KEPT_VALUES) == 1, "the preview's FP32 side is kept"

    held, real = threading.Event(), module.compare

    def slow_full_pass(transformed, data, *args, **kwargs):
        if len(data) == 128 and not held.is_set():
            held.set()
            while True:  # until the new toggle stops it
                check_stop()
                threading.Event().wait(0.02)
        return real(transformed, data, *args, **kwargs)

    monkeypatch.setattr(module, "compare", slow_full_pass)
    shown.clear()
    app.node_precision.value = "INT8"  # back: the preview, then the held full pass
    assert held.wait(60)
    other = next(n["id"] for n in app.graph_view.graph["nodes"] if n["precision"] == "int8" and n["id"] != culprit)
    app.graph_view.selected = other
    app.node_precision.value = "FP32"  # stops the held pass and runs
    app.wait(120)
    assert shown == [app_module.PREVIEW_SAMPLES, app_module.PREVIEW_SAMPLES, 128]
    assert app.recipe().exclude == (other,) and app.report.samples == 128
    assert {n["id"]: n["precision"] for n in app.graph_view.graph["nodes"]}[culprit] == "int8"


def test_a_torch_module_s_code_tab_runs_as_printed(tmp_path):
    """Issue 16: the Code tab of a module loaded from code printed `workbench compare '(module from code)'`."""
    torch = pytest.importorskip("torch")
    from workbench.zoo.mnist_cnn import load_module

    app = Workbench(load_module(), torch.zeros(1, 1, 28, 28), eval_limit=64, auto_run=False)
    app._update_code()
    cmd = shlex.split(app.cli_code.value)
    assert cmd[2].endswith(".onnx") and Path(cmd[2]).is_file()
    namespace: dict = {}
    with pytest.warns(UserWarning, match="RANDOM"):  # no data of its own: the snippet says so and still runs
        exec(app.python_code.value, namespace)
    assert namespace["report"].samples == 64


def test_stop_ends_a_diagnosis_cleanly_and_the_next_run_completes(app):
    """Issue 16: a Stop button ends long work at its next step; the kernel, the widgets and the cache stay usable."""
    from workbench.core import cache

    def watch(text: str) -> None:  # press Stop as soon as the diagnosis reports its first step
        if "diagnosing" in text:
            app.stop()

    app._show_step = watch
    app.diagnose_button.click()
    app.wait(600)
    assert "stopped" in app.status.value and app.progress.bar_style == "warning"
    assert app.stop_button.disabled and not app._worker.is_alive()
    assert not list(cache.cache_root().rglob(".tmp-*")), "no half-written cache entry"
    del app._show_step
    app.diagnose_button.click()
    app.wait(600)
    assert "diagnosis done in" in app.status.value


def test_a_second_action_while_one_runs_is_refused_with_a_message(app):
    import threading

    release = threading.Event()
    app._background(release.wait)
    app.latency_button.click()
    assert "busy" in app.status.value
    release.set()
    app.wait(60)
    assert not app._worker.is_alive()


def test_progress_reports_the_step_the_count_and_time_left():
    from workbench.analysis.compare import compare
    from workbench.core.progress import Stopped, Watch, watching
    from workbench.model.defaults import evaluation_data
    from workbench.precision.recipe import Recipe
    from workbench.precision.transform import apply

    model = wb.load_model("mnist-cnn")
    transformed = apply(model, Recipe("fp16"), progress=False)
    lines: list[str] = []
    with watching(Watch(report=lines.append, every_s=0)):
        compare(transformed, evaluation_data(model).take(64), batch_size=16, framework=False, progress=False)
    assert lines[0] == "comparing 0/64 sample" and re.fullmatch(r"comparing \d+/64 sample, ~\d+ s left", lines[1])
    assert lines[-1].startswith("comparing 64/64 sample")
    stop = Watch(report=lines.append, every_s=0)
    stop.stop.set()
    with watching(stop), pytest.raises(Stopped):  # a KeyboardInterrupt: `except Exception` does not swallow it
        compare(transformed, evaluation_data(model).take(64), framework=False, progress=False)


def _run_cli(line: str) -> dict:
    cmd = shlex.split(line)
    r = subprocess.run([sys.executable, "-m", "workbench.app.cli", *cmd[1:]], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_the_users_own_data_reaches_the_code_tab_and_both_reproduce_the_app(tmp_path, capsys):
    """Issue 25: with calib_data/eval_data the CLI line ran on random data, and an .npz path was an internal error."""
    import numpy as np
    from workbench.model.defaults import calibration_data, evaluation_data

    model = wb.load_model("mnist-cnn")
    np.savez(tmp_path / "eval.npz", **evaluation_data(model).take(48).inputs)
    calib = {"input": calibration_data(model).take(32).inputs["input"] * 0.5}  # in memory, unlike the zoo's split
    app = Workbench(str(model.path), eval_data=str(tmp_path / "eval.npz"), calib_data=calib, eval_limit=48).wait()
    assert app.report is not None and app.report.samples == 48, app.status.value
    assert "eval.npz (48 samples)" in app.data_note.value and "RANDOM" not in app.data_note.value
    cmd = shlex.split(app.cli_code.value)
    assert cmd[cmd.index("--eval-data") + 1] == str(tmp_path / "eval.npz") and "--calib-data" in cmd
    assert "saved by the app" in app.python_code.value
    exec(app.python_code.value, {})
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed == f"{app.recipe().label}: {app.report.summary()}", "the script prints the app's status line"
    ours = app.report.outputs[0]["sqnr_db"]
    assert _run_cli(app.cli_code.value)["outputs"][0]["sqnr_db"] == pytest.approx(ours, abs=1e-6)
    app.eval_file.value = str(tmp_path / "missing.npz")
    assert "data file not found" in app.status.value and app.datasets["eval"] is not None


def test_random_data_follows_an_edited_profile_in_the_app_the_script_and_the_cli(capsys):
    model = wb.load_model("mnist-cnn")
    app = Workbench(str(model.path), eval_limit=32, auto_run=False)
    assert "RANDOM" in app.data_note.value, "a model without data warns in the app"
    app.profile_box.children[0].value = "1x1x28x28,4x1x28x28,16x1x28x28"
    app.run()
    assert app.report.samples == 32
    exec(app.python_code.value, {})
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"{app.recipe().label}: {app.report.summary()}"
    assert _run_cli(app.cli_code.value)["outputs"][0]["sqnr_db"] == pytest.approx(app.report.outputs[0]["sqnr_db"],
                                                                                 abs=1e-6)


def test_load_resets_every_result_of_the_last_model():
    from workbench.zoo.planted import digits, planted

    _, model = planted((1,))
    app = Workbench(model, calib_data=digits("calib"), eval_data=digits("eval")).wait()
    app.run_diagnosis()
    assert not app.apply_button.disabled and app.diagnosis is not None
    app.load("mnist-cnn")
    assert app.diagnosis is None and app.report is None and app.apply_button.disabled and app.report_button.disabled
    assert app.diagnosis_text.value == "" and not app.layer_figure.data and app.datasets == {"calib": None,
                                                                                             "eval": None}
    app.save_report()
    assert "run a diagnosis first" in app.status.value
    app.run()
    assert app.report.samples == 512 and app.report.outputs[0]["name"] == "logits", "mnist-cnn's own split"


def test_a_precision_click_while_busy_leaves_the_toggle_on_what_is_shown(app):
    import threading

    shown = app.precision.value
    release = threading.Event()
    app._background(release.wait)
    app.precision.value = "fp16"
    assert app.precision.value == shown and "busy" in app.status.value and f"stays {shown}" in app.status.value
    release.set()
    app.wait(60)
    assert app.code_setup().recipe.precision == shown


def test_profile_defaults_come_from_the_metadata_and_the_data_and_data_outside_it_is_named(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.1, (4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["images", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])],
                              "det", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, "h", "w"])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(key="imgsz", value="[320, 320]")
    onnx.save(model, tmp_path / "det.onnx")
    app = Workbench(str(tmp_path / "det.onnx"), auto_run=False)
    assert app.profile_box.children[0].value == "1x3x1x1,8x3x320x320,32x3x320x320", "imgsz sets opt and max"
    big = np.random.default_rng(1).random((4, 3, 400, 400), np.float32)
    app.set_data(evaluation={"images": big})
    assert app.profile_box.children[0].value == "1x3x1x1,8x3x400x400,32x3x400x400", "the data's size wins"
    app.profile_box.children[0].value = "1x3x1x1,8x3x320x320,32x3x320x320"
    message = app.profile_message.value
    assert "evaluation data" in message and "400" in message and "widen min/max" in message, message
    app.profile_box.children[0].value = "1x3x1x1"
    assert "the optimization profile" in app.profile_message.value and "--shapes" not in app.profile_message.value


def test_a_fixed_batch_model_gets_its_batch_and_other_batches_are_named_by_widget(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.1, (4, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "fixed",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "fixed.onnx")
    app = Workbench(str(tmp_path / "fixed.onnx"), eval_limit=16).wait()
    assert app.batches.value == "1", "the latency sweep defaults to the batch the model accepts"
    app.iterations.value = 5
    app.run_latency()
    assert len(app.batch_figure.data) >= 1 and "latency measured" in app.status.value, app.status.value
    app.batches.value = "1,8"
    app.run_latency()
    assert "batches: the model&#x27;s batch dimension is fixed to 1; enter 1" in app.status.value, app.status.value
    assert "--batch" not in app.status.value
    app.load("mnist-cnn")
    assert app.batches.value == "1,8"
