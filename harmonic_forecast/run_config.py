"""A training run's configuration: typed sections read from a TOML file, validated up front.

Sections: ``[train]`` (seed, batch, optimiser, loss, device, compilation, checkpoints), ``[eval]``,
``[signal]`` (the base :class:`SignalSpec`, with optional ``[[signal.families]]`` tables: a mixture),
``[model]``, ``[wandb]`` and one ``[[stages]]`` table per curriculum stage: its component band, a
budget in ``steps`` or ``samples``, optionally its own ``lr``, ``noise``, ``drift``, ``families``
(``[[stages.families]]`` tables, replacing the base's) and a promotion rule (``promote_below`` with
``min_steps`` or ``min_samples``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmonic_forecast.config import (
    ConfigError,
    load_toml,
    reject_unknown,
    require_bool,
    require_choice,
    require_float,
    require_int,
    require_pair,
    require_table,
)
from harmonic_forecast.curriculum import Stage
from harmonic_forecast.losses import LOSSES
from harmonic_forecast.model import ModelConfig
from harmonic_forecast.signals import SignalSpec, parse_families, require_noise

DEVICES = ("auto", "cpu", "cuda")


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
    compile: str | bool = "auto"  # torch.compile the training step: true, false or auto (on CUDA only)
    grad_accum: int = 1
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_last: int = 3


@dataclass(frozen=True)
class EvalSettings:
    """The ``[eval]`` section: validation every ``every`` steps on ``batches`` x ``batch_size`` signals per band."""

    every: int = 500
    batches: int = 4
    batch_size: int = 1024


@dataclass(frozen=True)
class WandbSettings:
    """The ``[wandb]`` section: off unless enabled; offline unless ``mode = "online"``."""

    enabled: bool = False
    mode: str = "offline"
    project: str = "harmonic-forecast"
    name: str = ""


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs."""

    train: TrainSettings
    eval: EvalSettings
    signal: SignalSpec
    model: ModelConfig
    stages: tuple[Stage, ...]
    wandb: WandbSettings = WandbSettings()

    @property
    def total_steps(self) -> int:
        """Optimiser steps over all stages."""
        return sum(stage.steps for stage in self.stages)

    def stage_spec(self, stage: Stage) -> SignalSpec:
        """The signal spec of a stage: the base spec with the stage's band (and noise, drift, families)."""
        noise = self.signal.noise if stage.noise is None else stage.noise
        drift = self.signal.drift if stage.drift is None else stage.drift
        families = self.signal.families if stage.families is None else stage.families
        return self.signal.replace(components=stage.components, noise=noise, drift=drift, families=families)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for wandb and the checkpoint)."""
        return dataclasses.asdict(self)


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
        elif field.type == "bool":
            require_bool(name, value)
        elif field.type == "str" and not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
    return settings


def _steps(section: str, values: dict[str, Any], name: str, batch_size: int, required: bool) -> int:
    """A budget given as ``<name>_steps``-style ``steps``/``samples`` keys, in optimiser steps."""
    steps_key, samples_key = ("steps", "samples") if name == "budget" else ("min_steps", "min_samples")
    if steps_key in values and samples_key in values:
        raise ConfigError(f"{section}: give {steps_key} or {samples_key}, not both")
    if steps_key in values:
        return require_int(f"{section}.{steps_key}", values[steps_key], minimum=1 if required else 0)
    if samples_key in values:
        samples = require_int(f"{section}.{samples_key}", values[samples_key], minimum=1 if required else 0)
        return math.ceil(samples / batch_size)
    if required:
        raise ConfigError(f"{section}: needs a budget, steps = N or samples = N")
    return 0


def _stage(index: int, values: Any, train: TrainSettings) -> Stage:
    section = f"stages[{index}]"
    values = require_table(section, values)
    known = {"components", "steps", "samples", "lr", "noise", "drift", "families"}
    known |= {"promote_below", "min_steps", "min_samples"}
    reject_unknown(section, values, known)
    if "components" not in values:
        raise ConfigError(f"{section}: needs components = [low, high]")
    optional = {key: values.get(key) for key in ("noise", "promote_below")}
    drift = values.get("drift")
    if drift is not None and not (isinstance(drift, bool) or drift == "linear"):
        raise ConfigError(f'{section}.drift: expected true, false or "linear", got {drift!r}')
    families = values.get("families")
    return Stage(
        components=require_pair(f"{section}.components", values["components"], integer=True),
        steps=_steps(section, values, "budget", train.batch_size, required=True),
        lr=require_float(f"{section}.lr", values.get("lr", train.lr), minimum=1e-12),
        noise=None if optional["noise"] is None else require_noise(f"{section}.noise", optional["noise"]),
        drift=drift,
        families=None if families is None else parse_families(f"{section}.families", families),
        promote_below=None
        if optional["promote_below"] is None
        else require_float(f"{section}.promote_below", optional["promote_below"], minimum=0.0),
        min_steps=_steps(section, values, "minimum", train.batch_size, required=False),
    )


def parse_run_config(values: dict[str, Any]) -> RunConfig:
    """Validate a config dict (from TOML) into a :class:`RunConfig`."""
    reject_unknown("config", values, {"train", "eval", "signal", "model", "stages", "wandb"})
    train = _settings(TrainSettings, "train", values.get("train", {}))
    require_choice("train.loss", train.loss, LOSSES)
    require_choice("train.device", train.device, DEVICES)
    if not (isinstance(train.compile, bool) or train.compile == "auto"):
        raise ConfigError(f'train.compile: expected "auto", true or false, got {train.compile!r}')
    if not train.lr > 0:
        raise ConfigError(f"train.lr: must be > 0, got {train.lr}")
    if not 0 <= train.min_lr_ratio <= 1:
        raise ConfigError(f"train.min_lr_ratio: must be in [0, 1], got {train.min_lr_ratio}")
    if train.batch_size % train.grad_accum:
        raise ConfigError(f"train.grad_accum: {train.grad_accum} does not divide train.batch_size {train.batch_size}")
    wandb = _settings(WandbSettings, "wandb", values.get("wandb", {}))
    require_choice("wandb.mode", wandb.mode, ("offline", "online"))
    signal = SignalSpec.from_dict(require_table("signal", values.get("signal", {})))
    model_values = {**require_table("model", values.get("model", {}))}
    for key in ("lookback", "horizon"):
        if key in model_values:
            raise ConfigError(f"model.{key}: set it in [signal]; the model follows the signal")
    model = ModelConfig.from_dict({**model_values, "lookback": signal.lookback, "horizon": signal.horizon})
    raw_stages = values.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ConfigError("stages: need at least one [[stages]] table")
    stages = tuple(_stage(index, stage, train) for index, stage in enumerate(raw_stages))
    evaluation = _settings(EvalSettings, "eval", values.get("eval", {}))
    config = RunConfig(train, evaluation, signal, model, stages, wandb)
    for index, stage in enumerate(stages):
        try:
            config.stage_spec(stage)  # validates each stage's band, noise and families as a SignalSpec
        except ConfigError as error:
            if stage.families is None or not str(error).startswith("signal.families"):
                raise
            raise ConfigError(str(error).replace("signal.", f"stages[{index}].", 1)) from None
    return config


def load_run_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read, override and validate a TOML run config."""
    return parse_run_config(load_toml(path, overrides))
