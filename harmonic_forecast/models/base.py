"""The base of every forecaster: the shared ``[model]`` fields, the forward contract, saving and loading.

Every model maps a lookback ``[B, lookback]`` to a forecast ``[B, horizon]`` float32 and defines its own
training objective in ``training_loss``. Rows are independent: a row whose lookback holds a NaN or inf
forecasts NaN in every step (:func:`nan_where_nonfinite`) and leaves the other rows as they are, and its
``training_loss`` is then non-finite (never an exception), which the trainer reports as divergence.

A model is saved as ``config.json`` (its config, the kind under ``model_type``) and ``model.safetensors``
(its state dict) and rebuilt by :meth:`Forecaster.from_pretrained` without any training code.

:class:`ModelConfig` holds the fields every family shares; each family subclasses it with its own
``kind: Literal["..."]`` and its own fields (:mod:`harmonic_forecast.models` picks the family of a table
by its ``kind``). Closed-form parts are fitted from windows handed in (:meth:`Forecaster.fit_to_data` with a
:class:`~harmonic_forecast.models.windows.WindowSource`): no model builds a stream.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import AfterValidator, ConfigDict, Field, StrictBool, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from harmonic_forecast.errors import ConfigError
from harmonic_forecast.hardware import usable_device
from harmonic_forecast.models.windows import WindowSource
from harmonic_forecast.scaling import scale_windows, unscale
from harmonic_forecast.signals import SignalSpec
from harmonic_forecast.tables import Int, Positive, Table, validated

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MAX_REASON = 400  # characters of a loading error's cause kept in its one line
INPUT_SCALINGS = ("lookback", "none")  # "none": models saved before the scaling convention (read as trained)
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _period_grid(periods: tuple[int, int]) -> tuple[int, int]:
    if not 2 <= periods[0] < periods[1]:
        raise ValueError("need 2 <= low < high (half-open)")
    return periods


PeriodGrid = Annotated[tuple[Int, Int], AfterValidator(_period_grid)]  # an integer period grid [low, high)


class ModelConfig(Table):
    """The ``[model]`` fields every family shares; a family's config subclasses it (never used on its own).

    A subclass sets ``kind: Literal["<kind>"] = "<kind>"`` and adds its own fields; unknown keys stay
    errors, so a field of another family (``periods`` on a ``seed_gru``) is a one-line :class:`ConfigError`
    naming it. Build one from user values with :meth:`from_dict`, or directly as e.g. ``SeedGRUConfig(hidden=140)``.
    """

    # defaults are checked too: a family's default that does not fit a short lookback is a one-line error
    model_config = ConfigDict(validate_default=True)

    kind: str
    lookback: Annotated[Int, Field(ge=2)] = 100
    horizon: Positive = 10
    hidden: Annotated[Int, Field(ge=4)] = 128
    encoder_width: Positive = 256
    detach_feedback: StrictBool = True
    input_scaling: Literal[INPUT_SCALINGS] = "lookback"  # "lookback": scale each window by its own lookback (below)

    @model_validator(mode="before")
    @classmethod
    def _a_family(cls, values: Any) -> Any:
        if cls is ModelConfig:
            raise TypeError("ModelConfig is the shared base: use ModelConfig.from_dict(values) or a family's config")
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a ``[model]`` table; a one-line :class:`ConfigError` for a bad or unknown key.

        On :class:`ModelConfig` itself the family is the one of ``values["kind"]`` (default
        :data:`~harmonic_forecast.models.DEFAULT_KIND`); on a family's config, that family.
        """
        if cls is not ModelConfig:
            return validated(cls, values, "model")
        from harmonic_forecast.models import model_config  # the registry, which imports this module

        return model_config(values)


@dataclass(frozen=True)
class Family:
    """One model kind as the registry knows it.

    ``config``: its config class (a :class:`ModelConfig` whose ``kind`` defaults to the kind);
    ``build(config)``: a freshly initialised :class:`Forecaster`; ``flops(config, training)``: matrix-multiply
    FLOPs per signal of a forward pass, times 3 with the backward pass when ``training``.
    """

    config: type[ModelConfig]
    build: Callable[[Any], Forecaster]
    flops: Callable[[Any, bool], float]

    @property
    def kind(self) -> str:
        return self.config.model_fields["kind"].default


