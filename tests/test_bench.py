"""Latency maths, sweeps, figures built from real reports, and the bench CLI."""
import json

import numpy as np
import pytest
from conftest import run_cli

import workbench as wb
from workbench.analysis.bench import pareto_front, summarize, sweep, tradeoff
from workbench.app import plots


def test_percentiles_match_numpy_on_known_samples():
    samples = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 7.0, 6.0, 9.0, 8.0]
    s = summarize(samples, batch=4)
    a = np.array(samples)
    assert s["min_ms"] == 1.0 and s["p50_ms"] == 5.5
    for p in (50, 90, 95, 99):
        assert s[f"p{p}_ms"] == pytest.approx(np.percentile(a, p))
    assert s["mean_ms"] == 5.5 and s["std_ms"] == pytest.approx(a.std(ddof=1))
    assert s["cv"] == pytest.approx(a.std(ddof=1) / 5.5)
    assert s["throughput"] == pytest.approx(4 * 1000 / 5.5)


def test_pareto_front():
    assert pareto_front(np.array([1.0, 2.0, 3.0, 2.5]), np.array([0.90, 0.95, 0.99, 0.94])) == [True, True, True, False]


@pytest.fixture(scope="module")
def latency(mnist, mnist_calib):
    return sweep(mnist, [wb.Recipe("fp32"), wb.Recipe("int8")], [1, 4], mnist_calib, iterations=20, warmup=3,
                 progress=False)


def test_sweep_returns_one_row_per_batch_and_recipe(latency):
    rows = latency.results
    assert list(zip(rows["recipe"], rows["batch"])) == [("fp32", 1), ("fp32", 4), ("int8 minmax", 1), ("int8 minmax", 4)]
    assert (rows["iterations"] == 20).all() and (rows["p99_ms"] >= rows["p50_ms"]).all()
    assert json.loads(rows["shapes"][1]) == {"input": [4, 1, 28, 28]}
    assert latency.context["label"] == "ONNX Runtime CPU, 1 thread" and latency.context["device"] == "CPU"
    assert len(latency.samples[("fp32", 4)]) == 20


def test_duration_mode_and_impossible_batch(mnist, mnist_calib):
    r = sweep(mnist, [wb.Recipe("fp32")], [2], iterations=None, duration_s=0.2, warmup_ms=50, progress=False)
    assert r.results["iterations"][0] > 20
    with pytest.raises(wb.WorkbenchError, match="positive"):
        sweep(mnist, [wb.Recipe("fp32")], [0], progress=False)


def test_figures_from_real_reports(latency, mnist, mnist_calib, mnist_eval):
    fig = plots.batch_figure(latency)
    assert [t.name for t in fig.data] == ["fp32", "fp32", "int8 minmax", "int8 minmax"]
    assert "ONNX Runtime CPU, 1 thread" in fig.layout.title.text
    dist = plots.latency_distribution(latency)
    assert len(dist.data) == 4 and "ONNX Runtime CPU" in dist.layout.title.text
    table = tradeoff(mnist, [wb.Recipe("fp32"), wb.Recipe("fp16"), wb.Recipe("int8")], mnist_calib,
                     mnist_eval.take(200), iterations=20, progress=False)
    assert set(table.columns) >= {"recipe", "p50_ms", "cosine", "top1", "pareto"} and table["pareto"].any()
    pareto = plots.pareto_figure(table)
    assert [t.name for t in pareto.data] == ["fp32", "fp16", "int8 minmax", "Pareto front"]
    assert len(pareto.data[-1].x) == int(table["pareto"].sum())
    assert [t.marker.color for t in pareto.data[:3]] == [plots.PRECISION_COLORS[p] for p in ("fp32", "fp16", "int8")]
    assert "ONNX Runtime CPU" in pareto.layout.title.text


def test_layer_figure_marks_divergence_and_fallback():
    from workbench.analysis.diagnose import diagnose
    from workbench.zoo.planted import digits, planted

    spec, model = planted((1,))
    d = diagnose(model, wb.Recipe("int8"), digits("calib"), digits("eval"), remedies=False, progress=False)
    fig = plots.diagnosis_figure(d)
    names = [t.name for t in fig.data]
    assert names[:3] == ["SQNR (dB)", "local SQNR (node alone, dB)", "cosine"] and "kept in FP32" in names
    assert list(fig.data[names.index("kept in FP32")].customdata) == spec.culprits()
    assert any("first divergence: block2.conv_out" in (a.text or "") for a in fig.layout.annotations)


def test_cli_bench(tmp_path):
    r = run_cli("bench", "mnist-cnn", "--precision", "fp32,fp16",
                        "--batch", "1,2", "--iterations", "10", "--json", str(tmp_path / "b.json"),
                        "--html", str(tmp_path / "b.html"))
    assert r.returncode == 0, r.stderr
    d = json.loads((tmp_path / "b.json").read_text())
    assert [(x["recipe"], x["batch"]) for x in d["results"]] == [("fp32", 1), ("fp32", 2), ("fp16", 1), ("fp16", 2)]
    assert {"p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput"} <= d["results"][0].keys()
    assert d["context"]["threads"] == 1 and d["context"]["backend"] == "onnxruntime-cpu"
    assert (tmp_path / "b.html").read_text().count("plotly") > 2
    bad = run_cli("bench", "mnist-cnn", "--batch", "one")
    assert bad.returncode == 2 and "--batch takes" in bad.stderr
