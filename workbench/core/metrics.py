"""One definition of every accuracy metric (docs/DESIGN.md), computed in a streaming way over batches.

SQNR (dB) = 20·log10(‖ref‖ / ‖ref − x‖) and cosine = ⟨ref, x⟩ / (‖ref‖·‖x‖), per sample (the verdict, the layer
table, the ranking: `OutputScorer`, `RunningStats.sample_*`) and pooled over all samples flattened (information);
identical tensors report SQNR_CAP_DB; max and mean absolute difference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SQNR_CAP_DB = 200.0  # reported for bit-identical tensors, so JSON never holds Infinity


def is_categorical(values: np.ndarray) -> bool:
    """Integer or boolean values (labels, indices): scored by agreement, not as a signal (see RunningStats)."""
    return np.asarray(values).dtype.kind in "iub"


@dataclass
class RunningStats:
    """Sums that give SQNR, cosine, max/mean abs diff for all batches seen, without keeping the tensors.

    Products are taken in float32 (BLAS) and summed across batches in float64; cosine is derived from the error
    energy (see `cosine`), so it stays accurate even when 1 − cosine is far below float32 resolution.
    """

    ref_sq: float = 0.0
    x_sq: float = 0.0
    err_sq: float = 0.0
    abs_sum: float = 0.0
    max_abs: float = 0.0
    count: int = 0
    channel_sq: np.ndarray | None = None  # per-channel Σref² when tracked (see track_channels)
    ref_amax: float = 0.0  # max |ref| when tracked
    nonfinite: int = 0  # NaN/Inf values in the candidate (or the reference)
    # Integer outputs (class labels, indices, counts) are categories, not signals: cosine and SQNR of label ids
    # mean nothing, so they are judged by agreement (share of identical values).
    integer: bool = False
    equal: int = 0
    # per-sample (Σref², Σx², Σerr²) rows, when `update` is told how many samples a batch holds: the per-sample
    # figures (sample_figures) that first divergence and the ranking use, as the verdict does
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)

    def track_channels(self, ref: np.ndarray) -> None:
        """Accumulate the reference's energy per channel (axis 1 of NCHW, last axis of [batch, ..., hidden])."""
        a = np.asarray(ref)
        if not np.issubdtype(a.dtype, np.floating):
            a = a.astype(np.float64)
        if a.size:
            self.ref_amax = max(self.ref_amax, float(np.abs(a).max()))
        if a.ndim < 2:
            return
        axis = 1 if a.ndim == 4 else a.ndim - 1
        # einsum casts to float64 chunk by chunk: the same sums without a float64 copy of the tensor (6× faster)
        rows = np.moveaxis(a, axis, -1).reshape(-1, a.shape[axis])
        per_channel = np.einsum("ij,ij->j", rows, rows, dtype=np.float64)
        self.channel_sq = per_channel if self.channel_sq is None else self.channel_sq + per_channel

    def channel_rms(self) -> np.ndarray | None:
        if self.channel_sq is None or not self.count:
            return None
        return np.sqrt(self.channel_sq * len(self.channel_sq) / self.count)

    def update(self, ref: np.ndarray, x: np.ndarray, samples: int | None = None) -> None:
        """Add a batch; with `samples`, the batch's samples on its first axis (or that axis holding samples ×
        something, batch-major) are also summed one by one."""
        if is_categorical(ref):
            self.integer = True
            self.equal += int(np.count_nonzero(np.asarray(ref).ravel() == np.asarray(x).ravel()))
        r = np.ascontiguousarray(ref, dtype=np.float32).ravel()
        v = np.ascontiguousarray(x, dtype=np.float32).ravel()
        if r.shape != v.shape:
            raise ValueError(f"shape mismatch {np.shape(ref)} vs {np.shape(x)}")
        shape = np.shape(ref)
        by_sample = bool(samples) and r.size > 0 and len(shape) > 0 and shape[0] % samples == 0
        rows = samples if by_sample else 1

        def row_sums(r: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], tuple[float, ...]]:
            """(r − v, per-row Σr², Σv², Σ(r − v)², their totals)."""
            with np.errstate(over="ignore", invalid="ignore"):
                d = r - v
                per = [np.einsum("ij,ij->i", a.reshape(rows, -1), a.reshape(rows, -1)) for a in (r, v, d)]
                return d, per, tuple(float(p.sum(dtype=np.float64)) for p in per)

        d, per, sums = row_sums(r, v)
        if not all(map(math.isfinite, sums)):  # e.g. attention masks near ±3.4e38: redo in float64
            r, v = r.astype(np.float64), v.astype(np.float64)
            d, per, sums = row_sums(r, v)
        if by_sample:
            self.rows.append(tuple(p.astype(np.float64) for p in per))
        self.ref_sq += sums[0]
        self.x_sq += sums[1]
        self.err_sq += sums[2]
        np.abs(d, out=d)
        # finite sums mean every difference is finite: the element-wise check only runs when one is not
        bad = 0 if all(map(math.isfinite, sums)) else int(d.size - np.count_nonzero(np.isfinite(d)))
        self.nonfinite += bad
        if bad:
            d = d[np.isfinite(d)]
        if d.size:
            self.abs_sum += float(d.sum(dtype=np.float64))
            self.max_abs = max(self.max_abs, float(d.max()))
        self.count += r.size

    @property
    def finite(self) -> bool:
        return not self.nonfinite and all(map(math.isfinite, (self.ref_sq, self.x_sq, self.err_sq)))

    @property
    def sqnr_db(self) -> float:
        """Non-finite values (an Inf/NaN in the candidate) count as the worst possible SQNR."""
        if not self.finite:
            return -SQNR_CAP_DB
        if self.err_sq == 0.0:
            return SQNR_CAP_DB
        if self.ref_sq == 0.0:
            return -SQNR_CAP_DB
        return min(SQNR_CAP_DB, 10.0 * math.log10(self.ref_sq / self.err_sq))

    @property
    def cosine(self) -> float:
        if not self.finite:
            return 0.0
        if self.ref_sq == 0.0 and self.x_sq == 0.0:
            return 1.0
        if self.ref_sq == 0.0 or self.x_sq == 0.0:
            return 0.0
        # 2⟨r,x⟩ = ‖r‖² + ‖x‖² − ‖r−x‖² = (‖r‖ − ‖x‖)² + 2‖r‖‖x‖ − ‖r−x‖²
        norms = math.sqrt(self.ref_sq * self.x_sq)
        gap = (math.sqrt(self.ref_sq) - math.sqrt(self.x_sq)) ** 2
        return max(-1.0, min(1.0, 1.0 - (self.err_sq - gap) / (2.0 * norms)))

    def sample_figures(self) -> dict[str, float]:
        """The per-sample figures in one pass over the per-sample sums (empty references scored against the data's
        typical energy, as the verdict does): `relative_noise`, the mean over samples of each sample's noise power
        over its signal power (what 1 − the mean per-sample cosine tracks, about half of it), `sqnr_db` that mean in
        dB (a few collapsed samples pull it down; the pooled SQNR hides them under the loud ones), `cosine` the mean
        per-sample cosine and `sqnr_worst_db` the worst sample; the pooled figures without per-sample sums."""
        if self.rows:
            rr, xx, ee = (np.concatenate([row[i] for row in self.rows]) for i in range(3))
            cos, sqnr, _ = sample_scores(rr, xx, ee, ~(np.isfinite(rr) & np.isfinite(xx) & np.isfinite(ee)))
            noise, cosine, worst = float(np.mean(10.0 ** (-sqnr / 10.0))), float(cos.mean()), float(sqnr.min())
        else:
            noise, cosine, worst = self.relative_noise, self.cosine, self.sqnr_db
        if not math.isfinite(noise):
            db = -SQNR_CAP_DB
        else:
            db = SQNR_CAP_DB if noise <= 0 else max(-SQNR_CAP_DB, min(SQNR_CAP_DB, -10.0 * math.log10(noise)))
        return {"relative_noise": noise, "sqnr_db": db, "cosine": cosine, "sqnr_worst_db": worst}

    @property
    def sample_sqnr_db(self) -> float:
        """The mean per-sample relative noise in dB (sample_figures)."""
        return self.sample_figures()["sqnr_db"]

    @property
    def agreement(self) -> float:
        """Share of identical values (integer tensors)."""
        return self.equal / self.count if self.count else 1.0

    @property
    def reference_rms(self) -> float:
        """Typical magnitude of the reference tensor: sqrt(mean(ref²))."""
        return math.sqrt(self.ref_sq / self.count) if self.count and math.isfinite(self.ref_sq) else float("nan")

    @property
    def mean_abs(self) -> float:
        return self.abs_sum / self.count if self.count else 0.0

    @property
    def relative_noise(self) -> float:
        """‖ref − x‖² / ‖ref‖²: noise power as a fraction of signal power (10^(−SQNR/10))."""
        if not self.finite:
            return float("inf")
        return self.err_sq / self.ref_sq if self.ref_sq else (0.0 if self.err_sq == 0 else 1.0)

    def summary(self) -> dict:
        """Metrics; a tensor with NaN/Inf reports `nonfinite` > 0 and the worst SQNR, never "identical"."""
        out = {"sqnr_db": self.sqnr_db, "cosine": self.cosine, "max_abs": self.max_abs, "mean_abs": self.mean_abs}
        if self.nonfinite:
            out["nonfinite"] = self.nonfinite
        if self.integer:
            out["agreement"] = self.agreement
        return out



