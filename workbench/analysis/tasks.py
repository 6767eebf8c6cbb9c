"""Task-level accuracy against the FP32 model's own results, with no labels: what a user of the model sees.

classification: top-1 agreement on the samples FP32 decides clearly (plain top-1 and top-5 agreement beside it;
a [N, 1] probability: the decision at 0.5); detection: an Ultralytics YOLOv5/v8 raw head, or separate boxes and
scores outputs (PicoDet, SSD), decoded, score threshold + class-aware NMS, boxes matched to
FP32's at IoU 0.5 (recall, precision, F1); ctc: greedy decode (blank 0), exact match and 1 − character error rate
vs FP32's text; segmentation: per-pixel argmax agreement and mean IoU over FP32's classes ([N, 1, H, W]
probability maps: the mask at a threshold); embedding: mean per-sample cosine. A task is chosen from the output
layout only where it is unambiguous (`detect_task` says why); `parse_task` takes a name or a user's
`module:function` / `file.py:function` returning a float or a dict of floats (higher is better), as NNCF's
validation function and Polygraphy's `--check` take one.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from workbench.core.errors import WorkbenchError
from workbench.core.metrics import ChannelGroup

TASKS = ("auto", "none", "classification", "detection", "ctc", "segmentation", "embedding")
Outputs = dict[str, np.ndarray]


@dataclass
class TaskResult:
    """A task's metrics over the data (the primary one first), and per sample the primary score's share."""

    metrics: dict[str, float]
    per_sample: np.ndarray | None = None  # one score per sample, higher is better (worst inputs)

    def worst(self, k: int = 5) -> list[tuple[int, float]]:
        if self.per_sample is None or not len(self.per_sample):
            return []
        order = np.argsort(self.per_sample, kind="stable")[:k]
        return [(int(i), float(self.per_sample[i])) for i in order if self.per_sample[i] < 1.0]


@dataclass(frozen=True)
class Task:
    """What the model's output means, how to score it against FP32, and the default floor of its primary metric
    (met when the primary metric reaches it; FP32 against itself scores 1)."""

    kind: str
    output: str
    primary: str
    default_min: float
    reason: str
    options: tuple[tuple[str, Any], ...] = ()
    function: Callable | None = field(default=None, compare=False)

    @property
    def opts(self) -> dict:
        return dict(self.options)

    def evaluate(self, outputs: Outputs, reference: Outputs, data: Any = None) -> TaskResult:
        if self.function is not None:
            value = self.function(outputs, reference, data)
            metrics = {k: float(v) for k, v in value.items()} if isinstance(value, dict) else {self.primary:
                                                                                                 float(value)}
            return TaskResult(metrics)
        fn = _SCORERS[self.kind]
        return fn(self._head(outputs), self._head(reference), **self._scorer_opts())

    def _head(self, outputs: Outputs) -> np.ndarray:
        """The array the scorer reads: the task's output, or for separate boxes + scores outputs (PicoDet, SSD
        exports without NMS) both joined as a YOLOv8 head [N, 4 + classes, anchors] (boxes as centre and size)."""
        opts = self.opts
        if "scores" not in opts:
            return np.asarray(outputs[self.output])
        boxes = np.asarray(outputs[self.output], np.float64)  # [N, anchors, 4] corners
        scores = np.asarray(outputs[opts["scores"]], np.float64)
        scores = scores if opts.get("scores_first") else scores.transpose(0, 2, 1)  # → [N, classes, anchors]
        centre = np.concatenate([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], -1)
        return np.concatenate([centre.transpose(0, 2, 1), scores], axis=1)

    def _scorer_opts(self) -> dict:
        return {k: v for k, v in self.options if k not in ("scores", "scores_first")}

    def metric(self, outputs: Outputs, reference: Outputs, data: Any = None) -> float:
        """The primary metric (diagnose's TaskMetric signature)."""
        return self.evaluate(outputs, reference, data).metrics[self.primary]

    def readout(self, outputs: Outputs, reference: Outputs, index: int) -> dict | None:
        """What FP32 and the candidate say for one sample, in the task's terms (top-5 classes, boxes after NMS,
        decoded symbols, mask area), so a user sees how a worst input fails; None for tasks without one."""
        fn = _READOUTS.get(self.kind) if self.function is None else None
        if fn is None or self.output not in outputs:
            return None
        def one(values: Outputs) -> np.ndarray:  # this sample of every output, then the scorer's array
            return self._head({k: np.asarray(v)[index:index + 1] for k, v in values.items()})
        return {"index": int(index), **fn(one(outputs), one(reference), **self._scorer_opts())}

    def describe(self) -> str:
        return f"{self.kind} on '{self.output}' ({self.reason})" if self.output else f"{self.kind} ({self.reason})"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "output": self.output, "primary": self.primary, "default_min": self.default_min,
                "reason": self.reason, **{k: v for k, v in self.options if isinstance(v, (int, float, str))}}


