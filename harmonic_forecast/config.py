"""A training run's configuration: the TOML file's tables as pydantic models, validated up front.

Sections: ``[train]`` (seed, batch, optimiser, loss, device, compilation, checkpoints), ``[eval]``,
``[signal]`` (the base :class:`SignalSpec`, with optional ``[[signal.families]]`` tables: a mixture),
``[model]`` (the fields of its ``kind``'s family, :mod:`harmonic_forecast.models`), ``[wandb]`` and one
``[[stages]]`` table per curriculum stage: its component band, a budget in ``steps`` or ``samples``,
optionally its own ``lr``, ``noise``, ``drift``, ``families`` (``[[stages.families]]`` tables, replacing
the base's) and a promotion rule (``promote_below`` with ``min_steps`` or ``min_samples``).

A bad value is a :class:`ConfigError` of one line naming the key, e.g. ``train.batch_size: Input should
be greater than or equal to 1, got 0`` or ``stages[1].lr: ...`` (:mod:`harmonic_forecast.tables`), which
the CLI prints before exiting with status 2. ``--set key.sub=value`` overrides (``stages.N.key=value``
for a stage) are applied to the TOML values before validation.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    InstanceOf,
    SerializeAsAny,
    StrictBool,
    StrictStr,
    TypeAdapter,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from harmonic_forecast.curriculum import Stage
from harmonic_forecast.errors import ConfigError
from harmonic_forecast.losses import LOSSES
from harmonic_forecast.models import ModelConfig
from harmonic_forecast.signals import Drift, Families, Family, Noise, SignalSpec
from harmonic_forecast.tables import Count, Float, Int, NonNegative, Positive, Rate, Table, validated


class TrainSettings(Table):
    """The ``[train]`` section."""

    seed: Count = 0
    batch_size: Positive = 256
    lr: Rate = 2e-3
    weight_decay: NonNegative = 0.0
    warmup_steps: Count = 100
    min_lr_ratio: Annotated[Float, Field(ge=0, le=1)] = 0.1
    grad_clip: NonNegative = 1.0
    loss: Literal[LOSSES] = "weighted_mse"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: Literal["auto"] | StrictBool = "auto"  # torch.compile the training step: true, false or auto (CUDA only)
    grad_accum: Positive = 1
    log_every: Positive = 50
    checkpoint_every: Positive = 1000
    keep_last: Positive = 3

    @model_validator(mode="after")
    def _accumulation_divides_batch(self) -> TrainSettings:
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"train.grad_accum: {self.grad_accum} does not divide train.batch_size {self.batch_size}")
        return self


class EvalSettings(Table):
    """The ``[eval]`` section: validation every ``every`` steps on ``batches`` x ``batch_size`` signals per band."""

    every: Positive = 500
    batches: Positive = 4
    batch_size: Positive = 1024


class WandbSettings(Table):
    """The ``[wandb]`` section: off unless enabled; offline unless ``mode = "online"``."""

    enabled: StrictBool = False
    mode: Literal["offline", "online"] = "offline"
    project: StrictStr = "harmonic-forecast"
    name: StrictStr = ""


class StageTable(Table):
    """One ``[[stages]]`` table as written; :class:`RunConfig` turns it into a :class:`Stage` in steps."""

    components: tuple[Int, Int]  # the band's order is checked with the stage's SignalSpec
    steps: Positive | None = None
    samples: Positive | None = None
    lr: Rate | None = None  # default: train.lr
    noise: Noise | None = None
    drift: Drift | None = None
    families: Families | None = None  # the values checked with the base SignalSpec
    promote_below: NonNegative | None = None
    min_steps: Count | None = None
    min_samples: Count | None = None

    @model_validator(mode="after")
    def _one_budget(self) -> StageTable:
        if self.steps is None and self.samples is None:
            raise ValueError("needs a budget, steps = N or samples = N")
        for steps, samples in (("steps", "samples"), ("min_steps", "min_samples")):
            if getattr(self, steps) is not None and getattr(self, samples) is not None:
                raise ValueError(f"give {steps} or {samples}, not both")
        return self

    def stage(self, train: TrainSettings) -> Stage:
        """The stage, its budgets in optimiser steps of ``train.batch_size`` signals."""

        def steps(steps: int | None, samples: int | None) -> int:
            return steps if samples is None else math.ceil(samples / train.batch_size)

        return Stage(
            components=self.components,
            steps=steps(self.steps, self.samples),
            lr=train.lr if self.lr is None else self.lr,
            noise=self.noise,
            drift=self.drift,
            families=self.families,
            promote_below=self.promote_below,
            min_steps=steps(self.min_steps or 0, self.min_samples),
        )


STAGE_TABLES = TypeAdapter(Annotated[list[StageTable], Field(min_length=1)])


class RunConfig(Table):
    """Everything a training run needs."""

    train: TrainSettings = TrainSettings()
    eval: EvalSettings = EvalSettings()
    signal: InstanceOf[SignalSpec] = SignalSpec()
    model: SerializeAsAny[InstanceOf[ModelConfig]] = Field(default_factory=dict, validate_default=True)
    stages: tuple[InstanceOf[Stage], ...]
    wandb: WandbSettings = WandbSettings()

    @field_validator("signal", mode="before")
    @classmethod
    def _signal(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return SignalSpec.from_dict(value)
        if not isinstance(value, SignalSpec):
            raise ValueError("expected a table")
        return value

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any, info: ValidationInfo) -> Any:
        """A ``[model]`` table takes its lookback and horizon from the signal and its fields from its kind's family."""
        if not isinstance(value, dict):
            return value
        for key in ("lookback", "horizon"):
            if key in value:
                raise ConfigError(f"model.{key}: set it in [signal]; the model follows the signal")
        signal = info.data.get("signal", SignalSpec())
        return ModelConfig.from_dict({**value, "lookback": signal.lookback, "horizon": signal.horizon})

    @field_validator("stages", mode="wrap")
    @classmethod
    def _stages(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> tuple[Stage, ...]:
        """``[[stages]]`` tables become stages, with train's batch size and LR; :class:`Stage` objects stay."""
        if isinstance(value, list | tuple) and value and all(isinstance(stage, Stage) for stage in value):
            return handler(value)
        train = info.data.get("train", TrainSettings())  # (absent when bad: that error is told first)
        return tuple(table.stage(train) for table in STAGE_TABLES.validate_python(value))

    @model_validator(mode="after")
    def _stage_specs(self) -> RunConfig:
        """Each stage's band, noise and families must make a valid :class:`SignalSpec` with the base."""
        for index, stage in enumerate(self.stages):
            try:
                self.stage_spec(stage)
            except ConfigError as error:  # name the stage's field when the stage set the bad value
                message = str(error)
                field = message.split(":", 1)[0].removeprefix("signal.").split(".")[0].split("[")[0]
                if not message.startswith("signal.") or (field != "components" and getattr(stage, field, None) is None):
                    raise
                raise ConfigError(message.replace("signal.", f"stages[{index}].", 1)) from None
        return self

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
        return self.model_dump()


TABLES = {  # the table under each key, for the known keys of an unknown one
    "": RunConfig,
    "train": TrainSettings,
    "eval": EvalSettings,
    "stages": StageTable,
    "stages.families": Family,
    "wandb": WandbSettings,
}


def parse_run_config(values: dict[str, Any]) -> RunConfig:
    """Validate a config dict (from TOML) into a :class:`RunConfig`."""
    return validated(RunConfig, values, tables=TABLES)


def load_run_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read, override and validate a TOML run config."""
    return parse_run_config(load_toml(path, overrides))


def load_toml(path: str | Path, overrides: list[str] = ()) -> dict[str, Any]:
    """Read a TOML file and apply ``key.sub=value`` overrides (values in TOML syntax, bare words as strings).

    A number in the key indexes an array of tables: ``stages.1.lr=1e-3`` sets the second stage's LR.
    """
    path = Path(path)
    try:
        values = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML ({error})") from None
    return apply_overrides(values, overrides)


def apply_overrides(values: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` settings to ``values`` in place and return it (values in TOML syntax,
    bare words as strings; a number in the key indexes an array of tables). Raises :class:`ConfigError`."""
    for override in overrides:
        key, separator, text = override.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ConfigError(f"--set {override}: expected key=value")
        try:
            value = tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError:
            value = text
        *parents, leaf = key.split(".")
        node: Any = values
        for depth, part in enumerate(parents):
            node = _entry(node, part, key, ".".join(parents[:depth]))
            if not isinstance(node, dict | list):
                raise ConfigError(f"--set {key}: {'.'.join(parents[: depth + 1])} is not a table, it is {node!r}")
        if isinstance(node, list):
            node[_index(node, leaf, key, ".".join(parents))] = value
        else:
            node[leaf] = value
    return values


def _entry(node: dict[str, Any] | list[Any], part: str, key: str, where: str) -> Any:
    """The table (made if absent) or array element called ``part`` in ``node``."""
    if isinstance(node, list):
        return node[_index(node, part, key, where)]
    return node.setdefault(part, {})


def _index(array: list[Any], part: str, key: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(array):
        raise ConfigError(f"--set {key}: {where} has {len(array)} entries (0 to {len(array) - 1}), not {part!r}")
    return int(part)