# ---------------------------------------------------------------- per-sample statistics (the verdict)

# A sample whose reference RMS is below this share of the dataset's is "empty" (a text map of a photo without text,
# silence): its cosine means nothing, so it is scored by its error against the dataset's typical magnitude.
EMPTY_FRACTION = 1e-2
WORST_LISTED = 5  # worst samples named in a result
# Channels whose RMS differ by this factor or more across a contiguous split carry different quantities (a
# detection head's pixel boxes beside its 0..1 scores) and are scored as separate groups.
GROUP_SCALE_RATIO = 10.0
MAX_GROUP_CHANNELS = 4096


def sample_axis(shape: tuple[int, ...], samples: int) -> int | None:
    """The axis that holds a batch's `samples`: 0 when it is there, else the one axis of that size (the first, for
    a single sample); -1 for a single sample whose tensor has no such axis (the whole tensor is the sample); None
    when it cannot be told."""
    if len(shape) and shape[0] == samples:
        return 0
    axes = [i for i, d in enumerate(shape) if d == samples]
    if samples == 1:
        return axes[0] if axes else -1
    return axes[0] if len(axes) == 1 else None


def per_sample(a: np.ndarray, samples: int) -> np.ndarray | None:
    """`a` as a (samples, elements) view, or None when its sample axis cannot be told."""
    a = np.asarray(a)
    axis = sample_axis(a.shape, samples)
    if axis is None:
        return None
    if axis == -1:
        return a.reshape(1, -1)
    return np.moveaxis(a, axis, 0).reshape(samples, -1)


