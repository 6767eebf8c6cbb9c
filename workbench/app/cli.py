"""`workbench` command line: JSON on stdout; exit 0 ok, 1 a check failed, 2 bad input (one line on stderr)."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from workbench.analysis.search import DEPLOY_TARGETS, SEARCHES
from workbench.core.errors import CheckFailed, WorkbenchError, one_line
from workbench.precision.recipe import FIELDS, PRECISIONS, FieldSpec

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        raise WorkbenchError(f"{self.prog}: {message}")


def _add_recipe_args(p: argparse.ArgumentParser) -> None:
    """The model and one flag per Recipe field, from the field's spec; defaults stay with the Recipe (a flag not
    given leaves None), so the CLI, the app and Python cannot disagree on them."""
    p.add_argument("model", metavar="MODEL", help="zoo name (e.g. mnist-cnn) or path to an .onnx file")
    group = p.add_argument_group("recipe")
    for spec in FIELDS:
        group.add_argument(spec.flag, dest=spec.name, **_flag_options(spec))
    group.set_defaults(precision="int8")
    p.add_argument("--calib-data", metavar="FILE.npz", help="calibration samples (keys = input names, axis 0)")
    p.add_argument("--shapes", nargs="+", action="extend", default=[], metavar="NAME:MIN,OPT,MAX",
                   help="optimization profile per input, e.g. input:1x1x28x28,8x1x28x28,32x1x28x28 "
                        "(default: 1/8/32 for a dynamic batch, 1/64/256 for other dynamic dims)")
    _add_batch_axis(p)


def _flag_options(spec: FieldSpec) -> dict[str, Any]:
    """argparse options for one Recipe field."""
    where = "" if spec.precisions == PRECISIONS else f"[{'/'.join(spec.precisions)}] "
    if isinstance(spec.default, bool):
        return {"action": "store_const", "const": spec.switch_value, "help": where + (spec.flag_help or spec.help)}
    if isinstance(spec.default, tuple):
        return {"nargs": "+", "action": "extend", "metavar": spec.metavar, "help": where + spec.help}
    if spec.name == "precision":  # bench takes a comma-separated list of them
        return {"help": f"one of {', '.join(spec.choices)} (default int8; bench takes a comma-separated list)"}
    choices = f"{', '.join(map(str, spec.choices))}; " if spec.choices else ""
    return {"type": type(spec.default), "metavar": spec.metavar,
            "help": f"{where}{spec.help} ({choices}default {spec.default})"}


def _add_batch_axis(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-axis", nargs="+", action="extend", default=[], metavar="NAME=AXIS",
                   help="an input whose samples are not on axis 0 (e.g. state=1), or NAME=none for one shared by "
                        "every sample; an .npz key without a sample axis (e.g. a scalar) is shared automatically")


def _batch_axes(args: argparse.Namespace) -> dict:
    from workbench.model.data import parse_batch_axes

    return parse_batch_axes(args.batch_axis)


def _recipe(args: argparse.Namespace, precision: str | None = None):
    """The recipe the flags describe (`precision` overrides --precision: bench takes a list of them); flags that do
    not apply to the precision are dropped (Recipe.normalized)."""
    from workbench.precision.recipe import Recipe

    given = {s.name: tuple(v) if isinstance(v, list) else v for s in FIELDS for v in [getattr(args, s.name)]
             if v is not None}
    recipe = Recipe(**{**given, "precision": precision or args.precision})
    unused = [s.flag for s in FIELDS if s.name in given and s.name != "precision" and not s.applies(recipe)
              and given[s.name] != s.default]
    if unused and precision is None:  # bench's list of precisions: a flag may apply to only some of them
        warnings.warn(f"{', '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply to {recipe.precision}: "
                      "ignored")
    return recipe.normalized()


_STDOUT = sys.stdout  # the JSON channel; while a command runs, anything else printed goes to stderr


def _write_json(obj: Any, path: str | None) -> None:
    text = json.dumps(obj, indent=2, default=str)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    print(text, file=_STDOUT, flush=True)


def cmd_build(args: argparse.Namespace) -> int:
    from workbench.app.session import resolve
    from workbench.model.profiles import build_profile
    from workbench.precision.transform import apply
    from workbench.runtime.trtexec import commands

    inputs = resolve(args.model, _recipe(args), args.calib_data, with_eval=False, batch_axes=_batch_axes(args),
                     shapes=args.shapes)
    transformed = apply(inputs.model, inputs.recipe, inputs.calib)
    out = Path(args.output)
    target = out / "model.onnx"
    if target.exists() and target.resolve() == Path(inputs.model.path).resolve():
        raise WorkbenchError(f"refusing to overwrite the input model {target}: choose another -o directory")
    profile = build_profile(inputs.model.inputs, args.shapes, inputs.batch_axes)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(transformed.path, target)
    manifest = transformed.manifest()
    manifest["output"] = str(target)
    manifest["profile"] = profile.to_dict()
    manifest["trtexec"] = {"tensorrt_11": commands("model.onnx", profile, 11),
                           "tensorrt_10": commands("model.onnx", profile, 10)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    _write_json({"output": str(target), "manifest": str(out / "manifest.json"), "recipe": inputs.recipe.to_dict(),
                 "quantized_nodes": len(transformed.quantized_nodes), "excluded_nodes": transformed.excluded_nodes,
                 "kept_in_fp32": transformed.kept_in_fp32, "specialized": transformed.specialized,
                 "profile": profile.to_dict(), "trtexec": manifest["trtexec"]["tensorrt_11"],
                 "seconds": round(transformed.seconds, 3)}, None)
    return EXIT_OK


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eval-data", metavar="FILE.npz", help="evaluation samples (default: the zoo model's split)")
    p.add_argument("--limit", type=int, help="use only the first N evaluation samples")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    p.add_argument("--backend", default="onnxruntime-cpu", help="onnxruntime-cpu, tensorrt or tensorrt-rtx")
    p.add_argument("--json", metavar="OUT", help="also write the JSON result to this file")
    p.add_argument("--task", default="auto", metavar="TASK",
                   help="how a user of the model judges it, against FP32's own results: auto (chosen from the output "
                        "layout where it is unambiguous), none, classification, detection, ctc, segmentation[:THRESHOLD], "
                        "embedding, or a metric of your own as MODULE:FUNCTION or FILE.py:FUNCTION, called as "
                        "fn(outputs, reference, data) and returning a float or a dict of floats (higher is better)")


def _backend(args: argparse.Namespace, model, **cpu_options: Any):
    """The chosen backend with the profile from --shapes (TensorRT builds it; ONNX Runtime reports violations)."""
    from workbench.model.profiles import build_profile
    from workbench.runtime import get_backend

    profile = build_profile(model.inputs, args.shapes, _batch_axes(args))
    if args.backend == "onnxruntime-cpu":
        return get_backend(args.backend, threads=args.threads, profile=profile, **cpu_options)
    return get_backend(args.backend, profile=profile)


def cmd_compare(args: argparse.Namespace) -> int:
    from workbench.analysis.compare import compare
    from workbench.app.session import resolve
    from workbench.precision.transform import apply

    inputs = resolve(args.model, _recipe(args), args.calib_data, args.eval_data, args.limit,
                     batch_axes=_batch_axes(args), shapes=args.shapes)
    transformed = apply(inputs.model, inputs.recipe, inputs.calib)
    report = compare(transformed, inputs.eval, _backend(args, inputs.model), batch_size=args.batch_size,
                     threshold_db=args.threshold, framework=not args.no_framework, save_dir=args.save_outputs,
                     task=args.task)
    _write_json(report.to_dict(), args.json)
    return EXIT_OK


def _add_executor_args(p: argparse.ArgumentParser) -> None:
    from workbench.core.executor import EXECUTORS

    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="where evaluations run: this process (default) or Ray tasks, in parallel")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="the Ray cluster to use (default $RAY_ADDRESS, else a local cluster started for this run)")
    p.add_argument("--workers", type=int, help="CPUs of the local Ray cluster (default: all)")


def _executor(args: argparse.Namespace):
    from workbench.core.executor import get_executor

    return get_executor(args.executor, args.ray_address, args.workers)


def cmd_diagnose(args: argparse.Namespace) -> int:
    from workbench.analysis.diagnose import Target, diagnose
    from workbench.app.session import resolve

    if args.target_cosine is not None and args.target_sqnr is not None:
        raise WorkbenchError("give one of --target-cosine and --target-sqnr")
    if args.target_task is not None and not 0.0 <= args.target_task <= 1.0:
        raise WorkbenchError(f"--target-task is a share between 0 and 1 (e.g. 0.98), got {args.target_task}")
    if args.target_task is not None and args.task == "none":
        raise WorkbenchError("--target-task needs a task: drop --task none or name one with --task")
    target = Target(cosine=args.target_cosine, sqnr_db=args.target_sqnr,
                    confidence=None if args.confidence == 0 else args.confidence, floor_cosine=args.floor_cosine,
                    floor_sqnr_db=args.floor_sqnr)
    inputs = resolve(args.model, _recipe(args), args.calib_data, args.eval_data, args.limit,
                     batch_axes=_batch_axes(args), shapes=args.shapes)
    with _executor(args) as executor:
        result = diagnose(inputs.model, inputs.recipe, inputs.calib, inputs.eval, target,
                          _backend(args, inputs.model), batch_size=args.batch_size, remedies=not args.no_remedies,
                          heldout=args.heldout_data, batch_axes=inputs.batch_axes,
                          deployment_check=not args.no_deployment_check, executor=executor, task=args.task,
                          task_min=args.target_task, max_drop=args.max_drop, search=args.search,
                          deploy=args.deploy)
    out = result.to_dict()
    out["reproduce"] = reproduce_command(args, result.recipe)
    if args.html:
        from workbench.app.report import write_diagnosis_html

        out["html"] = str(write_diagnosis_html(args.html, result, inputs.model.name))
    _write_json(out, args.json)
    print(result.explanation, file=sys.stderr)
    for warning in result.warnings:
        print(f"workbench: warning: {warning}", file=sys.stderr)
    if not result.met:
        held = result.heldout
        if held is not None and not held.met and not result.misses:
            raise CheckFailed("the recipe meets the target on the evaluation data but misses it on the held-out "
                              "data: " + "; ".join(held.misses))
        raise CheckFailed(f"no fallback within {result.budget} runs reaches the target: " + "; ".join(result.misses))
    return EXIT_OK


def reproduce_command(args: argparse.Namespace, recipe) -> str:
    """The `workbench build` line that writes the diagnosed model: same model, data, profile and batch axes."""
    import shlex

    line = ["workbench", "build", args.model, *recipe.to_cli_args()]
    if args.calib_data:
        line += ["--calib-data", args.calib_data]
    if args.shapes:
        line += ["--shapes", *args.shapes]
    if args.batch_axis:
        line += ["--batch-axis", *args.batch_axis]
    return shlex.join(line + ["-o", "fixed"])


def cmd_bench(args: argparse.Namespace) -> int:
    from workbench.analysis.bench import parse_batches, sweep
    from workbench.model.defaults import calibration_data, evaluation_data
    from workbench.zoo import load_model

    model = load_model(args.model)
    recipes = [_recipe(args, p.strip()) for p in args.precision.split(",")]
    axes = _batch_axes(args)
    calib = calibration_data(model, args.calib_data, axes, args.shapes) if any(
        r.precision != "fp32" for r in recipes) else None
    data = evaluation_data(model, args.eval_data, batch_axes=axes, shapes=args.shapes)
    with _executor(args) as executor:
        report = sweep(model, recipes, parse_batches(args.batch), calib, data,
                       _backend(args, model, optimization=args.optimization), iterations=args.iterations,
                       warmup=args.warmup, duration_s=args.duration, warmup_ms=args.warmup_ms, executor=executor)
    if args.html:
        from workbench.app import plots

        _write_html([plots.batch_figure(report), plots.latency_distribution(report)], args.html)
    _write_json(report.to_dict(), args.json)
    return EXIT_OK


def _write_html(figures: list, path: str) -> None:
    """Several plotly figures in one standalone HTML file (plotly.js embedded once)."""
    parts = [f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figures)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("<html><head><meta charset='utf-8'></head><body>" + "".join(parts) + "</body></html>")


def cmd_trtexec(args: argparse.Namespace) -> int:
    from workbench.model.profiles import build_profile
    from workbench.runtime.trtexec import commands
    from workbench.zoo import load_model

    model = load_model(args.model)
    profile = build_profile(model.inputs, args.shapes, _batch_axes(args))
    _write_json(commands(str(model.path), profile, args.tensorrt_major), None)
    return EXIT_OK


def cmd_lint(args: argparse.Namespace) -> int:
    from workbench.graph.lint import lint
    from workbench.model.loading import read_onnx

    report = lint(read_onnx(args.model), name=args.model, target=args.target)
    _write_json(report.to_dict(), args.json)
    if not report.clean:
        raise CheckFailed(f"{len(report.findings)} finding(s) for {args.target} in {args.model}")
    return EXIT_OK


def cmd_engine(args: argparse.Namespace) -> int:
    from workbench.analysis.engine import engine_view

    result = engine_view(args.model, layer_info=args.layer_info, against=args.against,
                         against_layer_info=args.against_layer_info, runtime=args.runtime, shapes=args.shapes)
    _write_json(result.to_dict(), args.json)
    if args.check_claims and not result.claims.agrees:
        raise CheckFailed(f"{len(result.claims.disagreements)} compute node(s) run in another precision than "
                          f"{args.model}'s Q/DQ layout claims")
    return EXIT_OK


def cmd_zoo(args: argparse.Namespace) -> int:
    from workbench import zoo

    _write_json([{"name": n, "description": zoo.entry(n).description} for n in zoo.names()], None)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="workbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_build(sub)
    _add_compare(sub)
    _add_diagnose(sub)
    _add_bench(sub)
    _add_engine(sub)
    _add_trtexec(sub)
    _add_lint(sub)
    _add_zoo(sub)
    return parser


def _add_build(sub: Any) -> None:
    p = sub.add_parser("build", help="transform a model to a precision and write model.onnx + manifest.json")
    _add_recipe_args(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.set_defaults(func=cmd_build)


def _add_compare(sub: Any) -> None:
    p = sub.add_parser("compare", help="per-layer comparison of a precision against the FP32 reference")
    _add_recipe_args(p)
    _add_eval_args(p)
    p.add_argument("--threshold", type=float, default=20.0, help="first divergence: SQNR below this (dB)")
    p.add_argument("--save-outputs", metavar="DIR", help="also save Polygraphy inputs.json and outputs.json "
                   "(RunResults) for `polygraphy run --load-inputs/--load-outputs`")
    p.add_argument("--no-framework", action="store_true", help="skip the PyTorch-vs-ONNX export check")
    p.set_defaults(func=cmd_compare)


def _add_diagnose(sub: Any) -> None:
    p = sub.add_parser("diagnose", help="find where INT8 collapses and a minimal higher-precision fallback")
    _add_recipe_args(p)
    _add_eval_args(p)
    p.add_argument("--target-cosine", type=float,
                   help="mean per-sample output cosine to reach, on every output and channel group (default 0.99)")
    p.add_argument("--target-sqnr", type=float, help="mean per-sample output SQNR to reach, in dB")
    p.add_argument("--floor-cosine", type=float,
                   help="every sample's output cosine must reach this too (default 1 - 10 x (1 - target): 0.9 for "
                        "0.99)")
    p.add_argument("--floor-sqnr", type=float, help="every sample's SQNR must reach this (default target - 10 dB)")
    p.add_argument("--target-task", type=float, metavar="SHARE",
                   help="the task metric to reach vs FP32 (e.g. 0.98: box F1 for a detector, top-1 agreement for a "
                        "classifier, 1 - CER for CTC text; default: the task's own floor, 0.95-0.98)")
    p.add_argument("--max-drop", type=float, default=0.01,
                   help="with --task MODULE:FUNCTION, how far the metric may fall below FP32's (default 0.01)")
    p.add_argument("--confidence", type=float, default=0.9,
                   help="an output-cosine target must hold for this bootstrap lower bound over the evaluation "
                        "samples (default 0.9; 0 = the point estimate alone)")
    p.add_argument("--heldout-data", metavar="FILE.npz",
                   help="score the final recipe on these samples too (plain ONNX Runtime, full optimizations)")
    p.add_argument("--no-deployment-check", action="store_true",
                   help="score simulated Q/DQ only; by default the recipe is also run as ONNX Runtime CPU deploys it "
                        "(fused integer kernels), 7-bit weights are tried where those lose accuracy, and the "
                        "deployed score is reported")
    p.add_argument("--html", metavar="OUT.html",
                   help="also write the diagnosis as one self-contained HTML file (ranking, causes, remedies, plots)")
    p.add_argument("--no-remedies", action="store_true",
                   help="skip the cheap fixes (BatchNorm folding, placement, calibration overrides): fallback only")
    p.add_argument("--search", choices=SEARCHES, default="measured",
                   help="measured (default): each candidate reverted alone and its effect on the target measured on "
                        "the ranking samples, then greedy revert and put-back; local: bisection over the local "
                        "sensitivity ranking (fewer runs, larger fallbacks on depthwise CNNs)")
    p.add_argument("--deploy", choices=DEPLOY_TARGETS, default="tensorrt",
                   help="where the recipe will run: tensorrt (default; judged on simulated Q/DQ, TensorRT's "
                        "arithmetic) or onnxruntime-cpu (also searched as this CPU's integer kernels run it)")
    _add_executor_args(p)
    p.set_defaults(func=cmd_diagnose)


def _add_bench(sub: Any) -> None:
    p = sub.add_parser("bench", help="latency percentiles and throughput, swept over batch sizes and precisions")
    _add_recipe_args(p)
    p.set_defaults(precision="fp32,int8")
    p.add_argument("--eval-data", metavar="FILE.npz", help="samples to time with (default: the zoo model's split)")
    p.add_argument("--batch", default="1", help="comma-separated batch sizes, e.g. 1,8 (default 1)")
    p.add_argument("--iterations", type=int, default=100, help="timed iterations per configuration (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="warm-up iterations (default 10)")
    p.add_argument("--warmup-ms", type=float, help="warm up for this many milliseconds instead of --warmup")
    p.add_argument("--duration", type=float, help="time for this many seconds instead of --iterations")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    p.add_argument("--backend", default="onnxruntime-cpu", help="onnxruntime-cpu, tensorrt or tensorrt-rtx")
    p.add_argument("--optimization", default="all", help="ONNX Runtime graph optimization for timing (default all)")
    p.add_argument("--json", metavar="OUT", help="also write the JSON result to this file")
    p.add_argument("--html", metavar="OUT", help="write the latency plots as standalone HTML")
    _add_executor_args(p)
    p.set_defaults(func=cmd_bench)


def _add_trtexec(sub: Any) -> None:
    p = sub.add_parser("trtexec", help="print the trtexec command lines that build and time this ONNX on a GPU")
    p.add_argument("model", metavar="MODEL.onnx", help="a transformed model (e.g. out/model.onnx from build)")
    p.add_argument("--shapes", nargs="+", action="extend", default=[], metavar="NAME:MIN,OPT,MAX")
    p.add_argument("--tensorrt-major", type=int, default=11, choices=(10, 11))
    _add_batch_axis(p)
    p.set_defaults(func=cmd_trtexec)


def _add_lint(sub: Any) -> None:
    p = sub.add_parser("lint", help="check an ONNX model against TensorRT's Q/DQ rules (exit 1 with findings)")
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--target", default="tensorrt", help="what to check against (tensorrt)")
    p.add_argument("--json", metavar="OUT", help="also write the JSON result to this file")
    p.set_defaults(func=cmd_lint)


def _add_engine(sub: Any) -> None:
    p = sub.add_parser("engine", help="what TensorRT built: engine layers, the ONNX nodes fused into each, their "
                                      "precision, checked against the recipe's claims")
    p.add_argument("model", metavar="MODEL.onnx", help="the ONNX the engine is built from (e.g. out/model.onnx)")
    p.add_argument("--layer-info", metavar="FILE", help="read the engine's layers from this JSON instead of "
                   "building (trtexec --profilingVerbosity=detailed --exportLayerInfo=FILE on your GPU machine)")
    p.add_argument("--against", metavar="OTHER.onnx", help="a second recipe's model: diff the two engines")
    p.add_argument("--against-layer-info", metavar="FILE", help="the second engine's layer info JSON")
    p.add_argument("--runtime", default="auto", choices=("auto", "tensorrt", "tensorrt-rtx"),
                   help="which TensorRT builds the engine (auto: TensorRT, else TensorRT-RTX)")
    p.add_argument("--shapes", nargs="+", action="extend", default=[], metavar="NAME:MIN,OPT,MAX")
    p.add_argument("--check-claims", action="store_true",
                   help="exit 1 when a compute node runs in another precision than the Q/DQ layout claims")
    p.add_argument("--json", metavar="OUT", help="also write the JSON result to this file")
    p.set_defaults(func=cmd_engine)


def _add_zoo(sub: Any) -> None:
    p = sub.add_parser("zoo", help="list the bundled models")
    p.set_defaults(func=cmd_zoo)


def main(argv: Sequence[str] | None = None) -> int:
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"workbench: warning: {msg}\n"
    global _STDOUT
    _STDOUT = sys.stdout
    try:
        args = build_parser().parse_args(argv)
        with contextlib.redirect_stdout(sys.stderr):  # libraries' prints must not break the JSON on stdout
            return args.func(args)
    except CheckFailed as exc:
        print(f"workbench: check failed: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    except WorkbenchError as exc:
        print(f"workbench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get("WORKBENCH_DEBUG"):
            raise
        print(f"workbench: internal error: {type(exc).__name__}: {one_line(exc)} "
              "(set WORKBENCH_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