# ---------------------------------------------------------------- choosing the task

def detect_task(model) -> Task | None:
    """The task the model's outputs unambiguously carry (Ultralytics metadata, a YOLO head whose anchor count
    matches the input's strides, a Softmax over classes or time steps, a Sigmoid map), else None."""
    from workbench.graph.topology import GraphIndex

    meta = {p.key: p.value for p in model.proto.metadata_props}
    outputs = [o for o in model.outputs]
    if not outputs:
        return None
    producers = GraphIndex(model.proto.graph).producer
    yolo = _yolo_head(model, meta) or _boxes_and_scores(model)
    if yolo is not None:
        return yolo
    zoo_task = getattr(getattr(model, "zoo", None), "task", None)
    if zoo_task:
        return make_task(zoo_task, model)
    for out in outputs:
        shape = tuple(out.shape)
        op = _source_op(producers, out.name)
        if out.dtype is not None and np.dtype(out.dtype).kind in "iub":
            continue
        if len(shape) == 2 and op in ("Softmax", "LogSoftmax", "Gemm", "Sigmoid"):
            return _classification(out.name, shape, f"[N, {shape[1]}] output of a {op}")
        if len(shape) == 3 and op in ("Softmax", "LogSoftmax") and _known(shape[2]) and shape[2] >= 20:
            return Task("ctc", out.name, "char_accuracy", 0.98, f"Softmax over {shape[2]} symbols per time step",
                        (("blank", 0),))
        if len(shape) == 4 and op == "Sigmoid" and shape[1] == 1:
            return Task("segmentation", out.name, "mask_iou", 0.95, "one-channel Sigmoid map", (("threshold", 0.5),))
        if len(shape) == 4 and op in ("Softmax", "ArgMax") and _known(shape[1]) and shape[1] >= 2:
            return Task("segmentation", out.name, "miou", 0.95, f"Softmax over {shape[1]} classes per pixel")
    return None


# Ops that move values without changing what they mean: a task is read through them to the op that made them.
_PASS_THROUGH = {"Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose", "Cast"}


def _source_op(producers: dict, name: str) -> str:
    """The op type behind an output, through reshapes and identities ("" for a graph input or a constant)."""
    for _ in range(16):
        node = producers.get(name)
        if node is None:
            return ""
        if node.op_type not in _PASS_THROUGH or not node.input:
            return node.op_type
        name = node.input[0]
    return ""


def _known(dim: Any) -> bool:
    return isinstance(dim, int) and dim > 0


def _classification(name: str, shape: tuple, reason: str) -> Task:
    if _known(shape[1]) and shape[1] == 1:
        return Task("classification", name, "decision_agreement", 0.98, reason + ": a probability, decided at 0.5",
                    (("threshold", 0.5),))
    return Task("classification", name, "top1_agreement_confident", 0.98,
                reason + f": top-1 agreement where FP32's top-1 leads by ≥ {CONFIDENT_MARGIN:g} probability")