def sample_shape(shape: tuple[int, ...], samples: int) -> tuple[int, ...]:
    """One sample's shape within a batch tensor of `shape` (see sample_axis)."""
    axis = sample_axis(shape, samples)
    if axis is None or axis == -1:
        return tuple(shape)
    return tuple(d for i, d in enumerate(shape) if i != axis)


@dataclass(frozen=True)
class ChannelGroup:
    """Channels [start, stop) of `axis` (counted without the sample axis) that carry one quantity."""

    axis: int
    start: int
    stop: int
    label: str = ""

    def name(self, output: str) -> str:
        return f"{output}[{self.label or f'{self.start}:{self.stop}'}]"


def channel_axis(shape: tuple[int, ...]) -> int | None:
    """The channel axis of one sample's tensor: C of CHW, the short axis of a [C, anchors] / [anchors, C] head,
    the last of [tokens, hidden]; None for vectors and scalars."""
    if len(shape) == 3:
        return 0
    if len(shape) == 2:
        return 0 if shape[0] <= shape[1] else 1
    return None


def channel_groups(values: np.ndarray, samples: int) -> list[ChannelGroup]:
    """Contiguous channel ranges of an output whose scales differ by GROUP_SCALE_RATIO or more (found on the first
    batch): a YOLO head [4 + classes, anchors] splits into its box coordinates and its class scores. Each group is
    at least two channels wide (a single dead channel is not a quantity). Empty when the output is homogeneous."""
    rows = per_sample(values, samples)
    if rows is None or is_categorical(values):
        return []
    shape = sample_shape(np.shape(values), samples)
    axis = channel_axis(shape)
    if axis is None or not 4 <= shape[axis] <= MAX_GROUP_CHANNELS:
        return []
    one = rows.astype(np.float64).reshape(-1, *shape)
    moved = np.moveaxis(one, axis + 1, 1).reshape(one.shape[0], shape[axis], -1)
    with np.errstate(invalid="ignore", over="ignore"):
        rms = np.sqrt(np.mean(np.square(moved), axis=(0, 2)))
    if not np.isfinite(rms).all():
        return []
    return _split(rms, 0, len(rms), axis, depth=2)


