"""Small CNNs with a planted INT8 collapse, on real 8×8 digit images (scikit-learn's digits).

The collapse is the classic one: a channel with outlier activations feeds a per-tensor quantized input. Block
i's conv gets one output channel whose weights are scaled by `outlier_gain`; the next conv barely reads that
channel (as real networks often do with outlier channels), so per-tensor INT8 on its input crushes every other
channel into a few levels. The node to keep in higher precision is that next conv: `culprits()` names it.
Used by the tests, notebook 02 and workshops ("find the planted collapse").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from workbench.model.data import Dataset
from workbench.model.loading import ModelHandle, from_onnx

INPUT = "image"
TRAINED_WEIGHTS = Path(__file__).parent / "data" / "digits-cnn" / "weights.npz"


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
        from workbench.core import cache

        model = self.onnx_model()
        path = cache.store_model(model.SerializeToString())
        return from_onnx(path, name=f"planted-cnn{list(self.collapse_after)}")


def trained(collapse_after: Sequence[int] = (1,), outlier_gain: float = 300.0, channel: int = 7) -> ModelHandle:
    """The workshop's trained digits CNN (datasets/train_digits_cnn.py, 94 % top-1 on `digits("eval")`) with the
    collapse planted without changing what it computes: block i's output `channel` is scaled by `outlier_gain` and
    block i+1 reads it divided by the same gain (channel 7 is block 1's most active one: mean 0.94, max 3.8 on
    digits("calib")), so FP32 predictions are unchanged while one INT8 scale on block i's output now spans a
    300x outlier. Nodes are named as in PlantedCnn: the culprit is `block{i+1}.conv`."""
    weights = dict(np.load(TRAINED_WEIGHTS))
    for i in collapse_after:
        weights[f"block{i}.weight"][channel] *= outlier_gain
        weights[f"block{i}.bias"][channel] *= outlier_gain
        weights[f"block{i + 1}.weight"][:, channel] /= outlier_gain
    nodes, x, blocks = [], INPUT, sum(1 for k in weights if k.startswith("block") and k.endswith(".weight"))
    for i in range(blocks):
        nodes += [helper.make_node("Conv", [x, f"block{i}.weight", f"block{i}.bias"], [f"block{i}.conv_out"],
                                   name=f"block{i}.conv", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"block{i}.conv_out"], [f"block{i}.out"], name=f"block{i}.relu")]
        x = f"block{i}.out"
    nodes += [helper.make_node("Flatten", [x], ["features"], name="head.flatten"),
              helper.make_node("Gemm", ["features", "head.weight", "head.bias"], ["logits"], name="head.fc",
                               transB=1)]
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    return _model(nodes, inits, f"digits-cnn-planted{list(collapse_after)}" if collapse_after else "digits-cnn")


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


def batchnorm_chain(seed: int = 0) -> ModelHandle:
    """Conv → BatchNormalization → HardSwish blocks, BatchNorm left unfolded (as older exporters write it).

    The BatchNorm scales differ by four orders of magnitude across channels while the conv weights compensate, so
    the conv outputs *before* BatchNorm span very different ranges per channel: one INT8 scale on that tensor
    crushes the small channels. Folding BatchNorm into the conv (what TensorRT does) removes the problem."""
    rng = np.random.default_rng(seed)
    nodes, inits, x, cin, c = [], [], INPUT, 1, 8
    for i in range(3):
        gain = np.logspace(-2, 2, c).astype(np.float32)[rng.permutation(c)]
        w = (rng.standard_normal((c, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(np.float32) / gain[:, None, None, None]
        bn = [gain, (rng.standard_normal(c) * 0.1).astype(np.float32), np.zeros(c, np.float32), np.ones(c, np.float32)]
        names = [f"b{i}.weight", f"b{i}.bn.scale", f"b{i}.bn.bias", f"b{i}.bn.mean", f"b{i}.bn.var"]
        inits += [numpy_helper.from_array(a, n) for a, n in zip([w, *bn], names)]
        nodes += [helper.make_node("Conv", [x, names[0]], [f"b{i}.conv_out"], name=f"b{i}.conv", pads=[1, 1, 1, 1]),
                  helper.make_node("BatchNormalization", [f"b{i}.conv_out", *names[1:]], [f"b{i}.bn_out"],
                                   name=f"b{i}.bn"),
                  helper.make_node("HardSwish", [f"b{i}.bn_out"], [f"b{i}.out"], name=f"b{i}.act")]
        x, cin = f"b{i}.out", c
    return _with_head(nodes, inits, x, c, rng, "batchnorm_chain")


def uneven_channels(seed: int = 0) -> ModelHandle:
    """Conv → ReLU6 (Clip 0..6) → depthwise Conv → ReLU → Conv: a MobileNet block whose first conv's output
    channels span four orders of magnitude (0.001x to 10x, the depthwise filters compensate), the pattern BatchNorm
    folding leaves in real MobileNets. One per-tensor INT8 scale on the ReLU6 output leaves the small channels a
    step or two; equalizing the channels into the depthwise filters (cross-layer equalization) fixes it exactly."""
    rng = np.random.default_rng(seed)
    c = 8
    gain = np.logspace(-3, 1, c).astype(np.float32)[rng.permutation(c)]
    w0 = (rng.standard_normal((c, 1, 3, 3)) * np.sqrt(2.0 / 9)).astype(np.float32) * gain[:, None, None, None]
    b0 = (rng.standard_normal(c) * 0.1).astype(np.float32) * gain
    dw = (rng.standard_normal((c, 1, 3, 3)) * np.sqrt(2.0 / 9)).astype(np.float32) / gain[:, None, None, None]
    pw = (rng.standard_normal((c, c, 1, 1)) * np.sqrt(2.0 / c)).astype(np.float32)
    arrays = {"b0.weight": w0, "b0.bias": b0, "dw.weight": dw, "dw.bias": np.zeros(c, np.float32), "pw.weight": pw,
              "pw.bias": np.zeros(c, np.float32), "relu6.min": np.array(0.0, np.float32),
              "relu6.max": np.array(6.0, np.float32)}
    inits = [numpy_helper.from_array(v, k) for k, v in arrays.items()]
    nodes = [
        helper.make_node("Conv", [INPUT, "b0.weight", "b0.bias"], ["b0.conv_out"], name="b0.conv", pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["b0.conv_out", "relu6.min", "relu6.max"], ["b0.out"], name="b0.relu6"),
        helper.make_node("Conv", ["b0.out", "dw.weight", "dw.bias"], ["dw.conv_out"], name="dw.conv",
                         pads=[1, 1, 1, 1], group=c),
        helper.make_node("Relu", ["dw.conv_out"], ["dw.out"], name="dw.relu"),
        helper.make_node("Conv", ["dw.out", "pw.weight", "pw.bias"], ["pw.conv_out"], name="pw.conv"),
        helper.make_node("Relu", ["pw.conv_out"], ["pw.out"], name="pw.relu"),
    ]
    return _with_head(nodes, inits, "pw.out", c, rng, "uneven_channels")


def rounding_bias(seed: int = 0) -> ModelHandle:
    """Conv → ReLU → Conv whose second conv has, per output channel, one large weight and many small ones just
    under half an INT8 step: per-channel INT8 rounds all the small ones to zero, and since they read a ReLU output
    (positive, mean well above zero) the loss is mostly a constant offset per channel, which bias correction
    measures and adds back; per-tensor or per-channel ranges cannot help (the large weight sets the scale)."""
    rng = np.random.default_rng(seed)
    c = 8
    w0 = (rng.standard_normal((c, 1, 3, 3)) * np.sqrt(2.0 / 9)).astype(np.float32)
    b0 = np.full(c, 1.0, np.float32)
    w1 = np.full((c, c, 3, 3), 0.49 / 127, np.float32) * rng.choice([1.0, 0.9], (c, c, 3, 3)).astype(np.float32)
    for o in range(c):
        w1[o, o, 1, 1] = 1.0
    arrays = {"b0.weight": w0, "b0.bias": b0, "b1.weight": w1, "b1.bias": np.zeros(c, np.float32)}
    inits = [numpy_helper.from_array(v, k) for k, v in arrays.items()]
    nodes = [
        helper.make_node("Conv", [INPUT, "b0.weight", "b0.bias"], ["b0.conv_out"], name="b0.conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["b0.conv_out"], ["b0.out"], name="b0.relu"),
        helper.make_node("Conv", ["b0.out", "b1.weight", "b1.bias"], ["b1.out"], name="b1.conv", pads=[1, 1, 1, 1]),
    ]
    return _with_head(nodes, inits, "b1.out", c, rng, "rounding_bias")


def masked_attention(seed: int = 0) -> ModelHandle:
    """One attention head over the 8 rows of a digit image (8 tokens × 8 features) with a causal additive mask of
    -1e9. Quantizing every op (ONNX Runtime's default placement) puts one INT8 scale on scores + mask, which wipes
    out the scores; percentile calibration cannot help (43 % of the values are the mask). Quantizing only the
    MatMul inputs, as TensorRT does, keeps the mask out of INT8."""
    rng = np.random.default_rng(seed)
    d = 16
    weights = {n: (rng.standard_normal((8, d)) / np.sqrt(8)).astype(np.float32) for n in ("wq", "wk", "wv")}
    mask = np.triu(np.full((8, 8), -1e9, np.float32), k=1)
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    inits += [numpy_helper.from_array(mask, "mask"), numpy_helper.from_array(np.array([4.0], np.float32), "scale"),
              numpy_helper.from_array(np.array([-1, 8, 8], np.int64), "tokens")]
    nodes = [
        helper.make_node("Reshape", [INPUT, "tokens"], ["x"], name="tokens"),
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="attn.q"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="attn.k"),
        helper.make_node("MatMul", ["x", "wv"], ["v"], name="attn.v"),
        helper.make_node("Transpose", ["k"], ["kt"], name="attn.kt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"], name="attn.scores"),
        helper.make_node("Mul", ["scores", "scale"], ["scaled"], name="attn.scale"),
        helper.make_node("Add", ["scaled", "mask"], ["masked"], name="attn.mask"),
        helper.make_node("Softmax", ["masked"], ["probs"], name="attn.softmax", axis=-1),
        helper.make_node("MatMul", ["probs", "v"], ["context"], name="attn.context"),
    ]
    fc = (rng.standard_normal((8 * d, 10)) / np.sqrt(8 * d)).astype(np.float32)
    inits += [numpy_helper.from_array(fc, "head.weight"), numpy_helper.from_array(np.array([-1, 8 * d], np.int64), "flat")]
    nodes += [helper.make_node("Reshape", ["context", "flat"], ["features"], name="head.flatten"),
              helper.make_node("MatMul", ["features", "head.weight"], ["logits"], name="head.fc")]
    return _model(nodes, inits, "masked_attention")


def outlier_features(seed: int = 0) -> ModelHandle:
    """A transformer-style block over the 8 rows of a digit image (8 tokens × 16 features): two LayerNorms whose
    scale gives two of the 16 features a 100x larger range (the outlier dimensions of real transformers), read by
    MatMuls that barely use those features. One per-tensor INT8 scale on a LayerNorm output crushes the other 14
    features; no Conv pair exists, so equalization cannot help. Smoothing migrates the outliers into the MatMuls'
    weights: into the second LayerNorm's scale (its only reader is a MatMul), through an explicit Mul for the first
    (the residual Add also reads it)."""
    rng = np.random.default_rng(seed)
    d = 16
    gain = np.ones(d, np.float32)
    gain[[3, 11]] = 100.0

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(np.float32)

    reads = matrix(d, d)
    reads[[3, 11]] *= 1e-3
    arrays = {"embed.weight": matrix(8, d), "ln1.scale": gain, "ln1.bias": np.zeros(d, np.float32),
              "mix.weight": reads, "ln2.scale": gain * 0.5, "ln2.bias": np.full(d, 0.1, np.float32),
              "proj.weight": reads[:, :4].copy(), "tokens": np.array([-1, 8, 8], np.int64),
              "flat": np.array([-1, 32], np.int64), "head.weight": matrix(32, 10)}
    inits = [numpy_helper.from_array(v, k) for k, v in arrays.items()]
    nodes = [
        helper.make_node("Reshape", [INPUT, "tokens"], ["x"], name="tokens"),
        helper.make_node("MatMul", ["x", "embed.weight"], ["h"], name="embed"),
        helper.make_node("LayerNormalization", ["h", "ln1.scale", "ln1.bias"], ["n1"], name="ln1"),
        helper.make_node("MatMul", ["n1", "mix.weight"], ["m"], name="mix"),
        helper.make_node("Add", ["n1", "m"], ["r"], name="residual"),
        helper.make_node("LayerNormalization", ["r", "ln2.scale", "ln2.bias"], ["n2"], name="ln2"),
        helper.make_node("MatMul", ["n2", "proj.weight"], ["p"], name="proj"),
        helper.make_node("Reshape", ["p", "flat"], ["features"], name="head.flatten"),
        helper.make_node("MatMul", ["features", "head.weight"], ["logits"], name="head.fc"),
    ]
    return _model(nodes, inits, "outlier_features")


def _with_head(nodes, inits, x, channels, rng, name) -> ModelHandle:
    fc = (rng.standard_normal((10, channels)) * 0.5).astype(np.float32)
    inits = inits + [numpy_helper.from_array(fc, "head.weight"),
                     numpy_helper.from_array(np.zeros(10, np.float32), "head.bias")]
    nodes = nodes + [
        helper.make_node("GlobalAveragePool", [x], ["pooled"], name="head.pool"),
        helper.make_node("Flatten", ["pooled"], ["features"], name="head.flatten"),
        helper.make_node("Gemm", ["features", "head.weight", "head.bias"], ["logits"], name="head.fc", transB=1),
    ]
    return _model(nodes, inits, name)


def _model(nodes, inits, name) -> ModelHandle:
    from workbench.core import cache

    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="workbench")
    onnx.checker.check_model(model)
    path = cache.store_model(model.SerializeToString())
    return from_onnx(path, name=name)


def with_glitches(data: Dataset, images: int = 1, value: float = 100.0) -> Dataset:
    """A copy of `data` where the first `images` samples carry one saturated 'hot' pixel each: the kind of
    corrupted calibration sample that makes MinMax calibration choose a uselessly wide range."""
    x = data.inputs[INPUT].copy()
    x[:images, 0, 3, 4] = value
    return Dataset({INPUT: x}, data.labels)
