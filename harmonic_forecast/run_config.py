"""A training run's configuration: typed sections read from a TOML file, validated up front.

Sections: ``[train]`` (seed, batch, optimiser, loss, device), ``[eval]``, ``[signal]`` (the base
:class:`SignalSpec`), ``[model]`` and one ``[[stages]]`` table per curriculum stage, each with its
component band, its number of steps and optionally its own noise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmonic_forecast.config import (
    ConfigError,
    load_toml,
    reject_unknown,
    require_choice,
    require_float,
    require_int,
    require_pair,
    require_table,
)
from harmonic_forecast.losses import LOSSES
from harmonic_forecast.model import ModelConfig
from harmonic_forecast.signals import SignalSpec

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Stage:
    """One curriculum stage: signals with ``components`` for ``steps`` optimiser steps."""

    components: tuple[int, int]
    steps: int
    noise: float | None = None


@dataclass(frozen=True)
class TrainSettings:
    """The ``[train]`` section."""

    seed: int = 0
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    loss: str = "weighted_mse"
    device: str = "auto"
    log_every: int = 50


@dataclass(frozen=True)
class EvalSettings:
    """The ``[eval]`` section: validation every ``every`` steps on ``batches`` x ``batch_size`` signals per band."""

    every: int = 500
    batches: int = 4
    batch_size: int = 1024


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs."""

    train: TrainSettings
    eval: EvalSettings
    signal: SignalSpec
    model: ModelConfig
    stages: tuple[Stage, ...]

    @property
    def total_steps(self) -> int:
        """Optimiser steps over all stages."""
        return sum(stage.steps for stage in self.stages)

    def stage_spec(self, stage: Stage) -> SignalSpec:
        """The signal spec of a stage: the base spec with the stage's band (and noise)."""
        noise = self.signal.noise if stage.noise is None else stage.noise
        return self.signal.replace(components=stage.components, noise=noise)


def _settings(cls: type, section: str, values: Any) -> Any:
    values = require_table(section, values)
    reject_unknown(section, values, {field.name for field in dataclasses.fields(cls)})
    settings = cls(**values)
    for field in dataclasses.fields(cls):
        value = getattr(settings, field.name)
        name = f"{section}.{field.name}"
        if field.type == "int":
            require_int(name, value, minimum=0 if field.name in ("seed", "warmup_steps") else 1)
        elif field.type == "float":
            require_float(name, value, minimum=0.0)
    return settings


def _stage(index: int, values: Any) -> Stage:
    section = f"stages[{index}]"
    values = require_table(section, values)
    reject_unknown(section, values, {"components", "steps", "noise"})
    if "components" not in values or "steps" not in values:
        raise ConfigError(f"{section}: needs components = [low, high] and steps")
    noise = values.get("noise")
    return Stage(
        components=require_pair(f"{section}.components", values["components"], integer=True),
        steps=require_int(f"{section}.steps", values["steps"], minimum=1),
        noise=None if noise is None else require_float(f"{section}.noise", noise, minimum=0.0),
    )


def parse_run_config(values: dict[str, Any]) -> RunConfig:
    """Validate a config dict (from TOML) into a :class:`RunConfig`."""
    reject_unknown("config", values, {"train", "eval", "signal", "model", "stages"})
    train = _settings(TrainSettings, "train", values.get("train", {}))
    require_choice("train.loss", train.loss, LOSSES)
    require_choice("train.device", train.device, DEVICES)
    if not train.lr > 0:
        raise ConfigError(f"train.lr: must be > 0, got {train.lr}")
    if not 0 <= train.min_lr_ratio <= 1:
        raise ConfigError(f"train.min_lr_ratio: must be in [0, 1], got {train.min_lr_ratio}")
    signal = SignalSpec.from_dict(require_table("signal", values.get("signal", {})))
    model_values = {**require_table("model", values.get("model", {}))}
    for key in ("lookback", "horizon"):
        if key in model_values:
            raise ConfigError(f"model.{key}: set it in [signal]; the model follows the signal")
    model = ModelConfig.from_dict({**model_values, "lookback": signal.lookback, "horizon": signal.horizon})
    raw_stages = values.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ConfigError("stages: need at least one [[stages]] table")
    stages = tuple(_stage(index, stage) for index, stage in enumerate(raw_stages))
    config = RunConfig(train, _settings(EvalSettings, "eval", values.get("eval", {})), signal, model, stages)
    for stage in stages:
        config.stage_spec(stage)  # validates each stage's band and noise as a SignalSpec
    return config


def load_run_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read, override and validate a TOML run config."""
    return parse_run_config(load_toml(path, overrides))
