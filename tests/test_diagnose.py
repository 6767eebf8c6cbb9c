"""Diagnosis on models with planted collapses (real digit images), on a healthy model, and from the CLI."""
import json
import math

import numpy as np
import onnx
import pytest
from conftest import run_cli

import workbench as wb
from workbench.analysis.diagnose import Target, diagnose
from workbench.analysis.evaluate import top1_agreement
from workbench.zoo.planted import digits, planted


def budget(d):
    """The measured search's 2⌈log2 N⌉ + 4 cycles on the evaluation data, plus one per remedy tried (here: the FP16
    retry of the fallback); its ranking runs on the ranking subset are counted apart."""
    return 2 * math.ceil(math.log2(d.quantized_nodes)) + 4 + d.remedies_tried


def test_single_outlier_layer_is_named_first_and_fixed():
    spec, model = planted((1,))
    d = diagnose(model, wb.Recipe("int8"), digits("calib"), digits("eval"), remedies=("fp16",), progress=False)
    assert d.ranking[0].node == spec.culprits()[0]
    assert d.fallback == spec.culprits()
    assert d.before.cosine < 0.95 and d.after.cosine >= 0.99 and d.met
    assert d.evaluations <= budget(d)
    assert spec.culprits()[0] in d.explanation and "collapses" in d.explanation
    fp16 = d.remedies[-1]
    assert fp16.remedy.startswith("the same 1 node(s) in FP16 instead of FP32") and fp16.met and fp16.adopted
    assert d.recipe.fallback_precision == "fp16" and d.cost.higher_precision == "fp16"
    assert d.cost.compute_vs_all_int8 == pytest.approx(1 + d.cost.share_of_macs_in_higher_precision)


def test_collapse_spread_over_several_layers():
    spec, model = planted((0, 1, 2))
    d = diagnose(model, wb.Recipe("int8"), digits("calib"), digits("eval"), remedies=False, progress=False)
    assert set(d.fallback) == set(spec.culprits())
    assert d.before.cosine < 0.6 and d.after.cosine >= 0.99
    assert d.evaluations <= budget(d) == d.budget + d.remedies_tried
    assert len(d.cycle_seconds) == d.evaluations and all(t > 0 for t in d.cycle_seconds)
    assert d.to_dict()["cycle_budget"] == d.budget + d.remedies_tried
    assert d.to_dict()["cycle_seconds"] == d.cycle_seconds


def test_healthy_model_gets_an_empty_fallback(mnist, mnist_calib, mnist_eval):
    d = diagnose(mnist, wb.Recipe("int8"), mnist_calib, mnist_eval.take(512), progress=False)
    assert d.fallback == [] and d.met and d.evaluations == 1
    assert "healthy" in d.explanation


def test_task_metric_target():
    spec, model = planted((0, 1, 2))
    target = Target(metric=top1_agreement, metric_name="top1_agreement", max_drop=0.02)
    d = diagnose(model, wb.Recipe("int8"), digits("calib"), digits("eval"), target, progress=False)
    assert d.before.value("top1_agreement") < 0.5 and d.after.value("top1_agreement") >= 0.98
    assert set(d.fallback) <= set(spec.culprits()) and d.met


def _planted_files(tmp_path):
    spec, model = planted((1,))
    onnx.save(model.proto, tmp_path / "planted.onnx")
    np.savez(tmp_path / "calib.npz", **digits("calib").inputs)
    np.savez(tmp_path / "eval.npz", **digits("eval").inputs)
    return spec


def test_cli_diagnose_contract(tmp_path):
    spec = _planted_files(tmp_path)
    r = run_cli("diagnose", str(tmp_path / "planted.onnx"), "--calib-data", str(tmp_path / "calib.npz"),
                "--eval-data", str(tmp_path / "eval.npz"), "--json", str(tmp_path / "d.json"), subprocess=True)
    assert r.returncode == 0, r.stderr
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["initial_ranking"][0]["node"] == spec.culprits()[0]
    # an outlier channel read by the next conv is what equalization removes: no node leaves INT8
    assert d["fallback"] == [] and d["recipe"]["equalize"] and "--equalize" in d["recipe_cli_args"]
    assert d["after"]["cosine"] >= 0.99 > d["before"]["cosine"]
    assert isinstance(d["evaluations"], int) and d["quantized_nodes"] == 5
    assert {"node", "score"} <= d["ranking"][0].keys()


def test_cli_compare_contract(tmp_path):
    _planted_files(tmp_path)
    r = run_cli("compare", str(tmp_path / "planted.onnx"), "--calib-data", str(tmp_path / "calib.npz"),
                "--eval-data", str(tmp_path / "eval.npz"), "--exclude", "block2.conv")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["first_divergence"] is None and d["outputs"][0]["cosine"] > 0.99
    assert [l["tensor"] for l in d["layers"]][:3] == ["image", "block0.conv_out", "block0.out"]


def test_cli_unreachable_target_exits_1(tmp_path):
    _planted_files(tmp_path)
    r = run_cli("diagnose", str(tmp_path / "planted.onnx"), "--calib-data", str(tmp_path / "calib.npz"),
                "--eval-data", str(tmp_path / "eval.npz"), "--target-sqnr", "250")
    assert r.returncode == 1 and "no fallback" in r.stderr


def test_cli_without_data_warns_about_random_calibration(tmp_path):
    _planted_files(tmp_path)
    r = run_cli("compare", str(tmp_path / "planted.onnx"), subprocess=True)
    assert r.returncode == 0 and "RANDOM synthetic data" in r.stderr