def nan_where_nonfinite(lookback: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``values`` ``[B, ...]`` with every row whose ``lookback`` row holds a NaN or inf set to NaN; the others as given.

    A saturating recurrent cell can turn an inf input into a finite state, so the rows are masked
    explicitly rather than trusted to propagate the NaN.
    """
    finite = lookback.isfinite().all(dim=-1).view(-1, *([1] * (values.dim() - 1)))
    return torch.where(finite, values, float("nan"))


class Forecaster(nn.Module):
    """Base of all forecasters: ``forward(lookback) -> forecast``, saving and loading."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, lookback: torch.Tensor) -> torch.Tensor:
        """Forecast ``[B, horizon]`` float32 of lookback windows ``[B, lookback]`` in any units.

        With ``input_scaling = "lookback"`` each window is scaled by its own lookback
        (:mod:`harmonic_forecast.scaling`), forecast by :meth:`forecast_scaled` and mapped back, so
        ``forward(a·x + b) == a·forward(x) + b`` for ``a > 0`` up to float32 rounding. Windows of another
        shape raise :class:`ConfigError`.
        """
        if lookback.dim() != 2 or lookback.shape[1] != self.config.lookback:
            raise ConfigError(f"lookback: expected [B, {self.config.lookback}], got {tuple(lookback.shape)}")
        if self.config.input_scaling == "none":
            return self.forecast_scaled(lookback).float()
        (scaled,) = scale_windows(lookback)
        return unscale(self.forecast_scaled(scaled.float()), lookback).float()

    def forecast_scaled(self, lookback: torch.Tensor) -> torch.Tensor:
        """The model proper: forecast ``[B, horizon]`` of scaled windows ``[B, lookback]``."""
        raise NotImplementedError

    def training_loss(self, lookback: torch.Tensor, target: torch.Tensor, loss: Loss) -> torch.Tensor:
        """The training objective on windows scaled by their lookback (target included): units never matter."""
        if self.config.input_scaling == "lookback":
            lookback, target = (values.float() for values in scale_windows(lookback, target))
        return self.training_loss_scaled(lookback, target, loss)

    def training_loss_scaled(self, lookback: torch.Tensor, target: torch.Tensor, loss: Loss) -> torch.Tensor:
        """The objective on scaled windows; by default ``loss`` of the free-running forecast."""
        return loss(self.forecast_scaled(lookback).float(), target)

    def fit_to_data(self, source: WindowSource, spec: SignalSpec) -> None:
        """Closed-form parts fitted on signals of ``spec`` drawn from ``source`` before training; none by default."""

    def save_pretrained(self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``.

        ``state_dict`` replaces the module's own (for weights gathered from sharded training).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        values = self.config.model_dump()
        config = {"model_type": values.pop("kind"), **values}
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        tensors = self.state_dict() if state_dict is None else state_dict
        weights = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
        save_file(weights, str(directory / WEIGHTS_FILE))
        # safetensors writes its file owner-only (0600); give it config.json's mode, which follows the umask,
        # so whoever may read the config (a shared model directory) may load the weights
        os.chmod(directory / WEIGHTS_FILE, (directory / CONFIG_FILE).stat().st_mode & 0o777)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> Forecaster:
        """Rebuild a saved model without any training code (of this class, if called on a subclass), on ``device``
        and in eval mode (as Hugging Face's ``from_pretrained``; no model here has dropout or a norm layer, so
        only autograd's bookkeeping differs). A missing or bad directory, weights that do not fit the config or
        a device this machine lacks raise a one-line :class:`ConfigError`."""
        from harmonic_forecast.models import build_model, read_model_config  # the registry, which imports this

        directory = Path(directory)
        device = usable_device("device", device)
        model = build_model(read_model_config(directory))
        if cls is not Forecaster and not isinstance(model, cls):
            raise ConfigError(f"{directory}: holds a model of kind {model.config.kind}, not {cls.__name__}")
        load_weights(model, directory, device)
        return model.to(device).eval()


def load_weights(model: nn.Module, directory: Path, device: str | torch.device = "cpu") -> None:
    """Load ``directory/model.safetensors`` into ``model`` (strict), with a one-line error."""
    try:
        model.load_state_dict(load_file(str(directory / WEIGHTS_FILE), device=str(device)))
    except (OSError, SafetensorError, RuntimeError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__  # every line: a size mismatch comes last
        if len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 3] + "..."
        raise ConfigError(f"{directory / WEIGHTS_FILE}: cannot load weights ({reason})") from None
