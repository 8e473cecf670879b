"""The forecasters as plain modules, and their ``config.json`` + ``model.safetensors`` format.

- ``sparse_gru`` (default): a learned residual from a non-teacher-forced ``GRUCell`` decoder over the
  sparse Bayesian fit of each window on the period grid (:mod:`harmonic_forecast.sparse_fit`), which
  uses only the periods present and so forecasts clean signals to ~3e-7 and noisy ones (σ = 0.1) to
  ~0.043, where linear maps reach ~4e-6 and 0.065. An MLP over the Wiener-denoised window, its rfft
  amplitudes and phases, the log noise variance and the skip forecast gives the decoder's initial state; each step
  is fed the previous forecast and the skip forecast of the step. The residual is scaled by the skip
  path's calibrated error at the window's noise level, so the network predicts an O(1) quantity
  whether the window is clean (error ~1e-7) or noisy (~1e-1), and the training loss is taken in those
  units, which weighs clean and noisy windows alike. ``periods`` is the grid (integers, half-open) and
  ``sparse_iterations`` the EM updates per window; the fit dominates a CPU training step
  (about 1,800 samples/s on two cores).
- ``wiener_gru``: the same residual network over the adaptive Wiener skip path of
  :mod:`harmonic_forecast.wiener` (the best linear forecast at each window's own noise level), about six
  times faster to train on a CPU and bounded by what linear maps reach (~4e-6 on clean signals).

The notebook's three models, kept for comparison:

- ``seed_gru`` (the notebook's final model): an MLP over ``[window, rfft amplitudes,
  rfft phases]`` (202 -> 100 -> 202 -> H for a lookback of 100) gives the initial hidden state of a
  ``GRUCell`` decoder, fed the last lookback value and then its own predictions (no teacher
  forcing; the fed-back value is detached as in the seed unless ``detach_feedback`` is false).
  Head H -> H/2 -> H/4 -> 1; ``hidden`` is H (140 in the seed).
- ``lstm``: the next-step LSTM predictor, trained on every step of the signal and forecasting
  autoregressively; ``hidden`` is its state size (100 in the notebook).
- ``seq2seq_gru``: a GRU encoder (``hidden`` units, 10 in the notebook) whose last state,
  concatenated with the rfft amplitudes and phases, starts a ``GRUCell`` decoder trained with
  teacher forcing and evaluated autoregressively.

Every model maps a lookback ``[B, lookback]`` to a forecast ``[B, horizon]`` and defines its own
training objective in ``training_loss``. Rows are independent: a row whose lookback holds a NaN or inf
forecasts NaN in every step (:func:`nan_where_nonfinite`) and leaves the other rows as they are, and its
``training_loss`` is then non-finite (never an exception), which the trainer reports as divergence.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, StrictBool, field_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from harmonic_forecast.errors import ConfigError
from harmonic_forecast.losses import mse
from harmonic_forecast.scaling import scale_windows, unscale
from harmonic_forecast.signals import SignalSpec
from harmonic_forecast.sparse_fit import PeriodSparseFit, SparseSkip
from harmonic_forecast.spectral import rfft_features
from harmonic_forecast.tables import Int, Positive, Table, validated
from harmonic_forecast.wiener import WienerSkip

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_KINDS = ("sparse_gru", "wiener_gru", "seed_gru", "lstm", "seq2seq_gru")
INPUT_SCALINGS = ("lookback", "none")  # "none": models saved before the scaling convention (read as trained)
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ModelConfig(Table):
    """Which forecaster and its shape; the seed's final model is ``seed_gru`` with H = 140, width 100.

    Built from user values with :meth:`from_dict` (a one-line :class:`ConfigError` for a bad one).
    """

    kind: Literal[MODEL_KINDS] = "sparse_gru"
    lookback: Annotated[Int, Field(ge=2)] = 100
    horizon: Positive = 10
    hidden: Annotated[Int, Field(ge=4)] = 128
    encoder_width: Positive = 256
    detach_feedback: StrictBool = True
    periods: tuple[Int, Int] = (10, 100)  # sparse_gru: the integer period grid of its sparse fit (half-open)
    sparse_iterations: Positive = 16  # sparse_gru: EM updates of the sparse fit per window
    input_scaling: Literal[INPUT_SCALINGS] = "lookback"  # "lookback": scale each window by its own lookback (below)

    @field_validator("periods")
    @classmethod
    def _period_grid(cls, periods: tuple[int, int]) -> tuple[int, int]:
        if not 2 <= periods[0] < periods[1]:
            raise ValueError("need 2 <= low < high (half-open)")
        return periods

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a config table; unknown keys are an error."""
        return validated(cls, values, "model")


