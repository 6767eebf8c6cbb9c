"""Issue 17: sweeps and diagnosis evaluations on Ray give the answers the in-process executor gives; a killed
worker is retried; a stopped sweep resumes where it stopped; no half-written or duplicate cache entry."""
import os
import signal
import threading
import time

import pytest

import workbench as wb
from workbench.analysis import evaluate
from workbench.analysis.bench import sweep
from workbench.analysis.diagnose import diagnose
from workbench.analysis.evaluate import recipe_table
from workbench.core import cache
from workbench.core.executor import Executor, get_executor
from workbench.core.progress import Stopped, Watch, watching
from workbench.zoo.planted import digits, planted

pytestmark = pytest.mark.slow
RECIPES = [wb.Recipe("fp32"), wb.Recipe("fp16"), wb.Recipe("int8"), wb.Recipe("int8", calibration="entropy")]


@pytest.fixture(scope="module")
def ray_executor():
    pytest.importorskip("ray")
    executor = get_executor("ray", workers=2)  # a local cluster of 2 worker processes
    yield executor
    executor.close()


@pytest.fixture(scope="module")
def mnist_data(mnist):
    return mnist.zoo.calibration_data(), mnist.zoo.evaluation_data().take(256)


def _no_timing(value):
    """A result without its wall-clock fields (the one thing that may differ between executors)."""
    if isinstance(value, dict):
        return {k: _no_timing(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_no_timing(v) for v in value]
    return value


def _leftovers() -> list:
    return list(cache.cache_root().rglob(".tmp-*")) + list((cache.cache_root() / "journal").rglob("*.json"))


def test_a_recipe_table_is_identical_on_ray(ray_executor, mnist, mnist_data):
    calib, data = mnist_data
    local = recipe_table(mnist, RECIPES, calib, data, progress=False)
    remote = recipe_table(mnist, RECIPES, calib, data, progress=False, executor=ray_executor)
    assert ray_executor.workers == 2 and "Ray (local cluster, 2 CPUs)" == ray_executor.describe()
    assert remote.equals(local), (local, remote)  # bit-identical scores
    assert local["mean_cosine"].iloc[2] < 1.0 and not _leftovers()


def test_a_diagnosis_is_identical_on_ray(ray_executor):
    """The search reads probes submitted ahead in its own order: the same fallback, scores, trials and ranking."""
    spec, model = planted((0, 1, 2))
    local = diagnose(model, wb.Recipe("int8"), digits("calib"), digits("eval"), remedies=False, progress=False)
    remote = diagnose(model, wb.Recipe("int8"), digits("calib"), digits("eval"), remedies=False, progress=False,
                      executor=ray_executor)
    assert set(local.fallback) == set(spec.culprits()) and len(local.trials) >= 3
    assert _no_timing(remote.to_dict()) == _no_timing(local.to_dict())
    assert remote.evaluations == local.evaluations, "speculative probes the search did not read are not counted"


def test_a_latency_sweep_runs_as_ray_tasks(ray_executor, mnist, mnist_data):
    calib, data = mnist_data
    report = sweep(mnist, RECIPES[::2], [1, 4], calib, data, iterations=10, warmup=2, progress=False,
                   executor=ray_executor)
    assert list(zip(report.results["recipe"], report.results["batch"])) == [
        ("fp32", 1), ("fp32", 4), ("int8 minmax", 1), ("int8 minmax", 4)]
    assert (report.results["iterations"] == 10).all() and report.label == "ONNX Runtime CPU, 1 thread"
    assert len(report.samples[("int8 minmax", 4)]) == 10 and not _leftovers()


def test_a_killed_worker_is_retried_and_nothing_is_lost(ray_executor, mnist, mnist_data):
    """SIGKILL a Ray worker while it evaluates a recipe: Ray reruns the task, the table is complete and equal to
    the in-process one, and the cache holds no half-written or duplicate entry."""
    psutil = pytest.importorskip("psutil")
    calib, data = mnist_data
    recipes = RECIPES + [wb.Recipe("int8", calibration="percentile", percentile=p) for p in (99.9, 99.99)]
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for proc in psutil.process_iter(["cmdline"]):
                if (proc.info["cmdline"] or [""])[0].startswith("ray::evaluate_recipe"):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc.pid)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one)
    killer.start()
    remote = recipe_table(mnist, recipes, calib, data, progress=False, executor=ray_executor)
    killer.join()
    assert killed, "no worker was caught running a task"
    local = recipe_table(mnist, recipes, calib, data, progress=False)
    assert remote.equals(local) and len(remote) == len(recipes)
    assert not _leftovers()
    models = list((cache.cache_root() / "models").rglob("*.onnx"))
    assert len(models) == len({p.name for p in models}), "one file per content digest"