def _split(rms: np.ndarray, start: int, stop: int, axis: int, depth: int) -> list[ChannelGroup]:
    best, ratio = None, GROUP_SCALE_RATIO
    for k in range(start + 2, stop - 1):
        left, right = rms[start:k], rms[k:stop]
        r = max(left.min() / max(right.max(), 1e-30), right.min() / max(left.max(), 1e-30))
        if r >= ratio:
            best, ratio = k, r
    if best is None:
        return [] if depth == 2 else [ChannelGroup(axis, start, stop)]
    if depth == 1:
        return [ChannelGroup(axis, start, best), ChannelGroup(axis, best, stop)]
    return _split(rms, start, best, axis, 1) + _split(rms, best, stop, axis, 1)


def select_group(rows: np.ndarray, shape: tuple[int, ...], group: ChannelGroup) -> np.ndarray:
    """The group's channels of (samples, elements) rows of per-sample tensors of `shape`."""
    a = rows.reshape(rows.shape[0], *shape)
    index = [slice(None)] * a.ndim
    index[group.axis + 1] = slice(group.start, group.stop)
    return a[tuple(index)].reshape(rows.shape[0], -1)


@dataclass
class SampleSums:
    """Per-sample Σref², Σx², Σ(ref − x)² of one output (or channel group), appended batch by batch; the
    distribution of per-sample cosine and SQNR comes from them (`stats`)."""

    rr: list[np.ndarray] = field(default_factory=list)
    xx: list[np.ndarray] = field(default_factory=list)
    ee: list[np.ndarray] = field(default_factory=list)
    bad: list[np.ndarray] = field(default_factory=list)  # non-finite values in the sample
    equal: list[np.ndarray] = field(default_factory=list)  # integer outputs: share of identical values
    elements: int = 0  # per sample
    integer: bool = False

    def update(self, ref: np.ndarray, x: np.ndarray) -> None:
        """`ref` and `x` as (samples, elements) rows."""
        self.elements = ref.shape[1]
        if is_categorical(ref):
            self.integer = True
            self.equal.append((ref == x).mean(axis=1) if ref.shape[1] else np.ones(len(ref)))
        r = np.asarray(ref, np.float64)
        v = np.asarray(x, np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            d = r - v
            rr, xx, ee = np.einsum("ij,ij->i", r, r), np.einsum("ij,ij->i", v, v), np.einsum("ij,ij->i", d, d)
        self.bad.append(~(np.isfinite(rr) & np.isfinite(xx) & np.isfinite(ee)))
        self.rr.append(rr)
        self.xx.append(xx)
        self.ee.append(ee)

    def stats(self, name: str, first_index: int = 0) -> "OutputStats":
        rr, xx, ee = (np.concatenate(a) if a else np.zeros(0) for a in (self.rr, self.xx, self.ee))
        bad = np.concatenate(self.bad) if self.bad else np.zeros(0, bool)
        cos, sqnr, empty = sample_scores(rr, xx, ee, bad, scalar=self.elements == 1)
        pooled = RunningStats(ref_sq=float(rr[~bad].sum()), x_sq=float(xx[~bad].sum()), err_sq=float(ee[~bad].sum()),
                              nonfinite=int(bad.sum()), count=len(rr) * self.elements)
        agreement = np.concatenate(self.equal) if self.integer and self.equal else None
        return OutputStats.of(name, cos, sqnr, empty, pooled, agreement, first_index)


def sample_scores(rr: np.ndarray, xx: np.ndarray, ee: np.ndarray, bad: np.ndarray, scalar: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample cosine, SQNR (dB) and the empty-reference mask from per-sample sums.

    Cosine comes from the error energy (exact near 1, as RunningStats.cosine); a sample with NaN/Inf scores cosine 0
    and −SQNR_CAP_DB. An empty reference (RMS below EMPTY_FRACTION of the dataset's) is scored against the dataset's
    typical energy E instead of its own: SQNR = 10·log10(E / Σerr²) and cosine = 1 − Σerr² / (2E), what a sample of
    typical magnitude with that error would read. A sample of one value (a probability, a score) has no direction:
    every sample is scored that way (`scalar`)."""
    good = ~bad
    typical = float(rr[good].mean()) if good.any() else 0.0
    empty = good & ((rr < EMPTY_FRACTION ** 2 * typical) | scalar)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        norms = np.sqrt(rr * xx)
        gap = (np.sqrt(rr) - np.sqrt(xx)) ** 2
        cos = np.where(norms > 0, 1.0 - (ee - gap) / (2.0 * norms), np.where((rr == 0) & (xx == 0), 1.0, 0.0))
        sqnr = np.where(ee == 0, SQNR_CAP_DB, 10.0 * np.log10(rr / ee))
        if typical > 0:
            cos = np.where(empty, 1.0 - ee / (2.0 * typical), cos)
            sqnr = np.where(empty & (ee > 0), 10.0 * np.log10(typical / ee), sqnr)
    cos = np.clip(np.nan_to_num(cos, nan=0.0), -1.0, 1.0)
    sqnr = np.clip(np.nan_to_num(sqnr, nan=-SQNR_CAP_DB), -SQNR_CAP_DB, SQNR_CAP_DB)
    cos[bad], sqnr[bad] = 0.0, -SQNR_CAP_DB
    return cos, sqnr, empty


@dataclass
class OutputStats:
    """One output's (or channel group's) scores against FP32, per sample: the mean, 5th percentile and worst of the
    per-sample cosine and SQNR, the worst samples by index, and the pooled figures (information only: loud samples
    and large-valued channels dominate them)."""

    name: str
    samples: int
    cosine: float
    cosine_p5: float
    cosine_worst: float
    sqnr_db: float
    sqnr_p5_db: float
    sqnr_worst_db: float
    pooled_cosine: float
    pooled_sqnr_db: float
    worst: list[tuple[int, float]] = field(default_factory=list)  # (sample index, cosine), worst first
    empty_samples: int = 0
    nonfinite_samples: int = 0
    group: str | None = None  # the channel group of an output these statistics cover (None: the whole output)
    agreement: float | None = None  # integer outputs: mean share of identical values
    agreement_worst: float | None = None
    per_sample_cosine: np.ndarray = field(default=None, repr=False)
    per_sample_sqnr_db: np.ndarray = field(default=None, repr=False)

    @classmethod
    def of(cls, name: str, cos: np.ndarray, sqnr: np.ndarray, empty: np.ndarray, pooled: RunningStats,
           agreement: np.ndarray | None = None, first_index: int = 0) -> "OutputStats":
        n = len(cos)
        if not n:
            return cls(name, 0, 1.0, 1.0, 1.0, SQNR_CAP_DB, SQNR_CAP_DB, SQNR_CAP_DB, 1.0, SQNR_CAP_DB)
        order = np.argsort(cos, kind="stable")[:WORST_LISTED]
        return cls(
            name, n, float(cos.mean()), float(np.percentile(cos, 5)), float(cos.min()),
            float(sqnr.mean()), float(np.percentile(sqnr, 5)), float(sqnr.min()),
            pooled.cosine, pooled.sqnr_db, [(int(i) + first_index, float(cos[i])) for i in order],
            int(empty.sum()), int(pooled.nonfinite), None,
            None if agreement is None else float(agreement.mean()),
            None if agreement is None else float(agreement.min()), cos, sqnr)

    @property
    def integer(self) -> bool:
        return self.agreement is not None

    def to_dict(self) -> dict:
        out = {"name": self.name, "samples": self.samples, "cosine_mean": self.cosine, "cosine_p5": self.cosine_p5,
               "cosine_worst": self.cosine_worst, "sqnr_mean_db": self.sqnr_db, "sqnr_p5_db": self.sqnr_p5_db,
               "sqnr_worst_db": self.sqnr_worst_db, "pooled_cosine": self.pooled_cosine,
               "pooled_sqnr_db": self.pooled_sqnr_db,
               "worst_samples": [{"index": i, "cosine": c} for i, c in self.worst]}
        if self.empty_samples:
            out["empty_reference_samples"] = self.empty_samples
        if self.nonfinite_samples:
            out["nonfinite"] = self.nonfinite_samples
        if self.agreement is not None:
            out.update(agreement=self.agreement, agreement_worst=self.agreement_worst)
        if self.group is not None:
            out["channel_group"] = self.group
        return out


class OutputScorer:
    """Per-sample statistics of every graph output, and of each channel group of a mixed-scale output, fed one
    batch at a time (compare streams; the evaluator feeds the whole set at once). `groups` names an output's
    channel groups where the model says them (a YOLO head's metadata); otherwise they are found from the values'
    scales on the first batch (channel_groups)."""

    def __init__(self, names: list[str], groups: dict[str, list[ChannelGroup]] | None = None) -> None:
        self.names = list(names)
        self.groups: dict[str, list[ChannelGroup]] | None = dict(groups) if groups is not None else None
        self.sums: dict[str, SampleSums] = {}
        self.pooled_only: dict[str, RunningStats] = {}  # outputs whose sample axis cannot be told
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.samples = 0

    def update(self, reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray], samples: int) -> None:
        if self.groups is None:
            self.groups = {}
        for name in self.names:
            ref, x = np.asarray(reference[name]), np.asarray(outputs[name])
            if ref.shape != x.shape:
                raise ValueError(f"shape mismatch {ref.shape} vs {x.shape} for output {name!r}")
            rows_r, rows_x = per_sample(ref, samples), per_sample(x, samples)
            if rows_r is None or name in self.pooled_only:
                self.pooled_only.setdefault(name, RunningStats()).update(ref, x)
                continue
            shape = self.shapes.setdefault(name, sample_shape(ref.shape, samples))
            if name not in self.groups:  # found on the first batch
                self.groups[name] = channel_groups(ref, samples)
            self.sums.setdefault(name, SampleSums()).update(rows_r, rows_x)
            for g in self.groups[name]:
                if len(shape) > g.axis and shape[g.axis] >= g.stop:
                    self.sums.setdefault(g.name(name), SampleSums()).update(select_group(rows_r, shape, g),
                                                                            select_group(rows_x, shape, g))
        self.samples += samples

    def result(self) -> list[OutputStats]:
        """Each output's statistics, then its channel groups' (named output[start:stop])."""
        groups = {g.name(name): g for name, found in (self.groups or {}).items() for g in found}
        out = []
        for name, sums in self.sums.items():
            stats = sums.stats(name)
            if name in groups:
                stats.group = groups[name].label or f"{groups[name].start}:{groups[name].stop}"
            out.append(stats)
        for name, s in self.pooled_only.items():
            out.append(OutputStats(name, 0, s.cosine, s.cosine, s.cosine, s.sqnr_db, s.sqnr_db, s.sqnr_db,
                                   s.cosine, s.sqnr_db, nonfinite_samples=int(bool(s.nonfinite)),
                                   agreement=s.agreement if s.integer else None,
                                   agreement_worst=s.agreement if s.integer else None))
        return out
