"""TensorRT-RTX device check, rerunnable: every ONNX variant the workbench writes, through its own TensorRTRtx
backend, on the accelerator machine.

Two steps (README, "TensorRT on a GPU machine"):

    python benchmarks/tensorrt_device.py export .device/models-zoo --set zoo        # here: write the variants
    python benchmarks/tensorrt_device.py check .device/models-zoo                   # there, after device-install

    python benchmarks/tensorrt_device.py export .device/diag --set corpus-diagnosed      # here: diagnosed recipes
    python benchmarks/tensorrt_device.py engine .device/diag --captured OUT              # there: build + layer info
    python benchmarks/tensorrt_device.py engine-table .device/diag --captured OUT        # anywhere: the table again

`engine` builds each variant with ProfilingVerbosity.DETAILED, saves the engine inspector's JSON and prints the
engine table (layers, builder-inserted reformats, layers mapped to ONNX nodes, precisions chosen, the recipe's
claims against them); `engine-table` prints it from saved layer info.

`check` prints one row per model variant and build mode (plain, debug tensors): parse ok, layers in the network,
build ok and seconds, engine bytes, how many ONNX tensors were found in the network and marked as debug tensors
(explicit marking of every node output; TensorRT-RTX's own "unfused" marking is decided at build time and can only
be counted from a deserialized engine; its plan bytes are shown beside), and deserialize/run: on a GPU the
runtime does not support, the reason.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _table import markdown_table  # noqa: E402

ZOO = ("mnist-cnn", "mobilenet-v2", "minilm")
CORPUS_SET = ("ppocr-det", "ppocr-cls", "ppocr-rec", "silero-vad", "oww-melspectrogram", "oww-embedding",
              "oww-hey-jarvis", "efficientnet-lite0", "digits-knn")


def export(folder: Path, which: str, max_mb: float, only: set[str] | None = None) -> None:
    """Write <model>-<precision>.onnx (+ .shapes with the --shapes items) for the chosen set."""
    import workbench as wb
    from workbench.zoo import corpus

    folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    if which == "zoo":
        for name in ZOO:
            model = wb.load_model(name)
            precisions = ("fp32", "fp16", "bf16", "int8") if name != "minilm" else ("int8", "fp16")
            jobs += [(name, model, p, model.zoo.calibration_data(), ()) for p in precisions]
    else:
        for name in CORPUS_SET:
            if only and name not in only:
                continue
            m = corpus.get(name)
            model = wb.load_model(m.path())
            jobs += [(name, model, p, m.dataset("calib"), m.shapes) for p in ("int8", "fp16")]
    for name, model, precision, calib, shapes in jobs:
        transformed = wb.apply(model, wb.Recipe(precision), calib if precision != "fp32" else None, progress=False)
        target = folder / f"{name}-{precision}.onnx"
        data = Path(transformed.path).read_bytes() if precision != "fp32" else _inline(model.path)
        if len(data) > max_mb * 2**20:
            print(f"skip {target.name}: {len(data) / 2**20:.0f} MB is over one transfer", file=sys.stderr)
            continue
        target.write_bytes(data)
        (folder / f"{name}-{precision}.shapes").write_text(json.dumps(list(shapes)))
    print(f"{folder}: {sum(f.stat().st_size for f in folder.iterdir()) / 2**20:.1f} MB", file=sys.stderr)


def export_diagnosed(folder: Path, only: list[str] | None, max_mb: float) -> None:
    """Diagnose each corpus model as the corpus table does (CLI, eval split, target 0.99), rebuild the recipe from
    its own `reproduce` line and write <model>-diagnosed.onnx beside the diagnosis JSON, so the device can check
    the recipe's claims (which nodes run in INT8, FP16, FP32) against the engine TensorRT builds."""
    import shlex
    import shutil
    import subprocess
    import tempfile

    from workbench.zoo import corpus

    folder.mkdir(parents=True, exist_ok=True)
    for name in only or corpus.names():
        m = corpus.get(name)
        extra = list(m.cli) + (["--shapes", *m.shapes] if m.shapes else [])
        cli = [sys.executable, "-m", "workbench.app.cli"]
        proc = subprocess.run([*cli, "diagnose", str(m.path()), "--calib-data", str(m.npz("calib")), "--eval-data",
                               str(m.npz("eval")), "--target-cosine", "0.99", *extra], capture_output=True, text=True)
        if proc.returncode:
            print(f"{name}: diagnose exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        diagnosis = json.loads(proc.stdout)
        with tempfile.TemporaryDirectory() as tmp:
            line = shlex.split(diagnosis["reproduce"])[1:]
            line[line.index("-o") + 1] = tmp
            built = subprocess.run([*cli, *line], capture_output=True, text=True)
            if built.returncode:
                print(f"{name}: build exit {built.returncode}", file=sys.stderr)
                continue
            target = folder / f"{name}-diagnosed.onnx"
            if (Path(tmp) / "model.onnx").stat().st_size > max_mb * 2**20:
                print(f"skip {target.name}: over one transfer", file=sys.stderr)
                continue
            shutil.copyfile(Path(tmp) / "model.onnx", target)
        (folder / f"{name}-diagnosed.shapes").write_text(json.dumps(list(m.shapes)))
        (folder / f"{name}-diagnosed.json").write_text(json.dumps(diagnosis, indent=1))
        print(f"{name}: {'met' if diagnosis['met'] else 'missed'}, {target.stat().st_size / 2**20:.1f} MB",
              file=sys.stderr, flush=True)


def export_probes(folder: Path) -> None:
    """Single-op Q/DQ models that ask the builder one question each: which ConvTranspose weight quantization
    (ONNX Runtime's per-channel axis 1, per-tensor) gets an INT8 deconvolution, with and without an output Q/DQ;
    whether an unsigned (UINT8, zero point 0) activation quantizer parses; and what a Gemm whose data input is a
    constant (an LSTM's zero initial state) becomes. Layer names are the nodes'."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def qdq(tensor: str, scale: np.ndarray, axis: int | None = None, zero_type=np.int8) -> tuple[list, list, str]:
        attrs = {"axis": axis} if axis is not None else {}
        s = numpy_helper.from_array(scale.astype(np.float32), f"{tensor}_scale")
        z = numpy_helper.from_array(np.zeros(scale.shape, zero_type), f"{tensor}_zp")
        nodes = [helper.make_node("QuantizeLinear", [tensor, s.name, z.name], [f"{tensor}_q"], f"{tensor}_Q", **attrs),
                 helper.make_node("DequantizeLinear", [f"{tensor}_q", s.name, z.name], [f"{tensor}_dq"],
                                  f"{tensor}_DQ", **attrs)]
        return nodes, [s, z], f"{tensor}_dq"

    def save(name: str, nodes: list, inits: list, inputs: list, output: str, shape: list) -> None:
        graph = helper.make_graph(nodes, name, inputs, [helper.make_tensor_value_info(output, TensorProto.FLOAT,
                                                                                      shape)], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
        onnx.checker.check_model(model)
        onnx.save(model, str(folder / f"probe-{name}.onnx"))
        (folder / f"probe-{name}.shapes").write_text("[]")

    # PP-OCR det's last upsampling deconv (24 → 8 channels), a wider one, and a Conv of the same size as a control
    for variant, op, cin, cout, per_channel, out_q in (
            ("deconv-axis1", "ConvTranspose", 24, 8, True, True),
            ("deconv-axis1-noq", "ConvTranspose", 24, 8, True, False),
            ("deconv-tensor", "ConvTranspose", 24, 8, False, True), ("deconv-64", "ConvTranspose", 64, 64, True, True),
            ("conv-control", "Conv", 24, 8, True, True), ("conv-uint8", "Conv", 24, 8, True, True)):
        deconv = op == "ConvTranspose"
        weight = rng.normal(0, 0.1, (cin, cout, 2, 2) if deconv else (cout, cin, 2, 2)).astype(np.float32)
        axis = 1 if deconv else 0
        reduce = tuple(a for a in range(4) if a != axis)
        scale = np.abs(weight).max(reduce) / 127 if per_channel else np.array(np.abs(weight).max() / 127)
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 64, 64])
        w = numpy_helper.from_array(weight, "w")
        b = numpy_helper.from_array(rng.normal(0, 0.1, cout).astype(np.float32), "b")
        # conv-uint8: an unsigned activation quantizer with zero point 0 (what NNCF writes after a ReLU)
        xn, xi, xdq = qdq("x", np.array(0.02), zero_type=np.uint8 if variant == "conv-uint8" else np.int8)
        wn, wi, wdq = qdq("w", scale, axis if per_channel else None)
        conv = helper.make_node(op, [xdq, wdq, "b"], ["y"], op.lower(), strides=[2, 2])
        nodes, inits, out = [*xn, *wn, conv], [w, b, *xi, *wi], "y"
        if out_q:
            yn, yi, out = qdq("y", np.array(0.02))
            nodes, inits = nodes + yn, inits + yi
        save(variant, nodes, inits, [x], out, [1, cout, 128, 128] if deconv else [1, cout, 32, 32])
    state = helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 100])
    w = numpy_helper.from_array(rng.normal(0, 0.1, (400, 100)).astype(np.float32), "w")
    zeros = helper.make_node("ConstantOfShape", ["h_shape"], ["h0"], "h0",
                             value=numpy_helper.from_array(np.zeros(1, np.float32)))
    shape = numpy_helper.from_array(np.array([1, 100], np.int64), "h_shape")
    hn, hi, hdq = qdq("h0", np.array(0.02))
    wn, wi, wdq = qdq("w", np.abs(numpy_helper.to_array(w)).max(1) / 127, 0)
    gemm0 = helper.make_node("Gemm", [hdq, wdq], ["g0"], "gemm_const_state", transB=1)
    xn, xi, xdq = qdq("h", np.array(0.02))
    gemm1 = helper.make_node("Gemm", [xdq, wdq], ["g1"], "gemm_live_state", transB=1)
    add = helper.make_node("Add", ["g0", "g1"], ["g"], "add")
    save("gemm-const-state", [zeros, *hn, *wn, gemm0, *xn, gemm1, add], [w, shape, *hi, *wi, *xi], [state], "g",
         [1, 400])


def _inline(path) -> bytes:
    import onnx

    return onnx.load(str(path)).SerializeToString()  # external data folded in: one file travels


def check(folder: Path) -> list[dict]:
    os.environ.setdefault("POLYGRAPHY_USE_TENSORRT_RTX", "1")
    from workbench.core.errors import WorkbenchError
    from workbench.model.loading import from_onnx
    from workbench.model.profiles import build_profile
    from workbench.runtime.tensorrt import TensorRTRtx, compute_capability, gpu_name

    backend = TensorRTRtx()
    version, gpu = backend.version(), gpu_name()
    rows = []
    for path in sorted(folder.glob("*.onnx")):
        shapes = json.loads(path.with_suffix(".shapes").read_text()) if path.with_suffix(".shapes").exists() else []
        handle = from_onnx(path)
        profile = build_profile(handle.inputs, shapes)
        parsed = _parse(path)
        names = [o for n in handle.proto.graph.node for o in n.output if o]
        for debug in (False, True):
            row = {"variant": path.stem, "debug_tensors": debug, **parsed}
            plan = backend.build_plan(path, handle.sha256 + ("+debug" if debug else ""), profile, version, gpu)
            start = time.perf_counter()
            try:
                data = backend.build_bytes(plan, profile, names if debug else ())
                row.update(build="ok", build_s=round(time.perf_counter() - start, 2), engine_bytes=len(data))
            except WorkbenchError as exc:
                row.update(build=str(exc), build_s=None, engine_bytes=None)
                rows.append(row)
                continue
            if debug:
                row["debug_missing"] = len(backend.missing_debug)
                row["unfused_mode_engine_bytes"] = _unfused_bytes(path, profile)
            try:
                engine = backend.deserialize(data, path.name)
                row["run"] = f"deserialized ({engine.num_layers} engine layers)"
            except WorkbenchError as exc:
                row["run"] = str(exc)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    context = {"runtime": f"TensorRT-RTX {version}", "gpu": gpu, "compute_capability": compute_capability(),
               "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(context))
    return rows


def _unfused_bytes(path: Path, profile) -> int | str:
    """Engine bytes with TensorRT's own "mark unfused tensors as debug tensors" mode, for comparison with the
    explicit marking the backend uses (equal to the plain engine's bytes means nothing was marked)."""
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath

    from workbench.core.log import quiet_polygraphy as quiet

    try:
        with quiet():
            network = NetworkFromOnnxPath(str(path), strongly_typed=True, mark_unfused_tensors_as_debug_tensors=True)
            data = EngineBytesFromNetwork(network, CreateConfig(profiles=[profile.to_polygraphy()]))()
        return len(bytes(data)) if data else "build failed"
    except Exception as exc:
        return f"failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def _parse(path: Path) -> dict:
    """Parse strongly typed; count layers, and the ONNX node outputs found in the network and marked as debug
    tensors when every one is marked explicitly (Polygraphy's MarkDebug)."""
    import onnx
    from polygraphy.backend.trt import NetworkFromOnnxPath

    from workbench.core.log import quiet_polygraphy as quiet

    names = [o for n in onnx.load(str(path), load_external_data=False).graph.node for o in n.output if o]
    try:
        with quiet():
            builder, network, parser = NetworkFromOnnxPath(str(path), strongly_typed=True)()
    except Exception as exc:
        return {"parse": f"failed: {exc}", "layers": None, "onnx_tensors": len(names), "debug_marked": None}
    tensors = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            tensors[layer.get_output(j).name] = layer.get_output(j)
    found = [n for n in names if n in tensors]
    marked = None
    if hasattr(network, "mark_debug"):
        for name in found:
            network.mark_debug(tensors[name])
        marked = sum(bool(network.is_debug_tensor(tensors[n])) for n in found) if hasattr(
            network, "is_debug_tensor") else None
    return {"parse": "ok", "layers": network.num_layers, "onnx_tensors": len(names), "found_in_network": len(found),
            "debug_marked": marked}


def engine_table(folder: Path, captured: Path, build: bool) -> list[dict]:
    """One row per model variant: engine layers, builder-inserted reformats, layers mapped to ONNX nodes, the
    precisions the builder chose and the recipe's claims checked against them. With `build` (on the GPU machine)
    each engine is built here and its layer info saved to `captured`; without, the saved layer info is read."""
    import onnx

    from workbench.analysis.engine import check_claims, parse_build_log, parse_layer_info
    from workbench.graph.placement import claimed_precisions
    from workbench.model.loading import from_onnx
    from workbench.model.profiles import build_profile

    captured.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in sorted(folder.glob("*.onnx")):
        info_path = captured / f"{path.stem}.layers.json"
        meta_path = captured / f"{path.stem}.engine.json"
        if build:
            from workbench.core.errors import WorkbenchError
            from workbench.runtime.tensorrt import available_builder

            shapes = json.loads(path.with_suffix(".shapes").read_text()) if path.with_suffix(".shapes").exists() else []
            try:
                built = available_builder().layer_info(path, build_profile(from_onnx(path).inputs, shapes))
            except WorkbenchError as exc:  # a variant the builder rejects is a row, not the end of the table
                (captured / f"{path.stem}.error.txt").write_text(str(exc) + "\n")
                rows.append({"variant": path.stem, "error": str(exc)})
                continue
            if isinstance(built.layer_info, str):  # the builder's log: this GPU cannot deserialize the engine
                info_path = captured / f"{path.stem}.layers.log"
                info_path.write_text("\n".join(line for line in built.layer_info.splitlines()
                                               if line.startswith("Name: ")) + "\n")
            else:
                info_path.write_text(json.dumps(built.layer_info, indent=1))
            meta_path.write_text(json.dumps({"runtime": built.runtime, "device": built.device,
                                             "plan_bytes": built.plan_bytes}))
        if not info_path.exists():
            info_path = captured / f"{path.stem}.layers.log"
        if not info_path.exists():
            continue
        proto = onnx.load(str(path), load_external_data=False)
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        parse = parse_build_log if info_path.suffix == ".log" else parse_layer_info
        report = parse(info_path.read_text(), model=path.stem, onnx_nodes=[n.name for n in proto.graph.node], **meta)
        rows.append(_engine_row(path.stem, report, check_claims(claimed_precisions(proto), report)))
    return rows


def fixtures(folder: Path, captured: Path, into: Path) -> None:
    """Turn the layer info `engine` captured on the GPU machine (`captured`: <variant>.layers.log + .engine.json) for
    the ONNX files in `folder` into test fixtures (`into`, tests/data/engine): the builder's 'Layers:' lines beside
    the graph's node names, the Q/DQ layout's claims, the plan size, runtime and GPU."""
    import onnx

    from workbench.graph.placement import claimed_precisions

    for log in sorted(captured.glob("*.layers.log")):
        name = log.name[:-len(".layers.log")]
        model = folder / f"{name}.onnx"
        if not model.exists():
            continue
        proto = onnx.load(str(model))
        meta = json.loads((captured / f"{name}.engine.json").read_text())
        (into / f"{name}.layers.log").write_text(log.read_text())
        (into / f"{name}.graph.json").write_text(json.dumps(
            {"nodes": [n.name for n in proto.graph.node], "claims": claimed_precisions(proto),
             "plan_bytes": meta["plan_bytes"], "runtime": meta["runtime"], "device": meta["device"]}) + "\n")
        print(f"{name}: fixture written", file=sys.stderr)


def captured_table(captured: Path) -> list[dict]:
    """The engine table from builder logs captured on the GPU machine (tests/data/engine: each variant's 'Layers:'
    listing beside its ONNX node names, claims and plan size): TensorRT-RTX 1.7 builds on the H100 but cannot
    deserialize there, so the builder's log, not the inspector, is what it tells."""
    from workbench.analysis.engine import check_claims, parse_build_log

    rows = []
    for log in sorted(captured.glob("*.layers.log")):
        name = log.name[:-len(".layers.log")]
        graph = json.loads((captured / f"{name}.graph.json").read_text())
        report = parse_build_log(log.read_text(), model=name, onnx_nodes=graph["nodes"], runtime=graph["runtime"],
                                 device=graph["device"], plan_bytes=graph["plan_bytes"])
        rows.append(_engine_row(name, report, check_claims(graph["claims"], report)))
    return rows


def _engine_row(name: str, report, claims) -> dict:
    """One engine-table row: layers, how many map to ONNX nodes, which graph nodes some layer names, the precisions
    chosen, and the recipe's claims against them."""
    nodes = len(report.onnx_nodes)
    return {"variant": name, "engine_layers": len(report.layers),
            "mapped": f"{report.mapped_layers}/{len(report.layers) - report.inserted_layers}",
            "onnx_nodes_named": f"{nodes - len(report.unmapped_nodes())}/{nodes}",
            "precisions": " ".join(f"{k}:{v}" for k, v in sorted(report.precision_counts().items())),
            "claims_agree": f"{claims.agree}/{claims.checked}",
            "disagreements": ", ".join(f"{d['node']} ({d['claimed']}→{d['engine']})"
                                       for d in claims.disagreements) or "none",
            "plan_mib": round(report.plan_bytes / 2**20, 1) if report.plan_bytes else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=("export", "check", "engine", "engine-table", "captured", "fixtures"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--set", default="zoo", choices=("zoo", "corpus", "corpus-diagnosed", "probes"))
    parser.add_argument("--max-mb", type=float, default=30.0)
    parser.add_argument("--models", help="comma-separated subset of the set (export)")
    parser.add_argument("--captured", type=Path, default=Path("tests/data/engine"),
                        help="where engine/engine-table keep each variant's layer info")
    args = parser.parse_args()
    if args.step == "export" and args.set == "corpus-diagnosed":
        export_diagnosed(args.folder, args.models.split(",") if args.models else None, args.max_mb)
        return
    if args.step == "export" and args.set == "probes":
        export_probes(args.folder)
        return
    if args.step == "export":
        export(args.folder, args.set, args.max_mb, set(args.models.split(",")) if args.models else None)
        return
    if args.step == "fixtures":  # folder: the exported ONNX files; --captured: what `engine` saved on the GPU
        fixtures(args.folder, args.captured, Path("tests/data/engine"))
        return
    if args.step == "captured":
        print(markdown_table(captured_table(args.folder)))
        return
    if args.step in ("engine", "engine-table"):
        print(markdown_table(engine_table(args.folder, args.captured, build=args.step == "engine")))
        return
    rows = check(args.folder)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
