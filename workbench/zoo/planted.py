"""Small CNNs with a planted INT8 collapse, on real 8×8 digit images (scikit-learn's digits).

The collapse is the classic one: a channel with outlier activations feeds a per-tensor quantized input. Block
i's conv gets one output channel whose weights are scaled by `outlier_gain`; the next conv barely reads that
channel (as real networks often do with outlier channels), so per-tensor INT8 on its input crushes every other
channel into a few levels. The node to keep in higher precision is that next conv: `culprits()` names it.
Used by the tests, notebook 02 and workshops ("find the planted collapse").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..data import Dataset
from ..model import ModelHandle, from_onnx

INPUT = "image"


@dataclass(frozen=True)
class PlantedCnn:
    blocks: int = 4
    channels: int = 8
    collapse_after: tuple[int, ...] = (1,)  # block indices whose output carries an outlier channel
    outlier_gain: float = 300.0
    seed: int = 0

    def conv(self, i: int) -> str:
        return f"block{i}.conv"

    def culprits(self) -> list[str]:
        """The convs whose quantized input is crushed by the outlier channel."""
        return [self.conv(i + 1) for i in self.collapse_after]

    def onnx_model(self) -> onnx.ModelProto:
        rng = np.random.default_rng(self.seed)
        nodes, inits = [], []
        x, cin = INPUT, 1
        for i in range(self.blocks):
            w = (rng.standard_normal((self.channels, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(np.float32)
            b = (rng.standard_normal(self.channels) * 0.1).astype(np.float32)
            if i in self.collapse_after:
                w[0] *= self.outlier_gain
                b[0] = abs(b[0]) * self.outlier_gain + self.outlier_gain
            if i - 1 in self.collapse_after:
                w[:, 0] *= 1e-4
            inits += [numpy_helper.from_array(w, f"block{i}.weight"), numpy_helper.from_array(b, f"block{i}.bias")]
            nodes += [
                helper.make_node("Conv", [x, f"block{i}.weight", f"block{i}.bias"], [f"block{i}.conv_out"],
                                 name=self.conv(i), pads=[1, 1, 1, 1]),
                helper.make_node("Relu", [f"block{i}.conv_out"], [f"block{i}.out"], name=f"block{i}.relu"),
            ]
            x, cin = f"block{i}.out", self.channels
        fc = (rng.standard_normal((10, self.channels)) * 0.5).astype(np.float32)
        inits += [numpy_helper.from_array(fc, "head.weight"), numpy_helper.from_array(np.zeros(10, np.float32), "head.bias")]
        nodes += [
            helper.make_node("GlobalAveragePool", [x], ["pooled"], name="head.pool"),
            helper.make_node("Flatten", ["pooled"], ["features"], name="head.flatten"),
            helper.make_node("Gemm", ["features", "head.weight", "head.bias"], ["logits"], name="head.fc", transB=1),
        ]
        graph = helper.make_graph(
            nodes, "planted_cnn", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 1, 8, 8])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="workbench")
        onnx.checker.check_model(model)
        return model

    def load(self) -> ModelHandle:
        from .. import cache

        model = self.onnx_model()
        data = model.SerializeToString()
        path = cache.artifact_path("models", cache.digest(data), ".onnx")
        if not path.exists():
            cache.atomic_write(path, data)
        return from_onnx(path, name=f"planted-cnn{list(self.collapse_after)}")


def digits(split: str = "calib") -> Dataset:
    """Real 8×8 handwritten digits (scikit-learn): 'calib' = first 256, 'eval' = the next 512, with labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = ((d.images.astype(np.float32) / 16.0) - 0.5)[:, None]
    sl = {"calib": slice(0, 256), "eval": slice(256, 768)}[split]
    return Dataset({INPUT: np.ascontiguousarray(x[sl])}, d.target[sl].astype(np.int64))


def planted(collapse_after: Sequence[int] = (1,), **kwargs) -> tuple[PlantedCnn, ModelHandle]:
    spec = PlantedCnn(collapse_after=tuple(collapse_after), **kwargs)
    return spec, spec.load()
