"""Speech-like audio made here (no recordings ship on the package index): a source-filter vowel synthesizer.

Syllables are glottal pulse trains (pitch 85-260 Hz with intonation and jitter) through three formant resonators
of five vowels, with fricative noise bursts between some syllables, pauses, and room noise at 15-40 dB SNR. It has
the level dynamics, harmonic structure and spectral envelope of voiced speech, which is what a VAD or a
wake-word front end reacts to; it carries no words.
"""
from __future__ import annotations

import numpy as np

RATE = 16000
# (F1, F2, F3) in Hz of the vowels /a/, /e/, /i/, /o/, /u/ (adult averages)
FORMANTS = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240))


def _resonator(signal: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    from scipy.signal import lfilter

    r = np.exp(-np.pi * bandwidth / RATE)
    theta = 2 * np.pi * freq / RATE
    a = [1.0, -2 * r * np.cos(theta), r * r]
    return lfilter([1.0 - r], a, signal)


def _syllable(rng: np.random.Generator, seconds: float) -> np.ndarray:
    n = int(seconds * RATE)
    f0 = rng.uniform(85, 260) * np.linspace(1.0, rng.uniform(0.8, 1.2), n)  # intonation
    f0 *= 1 + 0.01 * rng.standard_normal(n).cumsum() / np.sqrt(n)  # jitter
    phase = np.cumsum(f0 / RATE)
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal period
    source = np.convolve(pulses, np.hanning(24), mode="same")
    voiced = sum(_resonator(source, f, 60 + 0.05 * f) * g
                 for f, g in zip(FORMANTS[rng.integers(len(FORMANTS))], (1.0, 0.6, 0.3)))
    envelope = np.sin(np.linspace(0, np.pi, n)) ** 0.6
    return voiced * envelope


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Mono float32 audio at 16 kHz in [-1, 1]."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    total = int(seconds * RATE)
    parts: list[np.ndarray] = [np.zeros(int(rng.uniform(0.05, 0.3) * RATE))]
    while sum(len(p) for p in parts) < total:
        parts.append(_syllable(rng, rng.uniform(0.12, 0.32)))
        if rng.random() < 0.35:  # fricative: high-passed noise burst
            noise = lfilter([1, -0.95], [1], rng.standard_normal(int(rng.uniform(0.04, 0.12) * RATE)))
            parts.append(0.15 * noise * np.hanning(len(noise)))
        if rng.random() < 0.3:
            parts.append(np.zeros(int(rng.uniform(0.05, 0.4) * RATE)))
    audio = np.concatenate(parts)[:total]
    audio /= max(np.abs(audio).max(), 1e-9)
    audio *= rng.uniform(0.2, 0.9)  # loudness
    snr_db = rng.uniform(15, 40)
    audio += rng.standard_normal(total) * np.sqrt(np.mean(audio ** 2) / 10 ** (snr_db / 10))
    return np.clip(audio, -1, 1).astype(np.float32)