def _yolo_head(model, meta: dict[str, str]) -> Task | None:
    """An Ultralytics YOLOv8-style head [N, 4 + classes, anchors] (metadata task=detect, or the anchor count of
    strides 8/16/32 on the input's size) or a YOLOv5 head [N, anchors, 5 + classes]."""
    out = model.outputs[0]
    shape = tuple(out.shape)
    if len(shape) != 3:
        return None
    names = _class_names(meta.get("names", ""))
    if meta.get("task") == "detect" and _known(shape[1]) and (not names or shape[1] == 4 + len(names)):
        return Task("detection", out.name, "box_f1", 0.95, "Ultralytics metadata task=detect",
                    (("layout", "v8"), ("classes", shape[1] - 4), ("names", tuple(names))))
    size = _input_hw(model)
    if size is None:
        return None
    cells = sum((size[0] // s) * (size[1] // s) for s in (8, 16, 32))
    if _known(shape[1]) and shape[2] == cells and 5 <= shape[1] < cells:
        return Task("detection", out.name, "box_f1", 0.95, f"{cells} anchors = strides 8/16/32 on {size[0]}x{size[1]}",
                    (("layout", "v8"), ("classes", shape[1] - 4)))
    if _known(shape[2]) and shape[1] == 3 * cells and shape[2] >= 6:
        return Task("detection", out.name, "box_f1", 0.95, f"3 x {cells} anchors with objectness (YOLOv5)",
                    (("layout", "v5"), ("classes", shape[2] - 5)))
    return None


def _boxes_and_scores(model) -> Task | None:
    """Two outputs, corner boxes [N, anchors, 4] and class scores [N, anchors, classes] or [N, classes, anchors]
    over the same anchors (PicoDet and SSD exports without NMS)."""
    shapes = {o.name: tuple(o.shape) for o in model.outputs if len(o.shape) == 3}
    boxes = [n for n, s in shapes.items() if s[2] == 4 and _known(s[1])]
    for name in boxes:
        anchors = shapes[name][1]
        for other, s in shapes.items():
            if other == name or not (_known(s[1]) and _known(s[2])):
                continue
            if s[1] == anchors and s[2] != anchors:
                first = False
            elif s[2] == anchors and s[1] != anchors:
                first = True
            else:
                continue
            classes = s[1] if first else s[2]
            return Task("detection", name, "box_f1", 0.95, f"boxes '{name}' [N, {anchors}, 4] with scores '{other}'",
                        (("layout", "v8"), ("classes", classes), ("scores", other), ("scores_first", first)))
    return None


def _input_hw(model) -> tuple[int, int] | None:
    shape = tuple(model.inputs[0].shape) if model.inputs else ()
    if len(shape) == 4 and _known(shape[2]) and _known(shape[3]):
        return shape[2], shape[3]
    return None


def _class_names(text: str) -> list[str]:
    import ast

    try:
        names = ast.literal_eval(text) if text else {}
    except (ValueError, SyntaxError):
        return []
    return list(names.values()) if isinstance(names, dict) else list(names) if isinstance(names, list) else []


def output_groups(model, task: Task | None) -> dict[str, list[ChannelGroup]] | None:
    """Channel groups the model says its head carries (a YOLO head's boxes and scores); None: find them from the
    values (core.metrics.channel_groups)."""
    if task is None or task.kind != "detection" or "scores" in task.opts:  # separate outputs: each scored alone
        return None
    layout, classes = task.opts["layout"], task.opts["classes"]
    if layout == "v8":
        return {task.output: [ChannelGroup(0, 0, 4, "boxes"), ChannelGroup(0, 4, 4 + classes, "scores")]}
    return {task.output: [ChannelGroup(1, 0, 4, "boxes"), ChannelGroup(1, 4, 5 + classes, "scores")]}


def make_task(spec: str | Callable | Task | None, model) -> Task | None:
    """A task from a name (auto, none, classification, detection, ctc, segmentation, embedding), a callable or
    `module:function` / `file.py:function` (a user metric), for this model."""
    if spec is None or isinstance(spec, Task):
        return spec
    if callable(spec):
        return Task("custom", "", getattr(spec, "__name__", "metric"), float("nan"), "user metric", function=spec)
    spec = str(spec)
    if spec == "auto":
        return detect_task(model)
    if spec == "none":
        return None
    if ":" in spec and spec.split(":")[0] not in TASKS:
        fn = load_metric(spec)
        return Task("custom", "", spec.rsplit(":", 1)[1], float("nan"), f"user metric {spec}", function=fn)
    kind, _, arg = spec.partition(":")
    if kind not in TASKS:
        raise WorkbenchError(f"unknown task {spec!r}: one of {', '.join(TASKS)}, or MODULE:FUNCTION / FILE.py:FUNCTION")
    found = detect_task(model)
    if found is not None and found.kind == kind:
        return found
    out = model.outputs[0]
    shape = tuple(out.shape)
    if kind == "classification":
        return _classification(out.name, shape, "set by the user")
    if kind == "detection":
        if len(shape) != 3:
            raise WorkbenchError(f"--task detection needs a YOLO-style head [N, 4 + classes, anchors]; output "
                                 f"'{out.name}' has shape {list(shape)}")
        v5 = _known(shape[2]) and (not _known(shape[1]) or shape[1] > shape[2])
        return Task("detection", out.name, "box_f1", 0.95, "set by the user",
                    (("layout", "v5"), ("classes", shape[2] - 5)) if v5 else (("layout", "v8"),
                                                                              ("classes", shape[1] - 4)))
    if kind == "ctc":
        return Task("ctc", out.name, "char_accuracy", 0.98, "set by the user", (("blank", 0),))
    if kind == "segmentation":
        threshold = float(arg) if arg else 0.5
        if len(shape) == 4 and shape[1] == 1:
            return Task("segmentation", out.name, "mask_iou", 0.95, "set by the user", (("threshold", threshold),))
        return Task("segmentation", out.name, "miou", 0.95, "set by the user")
    return Task("embedding", out.name, "embedding_cosine", 0.99, "set by the user")


def load_metric(spec: str) -> Callable:
    """`package.module:function` or `path/to/file.py:function` → the function (one-line error otherwise)."""
    where, _, name = spec.rpartition(":")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise WorkbenchError(f"metric file {where} does not exist")
            module_spec = importlib.util.spec_from_file_location(f"workbench_user_metric_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except WorkbenchError:
        raise
    except Exception as exc:  # the user's code: any failure to import it is their input
        raise WorkbenchError(f"could not load metric {spec}: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise WorkbenchError(f"{where} has no function {name!r} (a metric is fn(outputs, reference, data) -> float)")
    return fn


# ---------------------------------------------------------------- scorers

# A top-1 flip between classes FP32 itself nearly ties on (softmax probabilities within this margin) is not a
# failure of the quantized model: the confident agreement counts only the samples FP32 decides clearly.
CONFIDENT_MARGIN = 0.1


def classification(x: np.ndarray, ref: np.ndarray, threshold: float | None = None) -> TaskResult:
    x, ref = x.reshape(len(x), -1), ref.reshape(len(ref), -1)
    if x.shape[1] == 1:
        same = ((x[:, 0] >= threshold) == (ref[:, 0] >= threshold)).astype(float)
        return TaskResult({"decision_agreement": float(same.mean())}, same)
    top1 = ref.argmax(1)
    same = (x.argmax(1) == top1).astype(float)
    k = min(5, x.shape[1])
    top5 = (np.argsort(-x, axis=1)[:, :k] == top1[:, None]).any(1).astype(float)
    p = _probabilities(ref)
    ordered = np.sort(p, axis=1)
    confident = ordered[:, -1] - ordered[:, -2] >= CONFIDENT_MARGIN
    agreement = float(same[confident].mean()) if confident.any() else 1.0
    per = np.where(confident, same, 1.0)
    return TaskResult({"top1_agreement_confident": agreement, "top1_agreement": float(same.mean()),
                       "top5_agreement": float(top5.mean()), "confident_samples": float(confident.sum())}, per)


def _probabilities(a: np.ndarray) -> np.ndarray:
    """Rows as probabilities: as they are when they already are (non-negative, summing to 1), else softmax."""
    a = a.astype(np.float64)
    if (a >= 0).all() and np.allclose(a.sum(1), 1.0, atol=1e-3):
        return a
    e = np.exp(a - a.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def embedding(x: np.ndarray, ref: np.ndarray) -> TaskResult:
    a = x.reshape(len(x), -1).astype(np.float64)
    b = ref.reshape(len(ref), -1).astype(np.float64)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    return TaskResult({"embedding_cosine": float(cos.mean()), "embedding_cosine_worst": float(cos.min())}, cos)


def ctc(x: np.ndarray, ref: np.ndarray, blank: int = 0) -> TaskResult:
    texts = [_ctc_greedy(s, blank) for s in x]
    refs = [_ctc_greedy(s, blank) for s in ref]
    errors = np.array([_edit_distance(t, r) for t, r in zip(texts, refs)], float)
    lengths = np.array([max(len(r), 1) for r in refs], float)
    per = np.clip(1.0 - errors / lengths, 0.0, 1.0)
    return TaskResult({"char_accuracy": float(max(0.0, 1.0 - errors.sum() / lengths.sum())),
                       "exact_match": float(np.mean([t == r for t, r in zip(texts, refs)]))}, per)


def _ctc_greedy(probs: np.ndarray, blank: int) -> list[int]:
    best = probs.argmax(-1)
    keep = np.concatenate([[True], best[1:] != best[:-1]]) & (best != blank)
    return best[keep].tolist()


def _edit_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def segmentation(x: np.ndarray, ref: np.ndarray, threshold: float | None = None) -> TaskResult:
    if x.shape[1] == 1:
        mx, mr = x[:, 0] >= threshold, ref[:, 0] >= threshold
        inter = (mx & mr).reshape(len(x), -1).sum(1)
        union = (mx | mr).reshape(len(x), -1).sum(1)
        per = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        return TaskResult({"mask_iou": float(inter.sum() / union.sum()) if union.sum() else 1.0,
                           "pixel_agreement": float((mx == mr).mean())}, per)
    ax, ar = x.argmax(1), ref.argmax(1)
    ious = []
    for c in np.unique(ar):
        inter, union = np.sum((ax == c) & (ar == c)), np.sum((ax == c) | (ar == c))
        ious.append(inter / union)
    per = (ax == ar).reshape(len(x), -1).mean(1)
    return TaskResult({"miou": float(np.mean(ious)) if ious else 1.0, "pixel_agreement": float((ax == ar).mean())},
                      per)


# detection: Ultralytics' defaults for prediction (conf 0.25, NMS IoU 0.45 as its val uses 0.7 and predict 0.7;
# 0.45 is YOLOv5's and NudeNet's), boxes matched to FP32's at IoU 0.5
SCORE_THRESHOLD, NMS_IOU, MATCH_IOU, MAX_DETECTIONS = 0.25, 0.45, 0.5, 300


def detection(x: np.ndarray, ref: np.ndarray, layout: str = "v8", classes: int = 80, names: tuple = ()
              ) -> TaskResult:
    matched = found = expected = 0
    per = np.empty(len(x))
    for i in range(len(x)):
        mine, theirs = decode_yolo(x[i], layout), decode_yolo(ref[i], layout)
        m = match_boxes(mine, theirs)
        matched, found, expected = matched + m, found + len(mine[0]), expected + len(theirs[0])
        per[i] = 1.0 if not len(mine[0]) and not len(theirs[0]) else 2 * m / (len(mine[0]) + len(theirs[0]))
    recall = matched / expected if expected else 1.0
    precision = matched / found if found else (1.0 if not expected else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return TaskResult({"box_f1": f1, "box_recall": recall, "box_precision": precision,
                       "fp32_boxes": float(expected), "boxes": float(found)}, per)


def decode_yolo(head: np.ndarray, layout: str = "v8", conf: float = SCORE_THRESHOLD, iou: float = NMS_IOU
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw head → (boxes xyxy, scores, classes) after the score threshold and class-aware NMS."""
    rows = head.T if layout == "v8" else head  # [anchors, 4 + classes (+1)]
    rows = np.asarray(rows, np.float64)
    if layout == "v5":
        cls = rows[:, 5:] * rows[:, 4:5]
    else:
        cls = rows[:, 4:]
    classes = cls.argmax(1)
    scores = cls[np.arange(len(cls)), classes]
    keep = np.isfinite(scores) & (scores >= conf)
    boxes = _xyxy(rows[keep, :4])
    scores, classes = scores[keep], classes[keep]
    order = np.argsort(-scores, kind="stable")[:30000]
    boxes, scores, classes = boxes[order], scores[order], classes[order]
    chosen = _nms(boxes + classes[:, None] * 1e5, scores, iou)[:MAX_DETECTIONS]
    return boxes[chosen], scores[chosen], classes[chosen]


def _xyxy(b: np.ndarray) -> np.ndarray:
    return np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` with every box of `b` (xyxy)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda z: np.prod(np.clip(z[:, 2:] - z[:, :2], 0, None), axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy NMS over boxes sorted by descending score."""
    keep: list[int] = []
    alive = np.ones(len(boxes), bool)
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        keep.append(i)
        if i + 1 < len(boxes):
            alive[i + 1:] &= _iou(boxes[i:i + 1], boxes[i + 1:])[0] <= iou
    return keep


def match_boxes(mine: tuple, theirs: tuple, iou: float = MATCH_IOU) -> int:
    """Candidate detections matched one-to-one to FP32's of the same class at IoU ≥ `iou`, highest score first."""
    if not len(mine[0]) or not len(theirs[0]):
        return 0
    overlap = _iou(mine[0], theirs[0])
    overlap[mine[2][:, None] != theirs[2][None, :]] = 0.0
    used = np.zeros(len(theirs[0]), bool)
    count = 0
    for i in np.argsort(-mine[1], kind="stable"):
        row = np.where(used, -1.0, overlap[i])
        j = int(row.argmax())
        if row[j] >= iou:
            used[j], count = True, count + 1
    return count


# ---------------------------------------------------------------- one sample, in the task's terms

def _label(c: int, names: tuple) -> str:
    return str(names[c]) if 0 <= c < len(names) else str(c)


def _classification_readout(x: np.ndarray, ref: np.ndarray, threshold: float | None = None, names: tuple = ()
                            ) -> dict:
    x, ref = x.reshape(1, -1), ref.reshape(1, -1)
    if x.shape[1] == 1:
        def say(a: np.ndarray) -> str:
            return f"{a[0, 0]:.3f} → {'yes' if a[0, 0] >= threshold else 'no'}"
        return {"fp32": say(ref), "candidate": say(x)}

    def top5(a: np.ndarray) -> str:
        p = _probabilities(a)[0]
        return ", ".join(f"{_label(int(c), names)} {p[c]:.2f}" for c in np.argsort(-p)[:5])
    return {"fp32": "top-5 " + top5(ref), "candidate": "top-5 " + top5(x)}


def _detection_readout(x: np.ndarray, ref: np.ndarray, layout: str = "v8", classes: int = 80, names: tuple = ()
                       ) -> dict:
    mine, theirs = decode_yolo(x[0], layout), decode_yolo(ref[0], layout)
    matched = match_boxes(mine, theirs)

    def say(found: tuple) -> str:
        listed = ", ".join(f"{_label(int(c), names)} {s:.2f}" for s, c in zip(found[1][:6], found[2][:6]))
        count = f"{len(found[0])} box{'' if len(found[0]) == 1 else 'es'}"
        return count + (f": {listed}" if listed else "") + (" …" if len(found[0]) > 6 else "")

    def boxes(found: tuple) -> list[list[float]]:
        return [[*map(float, b), float(s), int(c)] for b, s, c in zip(*found)]
    return {"fp32": say(theirs), "candidate": f"{say(mine)}; {matched} of FP32's matched",
            "boxes": {"fp32": boxes(theirs), "candidate": boxes(mine)}}


def _ctc_readout(x: np.ndarray, ref: np.ndarray, blank: int = 0) -> dict:
    mine, theirs = _ctc_greedy(x[0], blank), _ctc_greedy(ref[0], blank)

    def say(symbols: list[int]) -> str:
        return f"{len(symbols)} symbols: " + " ".join(map(str, symbols[:24])) + (" …" if len(symbols) > 24 else "")
    return {"fp32": say(theirs), "candidate": f"{say(mine)} ({_edit_distance(mine, theirs)} edits)"}


def _segmentation_readout(x: np.ndarray, ref: np.ndarray, threshold: float | None = None) -> dict:
    if x.shape[1] == 1:
        mx, mr = x[0, 0] >= threshold, ref[0, 0] >= threshold
        union = (mx | mr).sum()
        iou = (mx & mr).sum() / union if union else 1.0
        return {"fp32": f"mask {mr.mean():.1%} of pixels",
                "candidate": f"mask {mx.mean():.1%} of pixels, IoU {iou:.3f}"}
    ax, ar = x[0].argmax(0), ref[0].argmax(0)
    return {"fp32": f"{len(np.unique(ar))} classes present",
            "candidate": f"{len(np.unique(ax))} classes present, {(ax == ar).mean():.1%} of pixels agree"}


_READOUTS: dict[str, Callable[..., dict]] = {
    "classification": _classification_readout, "detection": _detection_readout, "ctc": _ctc_readout,
    "segmentation": _segmentation_readout,
}

_SCORERS: dict[str, Callable[..., TaskResult]] = {
    "classification": classification, "detection": detection, "ctc": ctc, "segmentation": segmentation,
    "embedding": embedding,
}
