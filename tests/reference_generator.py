"""Per-signal numpy oracles: the seed's generator (in :mod:`harmonic_forecast.testing`) and each family's.

Deliberately slow and literal: one signal at a time, one component at a time, drawn from a seeded
numpy Generator. The fast stream must match its distributions, not its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harmonic_forecast.testing import ReferenceSignal, seed_style_signal


def generate_many(count: int, seed: int = 0, **kwargs: object) -> list[ReferenceSignal]:
    """``count`` reference signals from one seeded generator."""
    rng = np.random.default_rng(seed)
    return [seed_style_signal(rng, **kwargs) for _ in range(count)]


@dataclass
class ReferenceFamilySignal:
    """One signal of a family spec and the per-signal parameters it was drawn with."""

    signal: np.ndarray
    periods: np.ndarray
    level: float
    trend: float
    gain_start: np.ndarray | None
    gain_end: np.ndarray | None
    phi: float | None
    shift: tuple[float, float] | None = None  # (height, time) of the level shift, when drawn


def generate_family_signal(
    rng: np.random.Generator,
    num_samples: int = 110,
    components: tuple[int, int] = (3, 10),
    periods: tuple[float, float] = (10, 100),
    integer_periods: bool = True,
    level: tuple[float, float] = (0.0, 0.0),
    trend: tuple[float, float] = (0.0, 0.0),
    level_shift: tuple[float, float] | None = None,
    linear_drift: tuple[float, float] | None = None,
    random_walk: float = 0.0,
    noise: float = 0.0,
    noise_kind: str = "gaussian",
    noise_df: float = 5.0,
    noise_phi: tuple[float, float] = (0.0, 0.9),
    normalize: bool = True,
) -> ReferenceFamilySignal:
    """The documented family formula, literally: harmonics (optionally with a linear gain g0 -> g1 per
    component), plus level, trend, a level shift (a step of height ~ U[level_shift] at a time ~ U[0, num_samples)
    from then on) and random walk, normalise, plus noise of marginal std ``noise``,
    normalise again."""
    t = np.arange(num_samples, dtype=np.float64)
    k = rng.integers(*components)
    drawn_periods = rng.integers(*periods, k) if integer_periods else rng.uniform(*periods, k)
    phases = rng.random(k) * 2 * np.pi
    amplitudes = rng.random(k)
    amplitudes /= np.sum(amplitudes)
    gain_start = gain_end = None
    if linear_drift is not None:
        gain_start, gain_end = rng.uniform(*linear_drift, k), rng.uniform(*linear_drift, k)
    signal = np.zeros(num_samples)
    for j in range(k):
        wave = amplitudes[j] * np.sin(2 * np.pi * t / drawn_periods[j] + phases[j])
        if gain_start is not None:
            wave *= gain_start[j] + (gain_end[j] - gain_start[j]) * t / (num_samples - 1)
        signal += wave
    drawn_level, drawn_trend = rng.uniform(*level), rng.uniform(*trend)
    signal += drawn_level + drawn_trend * t
    shift = None
    if level_shift is not None:
        shift = (rng.uniform(*level_shift), rng.uniform(0, num_samples))
        signal += shift[0] * (t >= shift[1])
    walk = np.zeros(num_samples)
    for step in range(1, num_samples):
        walk[step] = walk[step - 1] + rng.normal(0, random_walk) if random_walk > 0 else 0.0
    signal += walk
    if normalize:
        signal /= np.max(np.abs(signal))
    phi = None
    if noise > 0:
        if noise_kind == "gaussian":
            extra = rng.normal(0, noise, num_samples)
        elif noise_kind == "laplace":
            extra = rng.laplace(0, noise / np.sqrt(2), num_samples)
        elif noise_kind == "student_t":
            extra = rng.standard_t(noise_df, num_samples) * np.sqrt((noise_df - 2) / noise_df) * noise
        else:
            phi = rng.uniform(*noise_phi)
            innovation = rng.normal(0, 1, num_samples)
            extra = np.zeros(num_samples)
            extra[0] = innovation[0]
            for step in range(1, num_samples):
                extra[step] = phi * extra[step - 1] + np.sqrt(1 - phi**2) * innovation[step]
            extra *= noise
        signal += extra
        if normalize:
            signal /= np.max(np.abs(signal))
    return ReferenceFamilySignal(signal, drawn_periods, drawn_level, drawn_trend, gain_start, gain_end, phi, shift)


def generate_family_many(count: int, seed: int = 0, **kwargs: object) -> list[ReferenceFamilySignal]:
    """``count`` reference family signals from one seeded generator."""
    rng = np.random.default_rng(seed)
    return [generate_family_signal(rng, **kwargs) for _ in range(count)]