SEED_MODEL = ModelConfig(kind="seed_gru", hidden=140, encoder_width=100)  # the notebook's final model


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
        ``forward(a·x + b) == a·forward(x) + b`` for ``a > 0`` up to float32 rounding.
        """
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

    def fit_to_data(self, spec: SignalSpec, seed: int) -> None:
        """Closed-form parts fitted from the stream before training; none by default."""

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

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> Forecaster:
        """Rebuild a saved model without any training code (of this class's kind, if called on a subclass)."""
        directory = Path(directory)
        model = build_model(read_model_config(directory))
        if cls is not Forecaster and not isinstance(model, cls):
            raise ConfigError(f"{directory}: holds a {model.config.kind} model, not {cls.__name__}")
        load_weights(model, directory, device)
        return model.to(device)


def read_model_config(directory: Path) -> ModelConfig:
    """The :class:`ModelConfig` in ``directory/config.json``."""
    try:
        values = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{directory / CONFIG_FILE}: cannot read model config ({error})") from None
    if not isinstance(values, dict) or values.get("model_type") not in MODEL_KINDS:
        raise ConfigError(f"{directory / CONFIG_FILE}: not a model config of kind {', '.join(MODEL_KINDS)}")
    values.setdefault("input_scaling", "none")  # saved before the scaling convention: read as trained
    return ModelConfig.from_dict({"kind": values.pop("model_type"), **values})


def load_weights(model: nn.Module, directory: Path, device: str | torch.device = "cpu") -> None:
    """Load ``directory/model.safetensors`` into ``model`` (strict), with a one-line error."""
    try:
        model.load_state_dict(load_file(str(directory / WEIGHTS_FILE), device=str(device)))
    except (OSError, SafetensorError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{directory / WEIGHTS_FILE}: cannot load weights ({first_line})") from None


class WienerGRUForecaster(Forecaster):
    """A skip path (here the adaptive Wiener one) plus a GRU-decoded residual; see the module docstring."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        lookback, hidden = config.lookback, config.hidden
        self.skip = self._skip_path(config)
        features = lookback + 2 * (lookback // 2 + 1) + 1 + config.horizon
        width = config.encoder_width
        self.encoder = nn.Sequential(
            nn.Linear(features, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, hidden)
        )
        self.decoder = nn.GRUCell(2, hidden)
        self.head = nn.Sequential(nn.Linear(hidden, hidden // 2), nn.GELU(), nn.Linear(hidden // 2, 1))

    @staticmethod
    def _skip_path(config: ModelConfig) -> WienerSkip | SparseSkip:
        return WienerSkip(config.lookback, config.horizon)

    def fit_to_data(self, spec: SignalSpec, seed: int) -> None:
        """Fit the skip path on signals of ``spec``, scaled as the model scales them (see :meth:`WienerSkip.fit`)."""
        spec = spec.replace(lookback=self.config.lookback, horizon=self.config.horizon)
        self.skip.fit(spec, seed, scaled=self.config.input_scaling == "lookback")

    def _forecast(self, lookback: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forecast, skip forecast and residual scale, all float64 ``[B, H]``, ``[B, H]``, ``[B, 1]``."""
        skip, variance, denoised = self.skip(lookback)
        scale = self.skip.expected_error(variance).sqrt()[:, None]
        denoised = denoised.float()
        amplitude, phase = rfft_features(denoised)
        log_variance = variance.log().float()[:, None] / 10
        hidden = self.encoder(torch.cat([denoised, amplitude, phase, log_variance, skip.float()], dim=-1))
        value, outputs = lookback[:, -1:], []
        for step in range(self.config.horizon):
            hidden = self.decoder(torch.cat([value, skip[:, step : step + 1].float()], dim=-1), hidden)
            forecast = skip[:, step : step + 1] + self.head(hidden).double() * scale
            outputs.append(forecast)
            value = forecast.float().detach() if self.config.detach_feedback else forecast.float()
        return nan_where_nonfinite(lookback, torch.cat(outputs, dim=-1)), skip, scale

    def forecast_scaled(self, lookback: torch.Tensor) -> torch.Tensor:
        return self._forecast(lookback)[0].float()

    def training_loss_scaled(self, lookback: torch.Tensor, target: torch.Tensor, loss: Loss) -> torch.Tensor:
        """``loss`` of the forecast's residual over the skip path, in units of the skip path's expected error."""
        forecast, skip, scale = self._forecast(lookback)
        return loss(((forecast - skip) / scale).float(), ((target.double() - skip) / scale).float())


class SparseGRUForecaster(WienerGRUForecaster):
    """The GRU residual over the sparse period-grid fit of :mod:`harmonic_forecast.sparse_fit`."""

    @staticmethod
    def _skip_path(config: ModelConfig) -> WienerSkip | SparseSkip:
        constant = config.input_scaling == "lookback"  # a centred window carries the negated mean as a level
        return SparseSkip(config.lookback, config.horizon, config.periods, config.sparse_iterations, constant)

    def fit_to_data(self, spec: SignalSpec, seed: int) -> None:
        """Refuse signals whose periods the grid does not cover, then fit (see :meth:`SparseSkip.fit`)."""
        low, high = self.config.periods
        if spec.periods[0] < low or spec.periods[1] > high:
            raise ConfigError(
                f"model.periods: the sparse fit's grid [{low}, {high}) does not cover signal.periods "
                f"[{spec.periods[0]}, {spec.periods[1]}); widen model.periods"
            )
        super().fit_to_data(spec, seed)


class SeedGRUForecaster(Forecaster):
    """Lookback ``[B, lookback]`` -> forecast ``[B, horizon]``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        features = config.lookback + 2 * (config.lookback // 2 + 1)
        self.encoder = nn.Sequential(
            nn.Linear(features, config.encoder_width),
            nn.LeakyReLU(),
            nn.Linear(config.encoder_width, features),
            nn.LeakyReLU(),
            nn.Linear(features, config.hidden),
        )
        self.decoder = nn.GRUCell(1, config.hidden)
        self.head = nn.Sequential(
            nn.Linear(config.hidden, config.hidden // 2),
            nn.LeakyReLU(),
            nn.Linear(config.hidden // 2, config.hidden // 4),
            nn.LeakyReLU(),
            nn.Linear(config.hidden // 4, 1),
        )

    def forecast_scaled(self, lookback: torch.Tensor) -> torch.Tensor:
        amplitude, phase = rfft_features(lookback)
        hidden = self.encoder(torch.cat([lookback, amplitude, phase], dim=-1))
        value = lookback[:, -1:]
        outputs = []
        for _ in range(self.config.horizon):
            hidden = self.decoder(value, hidden)
            prediction = self.head(hidden)
            outputs.append(prediction)
            value = prediction.detach() if self.config.detach_feedback else prediction
        return nan_where_nonfinite(lookback, torch.cat(outputs, dim=-1))


class LSTMForecaster(Forecaster):
    """The notebook's next-step LSTM: trained on every step, forecasting by feeding back its predictions."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.lstm = nn.LSTM(1, config.hidden, batch_first=True)
        self.readout = nn.Linear(config.hidden, 1)

    def forecast_scaled(self, lookback: torch.Tensor) -> torch.Tensor:
        output, state = self.lstm(lookback.unsqueeze(-1))
        value = self.readout(output[:, -1])
        outputs = [value]
        for _ in range(self.config.horizon - 1):
            fed = value.detach() if self.config.detach_feedback else value
            output, state = self.lstm(fed.unsqueeze(1), state)
            value = self.readout(output[:, -1])
            outputs.append(value)
        return nan_where_nonfinite(lookback, torch.cat(outputs, dim=-1))

    def training_loss_scaled(self, lookback: torch.Tensor, target: torch.Tensor, loss: Loss) -> torch.Tensor:
        """Plain MSE of next-step predictions over the whole signal (the notebook's objective)."""
        signal = torch.cat([lookback, target], dim=-1)
        output, _ = self.lstm(signal[:, :-1].unsqueeze(-1))
        return mse(nan_where_nonfinite(signal, self.readout(output).squeeze(-1).float()), signal[:, 1:])


class Seq2SeqGRUForecaster(Forecaster):
    """The notebook's GRU encoder-decoder: teacher forcing in training, autoregressive in evaluation."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.encoder = nn.GRU(1, config.hidden, batch_first=True)
        state = config.hidden + 2 * (config.lookback // 2 + 1)
        self.decoder = nn.GRUCell(1, state)
        self.head = nn.Sequential(nn.Linear(state, state // 2), nn.LeakyReLU(), nn.Linear(state // 2, 1))

    def _encode(self, lookback: torch.Tensor) -> torch.Tensor:
        _, last = self.encoder(lookback.unsqueeze(-1))
        amplitude, phase = rfft_features(lookback)
        return torch.cat([last[0], amplitude, phase], dim=-1)

    def _decode(self, hidden: torch.Tensor, inputs: list[torch.Tensor] | None, first: torch.Tensor) -> torch.Tensor:
        value, outputs = first, []
        for step in range(self.config.horizon):
            hidden = self.decoder(value if inputs is None else inputs[step], hidden)
            prediction = self.head(hidden)
            outputs.append(prediction)
            value = prediction.detach() if self.config.detach_feedback else prediction
        return torch.cat(outputs, dim=-1)

    def forecast_scaled(self, lookback: torch.Tensor) -> torch.Tensor:
        return nan_where_nonfinite(lookback, self._decode(self._encode(lookback), None, lookback[:, -1:]))

    def training_loss_scaled(self, lookback: torch.Tensor, target: torch.Tensor, loss: Loss) -> torch.Tensor:
        """``loss`` of the teacher-forced decoder: step t is fed the true value of step t - 1."""
        fed = torch.cat([lookback[:, -1:], target[:, :-1]], dim=-1)
        inputs = list(fed.split(1, dim=-1))
        forecast = self._decode(self._encode(lookback), inputs, lookback[:, -1:])
        return loss(nan_where_nonfinite(lookback, forecast).float(), target)


_MODELS: dict[str, type[Forecaster]] = {
    "sparse_gru": SparseGRUForecaster,
    "wiener_gru": WienerGRUForecaster,
    "seed_gru": SeedGRUForecaster,
    "lstm": LSTMForecaster,
    "seq2seq_gru": Seq2SeqGRUForecaster,
}


def build_model(config: ModelConfig) -> Forecaster:
    """A freshly initialised forecaster of ``config.kind``."""
    return _MODELS[config.kind](config)


def flops_per_sample(config: ModelConfig, training: bool = True) -> float:
    """Matrix-multiply FLOPs per signal of a forward pass, times 3 with the backward pass when ``training``.

    Counted from the config: each linear map of n inputs and m outputs costs 2nm; a GRU cell step
    2 * 3H(in + H), an LSTM step 2 * 4H(in + H). Element-wise work and the rfft are left out (a few %).
    The skip paths (float64, no gradient) are counted once, forward only.
    """
    lookback, horizon, hidden = config.lookback, config.horizon, config.hidden
    spectral = lookback + 2 * (lookback // 2 + 1)
    if config.kind in ("sparse_gru", "wiener_gru"):
        width = config.encoder_width
        encoder = 2 * ((spectral + 1 + horizon) * width + width * width + width * hidden)
        head = 2 * (hidden * (hidden // 2) + hidden // 2)
        network = encoder + horizon * (2 * 3 * hidden * (2 + hidden) + head)
        skip = 2 * lookback * (2 * lookback + horizon)
        if config.kind == "sparse_gru":
            constant = config.input_scaling == "lookback"
            skip += PeriodSparseFit(lookback, horizon, config.periods, config.sparse_iterations, constant).flops()
        unused_input_gradient = 2 * (spectral + 1 + horizon) * width  # the features carry no gradient
        return float((3 * network - unused_input_gradient if training else network) + skip)
    if config.kind == "seed_gru":
        width = config.encoder_width
        encoder = 2 * (spectral * width + width * spectral + spectral * hidden)
        head = 2 * (hidden * (hidden // 2) + (hidden // 2) * (hidden // 4) + hidden // 4)
        forward = encoder + horizon * (2 * 3 * hidden * (1 + hidden) + head)
    elif config.kind == "lstm":
        forward = (lookback + horizon - 1) * (2 * 4 * hidden * (1 + hidden) + 2 * hidden)  # same steps either way
    else:
        state = hidden + spectral - lookback
        encoder = lookback * 2 * 3 * hidden * (1 + hidden)
        head = 2 * (state * (state // 2) + state // 2)
        forward = encoder + horizon * (2 * 3 * state * (1 + state) + head)
    return float(forward * (3 if training else 1))
