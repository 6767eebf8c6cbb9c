"""The trtexec command lines that reproduce a workbench build and benchmark on a GPU machine.

TensorRT 11 flags: no precision flags (precision is in the ONNX), strong typing always on. For TensorRT 10,
--stronglyTyped is added (or the legacy --fp16/--int8 flags when a user asked for them).
"""
from __future__ import annotations

import shlex
from typing import Mapping, Sequence

from workbench.model.profiles import Profile


def build_command(onnx_path: str, profile: Profile, engine: str = "model.plan", timing_cache: str = "timing.cache",
                  tensorrt_major: int = 11, legacy_flags: Sequence[str] = ()) -> list[str]:
    cmd = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine}", *profile.trtexec_shapes(),
           f"--timingCacheFile={timing_cache}", "--skipInference"]
    if tensorrt_major < 11:
        cmd += [f"--{flag}" for flag in legacy_flags] or ["--stronglyTyped"]
    return cmd


def bench_command(engine: str, shapes: Mapping[str, Sequence[int]], iterations: int = 100, warmup_ms: int = 200,
                  duration_s: float | None = None) -> list[str]:
    """Time the saved engine: GPU compute (--noDataTransfers) with CUDA graphs, as the workbench bench does."""
    shape_arg = ",".join(f"{name}:{'x'.join(map(str, s))}" for name, s in shapes.items())
    cmd = ["trtexec", f"--loadEngine={engine}", f"--shapes={shape_arg}", f"--warmUp={warmup_ms}",
           f"--iterations={iterations}", "--useCudaGraph", "--noDataTransfers", "--useSpinWait"]
    if duration_s is not None:
        cmd.append(f"--duration={duration_s:g}")
    return cmd


def commands(onnx_path: str, profile: Profile, tensorrt_major: int = 11, batch_shapes: Mapping | None = None) -> dict:
    shapes = batch_shapes or {p.name: p.opt for p in profile.inputs}
    return {"build": shlex.join(build_command(onnx_path, profile, tensorrt_major=tensorrt_major)),
            "bench": shlex.join(bench_command("model.plan", shapes)), "tensorrt_major": tensorrt_major}