def test_a_broken_output_never_meets_the_target():
    """PP-OCR's detector with its fallback in FP16 scored cosine 0.0 (non-finite outputs) while its per-sample
    lower bound, computed over the finite samples, passed: the point estimate must pass too."""
    from workbench.analysis.results import Scores

    target = Target(cosine=0.99)
    assert not target.met(Scores(0.0, 30.0, cosine_lower_bound=0.995), None)
    assert not target.met(Scores(float("nan"), 30.0), None)
    assert target.met(Scores(0.996, 30.0, cosine_lower_bound=0.993), None)


def test_every_search_cycle_goes_through_the_evaluator(monkeypatch):
    """One apply → build → run → score sequence (Evaluator) serves the diagnosis: its cycles are the evaluator's
    scores, and the FP32 reference is run once and then read from the cache."""
    from workbench.analysis import evaluate
    from workbench.zoo import planted as P

    calls, runs = [], []
    score, run = evaluate.Evaluator.score, evaluate.run
    monkeypatch.setattr(evaluate.Evaluator, "score", lambda self, *a, **k: calls.append(1) or score(self, *a, **k))
    monkeypatch.setattr(evaluate, "run", lambda engine, *a, **k: runs.append(engine) or run(engine, *a, **k))
    spec, model = P.planted((1,))
    data = P.digits("eval").take(200)  # data no other test scores: its reference is not cached yet
    d = diagnose(model, wb.Recipe("int8"), P.digits("calib"), data, remedies=False, progress=False,
                 deployment_check=False)
    assert len(calls) == d.evaluations + d.ranking_runs and d.evaluations == len(d.cycle_seconds)
    assert d.ranking_runs == 6, "the unchanged recipe and each of the 5 quantized nodes reverted alone"
    ran = len(runs)
    again = evaluate.Evaluator(model, P.digits("calib"), data)
    assert len(runs) == ran, "the FP32 reference was run once: the second evaluator reads it from the cache"
    assert again.score(d.recipe).cosine == pytest.approx(d.after.cosine, abs=1e-12)


def test_a_diagnosis_run_again_reads_every_run_from_the_cache(monkeypatch):
    """Every run's outputs are cached by the model's bytes, the data and the engine: the same diagnosis again (a
    notebook cell re-run, a workshop's pre-warmed solution) runs no engine and finds the same fix; with
    WORKBENCH_RUN_CACHE=0 (the timing benchmarks) every evaluation runs again (the FP32 references stay cached)."""
    from workbench.analysis import evaluate
    from workbench.zoo import planted as P

    runs = []
    run = evaluate.run
    monkeypatch.setattr(evaluate, "run", lambda engine, *a, **k: runs.append(engine) or run(engine, *a, **k))
    spec, model = P.planted((2,))
    data = P.digits("eval").take(150)  # data no other test scores: nothing of it is cached yet

    def once():
        return diagnose(model, wb.Recipe("int8"), P.digits("calib"), data, remedies=False, progress=False,
                        deployment_check=False)

    first = once()
    computed = len(runs)
    assert computed > first.evaluations + first.ranking_runs > 2  # and the FP32 references
    second = once()
    assert len(runs) == computed, "no engine ran the second time"
    assert second.fallback == first.fallback and second.after.to_dict() == {**first.after.to_dict(),
                                                                            "seconds": second.after.seconds}
    monkeypatch.setenv(evaluate.RUN_CACHE_ENV, "0")
    once()
    assert len(runs) - computed == first.evaluations + first.ranking_runs, "every evaluation ran again"


def test_diagnosis_results_are_typed_with_one_json_form():
    """Scores, ranking rows, trials and remedies are dataclasses; the diagnosis' JSON is built from their to_dict."""
    from workbench.analysis.results import RankedNode, RemedyStep, Scores, Trial
    from workbench.zoo import planted as P

    spec, model = P.planted((1,))
    d = diagnose(model, wb.Recipe("int8"), P.digits("calib"), P.digits("eval"), remedies=False, progress=False)
    assert isinstance(d.before, Scores) and isinstance(d.after, Scores) and isinstance(d.ranking[0], RankedNode)
    assert d.trials and all(isinstance(t, Trial) for t in d.trials)
    assert all(isinstance(r, RemedyStep) for r in d.remedies) and d.remedies[-1].search
    js = json.loads(d.to_json())
    assert js["after"] == d.after.to_dict() and js["ranking"][0] == d.ranking[0].to_dict()
    assert js["trials"][-1]["fallback"] == d.trials[-1].fallback and js["remedies"][-1]["search"] is True
    assert {"cosine", "sqnr_db", "cosine_lower_bound", "seconds"} <= set(js["after"])


def test_cli_search_choice(tmp_path):
    """`--search local` is the bisection over the local ranking (no ranking runs); the default measures each node
    reverted alone and says so in the JSON and the ranking."""
    _planted_files(tmp_path)
    common = [str(tmp_path / "planted.onnx"), "--calib-data", str(tmp_path / "calib.npz"), "--eval-data",
              str(tmp_path / "eval.npz"), "--no-remedies"]
    r = run_cli("diagnose", *common, "--search", "local", "--json", str(tmp_path / "local.json"))
    assert r.returncode == 0, r.stderr
    local = json.loads((tmp_path / "local.json").read_text())
    r = run_cli("diagnose", *common, "--json", str(tmp_path / "measured.json"))
    assert r.returncode == 0, r.stderr
    measured = json.loads((tmp_path / "measured.json").read_text())
    assert local["ranking_runs"] == 0 and "gain" not in local["ranking"][0]
    assert measured["ranking_runs"] == measured["quantized_nodes"] + 1 and measured["ranking"][0]["gain"] > 0
    assert measured["fallback"] == local["fallback"] == ["block2.conv"]
