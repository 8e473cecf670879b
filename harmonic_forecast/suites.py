"""Named fixed-seed synthetic test sets: the training distribution (``synthetic``) and one step outside it (``shift``).

``synthetic``: bands (3,10), (3,20), (3,45), (40,46) of the seed's integer-period grid, each clean and at
σ = 0.1, plus (3,45) at σ = 0.03 and 0.3. ``shift``: one set per signal family of
:class:`~harmonic_forecast.signals.SignalSpec` that the grid does not hold (continuous, short and long
periods, pure tones, linear amplitude drift, level and trend, a random walk under seasonal components and
one that dominates a tone, a level shift under seasonal components), each clean and at σ = 0.1, and the
grid's signals under heavy-tailed and coloured noise. Every set is drawn from the stream's ``test`` split
with a fixed seed, so every model is scored on the same windows.
"""

from __future__ import annotations

from typing import Any

from harmonic_forecast.signals import SignalSpec, set_label

TEST_BANDS = ((3, 10), (3, 20), (3, 45), (40, 46))
NOISE_LEVELS = (0.0, 0.1)
NOISE_SWEEP = ((3, 45), (0.03, 0.3))  # further noise levels, on the widest band

SHIFT_FAMILIES: dict[str, dict[str, Any]] = {
    "continuous periods 10..100": {"components": (3, 45), "periods": (10.0, 100.0), "integer_periods": False},
    "periods 2..10": {"components": (1, 6), "periods": (2, 10)},
    "continuous periods 2..10": {"components": (1, 6), "periods": (2.0, 10.0), "integer_periods": False},
    "periods 100..1000": {"components": (1, 6), "periods": (100.0, 1000.0), "integer_periods": False},
    "pure tone": {"components": (1, 2), "periods": (2.0, 100.0), "integer_periods": False},
    "linear drift": {"components": (3, 45), "drift": "linear", "drift_range": (0.5, 1.5)},
    "level + trend": {"components": (3, 45), "level": (-2.0, 2.0), "trend": (-0.02, 0.02)},
    "seasonal + random walk": {"components": (1, 4), "random_walk": 0.05},
    "random walk over a tone": {"components": (1, 2), "random_walk": 1.0},  # the walk dominates: naive is hard to beat
    "seasonal + level shift": {"components": (1, 4), "level_shift": (-2.0, 2.0)},  # a structural break
}
SHIFT_NOISES: dict[str, dict[str, Any]] = {
    "laplace noise": {"noise_kind": "laplace"},
    "student-t noise (ν=3)": {"noise_kind": "student_t", "noise_df": 3.0},
    "AR(1) noise (φ 0.5..0.95)": {"noise_kind": "ar1", "noise_phi": (0.5, 0.95)},
}
SHIFT_NOISE_LEVEL = 0.1


def synthetic_sets(lookback: int, horizon: int) -> dict[str, SignalSpec]:
    """Name -> spec of the in-distribution sets, e.g. ``"(3,45) σ=0.1"``."""
    bands = [(band, noise) for band in TEST_BANDS for noise in NOISE_LEVELS]
    bands += [(NOISE_SWEEP[0], noise) for noise in NOISE_SWEEP[1]]
    return {
        set_label(band, noise): SignalSpec(lookback=lookback, horizon=horizon, components=band, noise=noise)
        for band, noise in bands
    }


def shift_sets(lookback: int, horizon: int) -> dict[str, SignalSpec]:
    """Name -> spec of the out-of-distribution sets, e.g. ``"pure tone σ=0.1"``."""
    sets = {}
    for name, fields in SHIFT_FAMILIES.items():
        for noise in NOISE_LEVELS:
            label = f"{name} " + ("clean" if noise == 0 else f"σ={noise:g}")
            sets[label] = SignalSpec(lookback=lookback, horizon=horizon, noise=noise, **fields)
    for name, fields in SHIFT_NOISES.items():
        label = f"{name} σ={SHIFT_NOISE_LEVEL:g}"
        sets[label] = SignalSpec(lookback=lookback, horizon=horizon, noise=SHIFT_NOISE_LEVEL, **fields)
    return sets


SUITES = {"synthetic": synthetic_sets, "shift": shift_sets}
