"""Fixtures shared by the tests and the benchmarks: tiny run configs and the seed-style generator.

:func:`tiny_config` is the engine tests' run config: two short stages of a small ``wiener_gru``
(a GRU residual network over the cheapest skip path to fit), changed by settings in the
syntax of ``train --set`` (``"stages.1.steps=2"``) or by tables merged into a section (a ``None``
value removes that key). :func:`write_config` writes a config as TOML (``tomli_w``).

:func:`seed_style_signal` is the seed notebook's ``generate_signal``, one numpy signal at a time:
the oracle the stream's distribution tests compare against. :class:`SeedStyleSignals` serves it as
the notebook did (a map-style ``Dataset``, one signal per ``__getitem__``); the benchmarks time it
as the baseline pipeline.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from harmonic_forecast.config import apply_overrides

TINY: dict[str, Any] = {
    "train": {
        "batch_size": 32,
        "lr": 3e-3,
        "warmup_steps": 3,
        "log_every": 5,
        "checkpoint_every": 5,
        "keep_last": 2,
    },
    "eval": {"every": 4, "batches": 1, "batch_size": 64},
    "signal": {"lookback": 100, "horizon": 10},
    "model": {"kind": "wiener_gru", "hidden": 16, "encoder_width": 16},
    "stages": [
        {"components": [3, 5], "steps": 13},
        {"components": [3, 8], "steps": 7, "noise": 0.05},
    ],
}


def tiny_config(*settings: str, **tables: dict[str, Any] | list[Any]) -> dict[str, Any]:
    """A copy of :data:`TINY` with ``tables`` merged into its sections, then ``settings`` applied.

    ``tables`` maps a section to a table whose keys replace the section's (``None`` removes a key),
    or to a list (``stages``), which replaces it. ``settings`` are ``"key.sub=value"`` strings, as
    ``train --set`` takes them. Raises :class:`~harmonic_forecast.errors.ConfigError` for a bad setting.
    """
    values = copy.deepcopy(TINY)
    for section, table in tables.items():
        if isinstance(table, dict):
            merged = {**values.get(section, {}), **table}
            values[section] = {key: value for key, value in merged.items() if value is not None}
        else:
            values[section] = copy.deepcopy(table)
    return apply_overrides(values, settings)


def write_config(directory: Path, config: dict[str, Any] | str | None = None, name: str = "tiny.toml") -> Path:
    """Write ``config`` (a table, TOML text, or :func:`tiny_config`'s default) to ``directory/name``."""
    import tomli_w

    path = Path(directory) / name
    text = config if isinstance(config, str) else tomli_w.dumps(tiny_config() if config is None else config)
    path.write_text(text)
    return path


@dataclass
class ReferenceSignal:
    """One seed-style signal ``[num_samples]`` float64 and the parameters it was drawn with."""

    signal: np.ndarray
    periods: np.ndarray
    phases: np.ndarray
    amplitudes: np.ndarray


def seed_style_signal(
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


class SeedStyleSignals(Dataset):
    """The seed notebook's pipeline: one :func:`seed_style_signal` per item, as ``(lookback, target)`` float32.

    Items are random draws (the index is ignored, as in the notebook); ``size`` is the nominal length.
    """

    def __init__(
        self,
        components: tuple[int, int],
        lookback: int = 100,
        horizon: int = 10,
        periods: tuple[int, int] = (10, 100),
        size: int = 1 << 20,
        seed: int = 0,
    ) -> None:
        self.components, self.lookback, self.horizon, self.periods, self.size = (
            components,
            lookback,
            horizon,
            periods,
            size,
        )
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = seed_style_signal(self.rng, self.lookback + self.horizon, self.components, self.periods).signal
        lookback, target = x[: self.lookback], x[self.lookback :]
        return torch.tensor(lookback, dtype=torch.float32), torch.tensor(target, dtype=torch.float32)
