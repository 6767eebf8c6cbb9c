"""INT8 on CNNs beside the peers (issue 26): the workbench's diagnosis, NNCF's plain and accuracy-controlled
quantization and plain ONNX Runtime on the same FP32 model and the same calibration, evaluation and held-out
splits, every result scored by one plain ONNX Runtime scorer written here (not the workbench's): per-sample output
cosine against FP32 on the held-out split (mean and worst; CPU, one thread, graph optimizations off so Q/DQ is
simulated as TensorRT computes it), top-1 agreement with FP32, the share of INT8-eligible MACs whose
Conv/Gemm/MatMul does not read both data and weight through DequantizeLinear ("MACs out"), and TensorRT lint
(errors: the parser rejects it; warnings: e.g. NNCF's UINT8 quantizers, which TensorRT-RTX builds as INT8 ones).

NNCF runs in its own environment (`make peers`: .venv-peers with nncf 3.4.0, never a workbench dependency):
symmetric preset, per-tensor activations, per-channel weights; "-trt" rows are the same models with NNCF's uint8
activation quantizers turned into the int8 ones TensorRT accepts (benchmarks/_nncf_driver.py).

    python benchmarks/peers.py [--models mobilenet-v2,efficientnet-lite0] [--tools workbench,nncf,nncf-ac,ort]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WORKBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="workbench-peers-"))
os.environ.setdefault("WORKBENCH_RUN_CACHE", "0")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
from _table import markdown_table  # noqa: E402

PEERS_PYTHON = HERE.parent / ".venv-peers" / "bin" / "python"
TOOLS = ("workbench-int8", "workbench", "ort", "nncf", "nncf-trt", "nncf-ac", "nncf-ac-trt")


CLASSIFIERS = ("mobilenet-v2", "efficientnet-lite0")  # top-1 agreement means something only there


def splits(name: str):
    """The FP32 model and its calibration, evaluation and held-out splits (as int8_search.py uses them; MiniLM has
    no held-out split, so its 128 evaluation sentences are halved: the search sees the first 64)."""
    import workbench as wb

    if name == "mobilenet-v2":
        model = wb.load_model(name)
        zoo = model.zoo
        return model, zoo.calibration_data(), zoo.evaluation_data(), zoo.heldout_data()
    if name == "minilm":
        model = wb.load_model(name)
        evaluation = model.zoo.evaluation_data()
        half = len(evaluation) // 2
        heldout = dataclasses.replace(evaluation, inputs=evaluation.slice(half, len(evaluation)), labels=None)
        return model, model.zoo.calibration_data(), evaluation.take(half), heldout
    from workbench.zoo import corpus

    entry = corpus.get(name)
    model = wb.load_model(str(entry.path()))
    return model, *(entry.dataset(s, model.inputs) for s in corpus.SPLITS)


def session(path: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def outputs(path: str, data) -> list[np.ndarray]:
    """Per-sample outputs, flattened and joined, one sample at a time."""
    run = session(path)
    return [np.concatenate([np.asarray(o, np.float64).ravel() for o in run.run(None, data.slice(i, i + 1))])
            for i in range(len(data))]


def score(path: str, heldout, reference: list[np.ndarray], first_output: int) -> dict:
    """The independent scorer: held-out cosine mean/worst, top-1 agreement, MACs out of INT8, lint errors."""
    import onnx

    from workbench.analysis.cost import precision_cost
    from workbench.graph.cost import inferred_shapes, macs_per_sample
    from workbench.graph.lint import lint
    from workbench.graph.placement import claimed_precisions

    got = outputs(path, heldout)
    cosines = [float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30)) for a, b in zip(got, reference)]
    top1 = (np.mean([np.argmax(a[:first_output]) == np.argmax(b[:first_output]) for a, b in zip(got, reference)])
            if first_output else float("nan"))
    model = onnx.load(path)
    shapes = {i.name: (1, *heldout.inputs[i.name].shape[1:]) for i in model.graph.input if i.name in heldout.inputs}
    macs = macs_per_sample(model, inferred_shapes(model, shapes))
    claims = claimed_precisions(model)
    if not any(macs.values()):
        raise SystemExit(f"{path}: ONNX shape inference cannot read this model, so its MACs are unknown")
    cost = precision_cost(macs, claims, "Q/DQ layout")
    findings = lint(model).findings
    return {"held_cosine": round(float(np.mean(cosines)), 4), "held_worst": round(min(cosines), 4),
            "top1_agreement": round(float(top1), 3), "macs_out": f"{cost.share_of_macs_in_higher_precision:.1%}",
            "ops_out": f"{cost.nodes_in_higher_precision} of {len(claims)}",
            "lint": f"{sum(f.severity == 'error' for f in findings)} errors, "
                    f"{sum(f.severity == 'warning' for f in findings)} warnings"}


def workbench_models(model, calib, data, heldout, folder: Path, tools: set[str]) -> dict[str, tuple[str, float]]:
    import shutil

    import workbench as wb
    from workbench.analysis.diagnose import Target, diagnose

    out = {}
    if "workbench-int8" in tools:
        start = time.perf_counter()
        built = wb.apply(model, wb.Recipe("int8"), calib, progress=False)
        out["workbench-int8"] = (str(shutil.copy(built.path, folder / "workbench-int8.onnx")),
                                 time.perf_counter() - start)
    if "workbench" in tools:
        start = time.perf_counter()
        d = diagnose(model, wb.Recipe("int8"), calib, data, Target(cosine=0.99), heldout=heldout, progress=False,
                     task=None)
        built = wb.apply(model, d.recipe, calib, progress=False)
        out["workbench"] = (str(shutil.copy(built.path, folder / "workbench.onnx")), time.perf_counter() - start)
        print(f"  workbench: {d.explanation}", file=sys.stderr, flush=True)
    return out


def ort_model(fp32: str, calib, folder: Path) -> tuple[str, float]:
    """Plain ONNX Runtime static quantization, TensorRT-legal settings, no fallback search."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calib.slice(i, i + 1) for i in range(len(calib)))

        def get_next(self):
            return next(self.items, None)

    target = folder / "ort.onnx"
    start = time.perf_counter()
    quantize_static(fp32, str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
    return str(target), time.perf_counter() - start


def nncf_model(fp32: str, calib_npz: Path, eval_npz: Path, folder: Path, control: bool) -> tuple[str, float]:
    if not PEERS_PYTHON.exists():
        raise SystemExit(f"{PEERS_PYTHON} missing: `make peers` creates the peer environment")
    target = folder / ("nncf-ac.onnx" if control else "nncf.onnx")
    cmd = [str(PEERS_PYTHON), str(HERE / "_nncf_driver.py"), fp32, str(calib_npz), str(eval_npz), str(target)]
    proc = subprocess.run(cmd + (["--accuracy-control"] if control else []), capture_output=True, text=True,
                          check=False)
    if proc.returncode:
        raise SystemExit(f"NNCF driver failed: {proc.stderr.strip().splitlines()[-3:]}")
    return str(target), json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    import onnx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mobilenet-v2,efficientnet-lite0")
    parser.add_argument("--tools", default=",".join(TOOLS))
    args = parser.parse_args()
    tools = set(args.tools.split(","))
    rows = []
    for name in args.models.split(","):
        model, calib, data, heldout = splits(name)
        folder = Path(tempfile.mkdtemp(prefix=f"peers-{name}-"))
        fp32 = str(folder / "fp32.onnx")
        onnx.save(onnx.load(str(model.path)), fp32)  # external data inlined: the peers read one file
        npz = {split: folder / f"{split}.npz" for split in ("calib", "eval")}
        for split, dataset in (("calib", calib), ("eval", data)):
            np.savez(npz[split], **dataset.inputs)
        reference = outputs(fp32, heldout)
        first_output = (int(np.prod(session(fp32).run(None, heldout.slice(0, 1))[0].shape))
                        if name in CLASSIFIERS else 0)
        built = workbench_models(model, calib, data, heldout, folder, tools)
        if "ort" in tools:
            built["ort"] = ort_model(fp32, calib, folder)
        for tool, control in (("nncf", False), ("nncf-ac", True)):
            if tool in tools:
                built[tool] = nncf_model(fp32, npz["calib"], npz["eval"], folder, control)
                built[f"{tool}-trt"] = (built[tool][0][:-len(".onnx")] + "-trt.onnx", built[tool][1])
        for tool in [t for t in TOOLS if t in built]:
            path, seconds = built[tool]
            rows.append({"model": name, "tool": tool, **score(path, heldout, reference, first_output),
                         "seconds": round(seconds, 1)})
            print(rows[-1], file=sys.stderr, flush=True)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
