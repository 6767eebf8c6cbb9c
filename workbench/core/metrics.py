"""One definition of every accuracy metric (docs/DESIGN.md), computed in a streaming way over batches.

SQNR (dB) = 20·log10(‖ref‖ / ‖ref − x‖) over all samples flattened (identical tensors report SQNR_CAP_DB);
cosine = ⟨ref, x⟩ / (‖ref‖·‖x‖) over all samples flattened; max and mean absolute difference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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

    def track_channels(self, ref: np.ndarray) -> None:
        """Accumulate the reference's energy per channel (axis 1 of NCHW, last axis of [batch, ..., hidden])."""
        a = np.asarray(ref, dtype=np.float64)
        if a.size:
            self.ref_amax = max(self.ref_amax, float(np.abs(a).max()))
        if a.ndim < 2:
            return
        axis = 1 if a.ndim == 4 else a.ndim - 1
        per_channel = np.square(a).sum(axis=tuple(i for i in range(a.ndim) if i != axis))
        self.channel_sq = per_channel if self.channel_sq is None else self.channel_sq + per_channel

    def channel_rms(self) -> np.ndarray | None:
        if self.channel_sq is None or not self.count:
            return None
        return np.sqrt(self.channel_sq * len(self.channel_sq) / self.count)

    def update(self, ref: np.ndarray, x: np.ndarray) -> None:
        if is_categorical(ref):
            self.integer = True
            self.equal += int(np.count_nonzero(np.asarray(ref).ravel() == np.asarray(x).ravel()))
        r = np.ascontiguousarray(ref, dtype=np.float32).ravel()
        v = np.ascontiguousarray(x, dtype=np.float32).ravel()
        if r.shape != v.shape:
            raise ValueError(f"shape mismatch {np.shape(ref)} vs {np.shape(x)}")
        with np.errstate(over="ignore", invalid="ignore"):
            d = r - v
            sums = (float(np.dot(r, r)), float(np.dot(v, v)), float(np.dot(d, d)))
        if not all(map(math.isfinite, sums)):  # e.g. attention masks near ±3.4e38: redo in float64
            r, v = r.astype(np.float64), v.astype(np.float64)
            d = r - v
            sums = (float(np.dot(r, r)), float(np.dot(v, v)), float(np.dot(d, d)))
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