def test_a_stopped_sweep_resumes_with_the_cells_it_had_not_finished(monkeypatch, mnist, mnist_data):
    calib, data = mnist_data
    calls: list = []
    real = evaluate.evaluate_recipe
    monkeypatch.setattr(evaluate, "evaluate_recipe", lambda *a: calls.append(a[-1]) or real(*a))
    watch = Watch(report=lambda text: watch.stop.set() if text.startswith("recipes 1/") else None, every_s=0)
    with watching(watch), pytest.raises(Stopped):  # Stop (or Ctrl-C) after the first recipe finished
        recipe_table(mnist, RECIPES, calib, data, progress=False, executor=Executor())
    assert calls == RECIPES[:1]
    calls.clear()
    table = recipe_table(mnist, RECIPES, calib, data, progress=False)
    assert calls == RECIPES[1:], "the finished recipe came from the journal"
    assert table.equals(recipe_table(mnist, RECIPES, calib, data, progress=False))
    assert not (cache.cache_root() / "journal" / "recipe-table").exists() or not any(
        (cache.cache_root() / "journal" / "recipe-table").iterdir()), "a completed table clears its journal"
    assert not _leftovers()


def test_a_model_with_external_weights_travels_whole(tmp_path, monkeypatch, mnist):
    """EfficientNet-Lite0 in the corpus keeps its weights in a side file: a worker gets them inline."""
    import onnx

    from workbench.model.loading import from_onnx, materialize, portable

    path = tmp_path / "ext.onnx"
    copy = onnx.ModelProto()
    copy.CopyFrom(mnist.proto)  # onnx.save moves the weights out of the proto it is given
    onnx.save(copy, str(path), save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    handle = from_onnx(path)
    meta, data = portable(handle)
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "worker-cache"))  # another machine's cache
    there = materialize(meta, data)
    assert there.sha256 == handle.sha256 and there.path != handle.path
    out = wb.get_backend().build(there.path).infer(mnist.zoo.evaluation_data().feed(0, 2))
    assert next(iter(out.values())).shape[0] == 2


def test_the_cli_runs_a_sweep_on_the_ray_cluster(ray_executor, tmp_path):
    """`workbench bench --executor ray` joins the running cluster (as with RAY_ADDRESS) and leaves it running."""
    import json

    from workbench.app import cli

    out = tmp_path / "bench.json"
    assert cli.main(["bench", "mnist-cnn", "--precision", "fp32,int8", "--batch", "1,4", "--iterations", "5",
                     "--executor", "ray", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [(r["recipe"], r["batch"]) for r in rows] == [("fp32", 1), ("fp32", 4), ("int8 minmax", 1),
                                                          ("int8 minmax", 4)]
    import ray

    assert ray.is_initialized(), "a cluster the CLI did not start is not shut down by it"


def test_an_unreachable_ray_address_is_one_line_in_seconds(monkeypatch, capsys):
    """ray.init retries an unreachable head for minutes and then exits the process; the CLI says so at once."""
    pytest.importorskip("ray")
    import ray

    from workbench.app import cli

    if ray.is_initialized():
        ray.shutdown()
    start = time.time()
    assert cli.main(["bench", "mnist-cnn", "--precision", "fp32", "--executor", "ray",
                     "--ray-address", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert time.time() - start < 30 and err.startswith("workbench: error: cannot reach the Ray cluster at 127.0.0.1:1")
    assert len(err.splitlines()) == 1
