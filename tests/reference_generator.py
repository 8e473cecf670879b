"""A straightforward per-signal numpy version of the seed notebook's generator (the test oracle).

Deliberately slow and literal: one signal at a time, one component at a time, drawn from a seeded
numpy Generator. The fast stream must match its distributions, not its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ReferenceSignal:
    """One signal and the parameters it was drawn with."""

    signal: np.ndarray
    periods: np.ndarray
    phases: np.ndarray
    amplitudes: np.ndarray


def generate_signal(
    rng: np.random.Generator,
    num_samples: int = 110,
    components: tuple[int, int] = (3, 45),
    periods: tuple[int, int] = (10, 100),
    noise: float = 0.0,
) -> ReferenceSignal:
    """The seed's ``generate_signal``: K components, sum of sines, divided by max |x|, optional noise."""
    k = rng.integers(*components)
    drawn_periods = rng.integers(*periods, k)
    phases = rng.random(k) * 2 * np.pi
    amplitudes = rng.random(k)
    amplitudes /= np.sum(amplitudes)
    t = np.arange(num_samples)
    signal = np.zeros(num_samples)
    for amplitude, period, phase in zip(amplitudes, drawn_periods, phases, strict=True):
        signal += amplitude * np.sin(2 * np.pi * (1 / period) * t + phase)
    signal /= np.max(np.abs(signal))
    if noise > 0:
        signal += rng.normal(0, noise, signal.shape)
        signal /= np.max(np.abs(signal))
    return ReferenceSignal(signal, drawn_periods, phases, amplitudes)


def generate_many(count: int, seed: int = 0, **kwargs: object) -> list[ReferenceSignal]:
    """``count`` reference signals from one seeded generator."""
    rng = np.random.default_rng(seed)
    return [generate_signal(rng, **kwargs) for _ in range(count)]
