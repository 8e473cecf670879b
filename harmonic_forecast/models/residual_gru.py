"""``sparse_gru`` (the previous default) and ``wiener_gru``: one GRU network learning a residual over a skip path.

The network (:class:`ResidualGRUForecaster`) is the same for both kinds; the skip path is handed to it by
the factory of the kind (:func:`sparse_skip`, :func:`wiener_skip`), so a new skip path is a new factory and
registry entry, not a subclass.

An MLP over the skip path's smoothed window, its rfft amplitudes and phases, the log noise variance and
the skip forecast gives the initial state of a non-teacher-forced ``GRUCell`` decoder; each step is fed
the previous forecast and the skip forecast of the step. The residual is scaled by the skip path's
calibrated error at the window's noise level, so the network predicts an O(1) quantity whether the window
is clean (error ~1e-7) or noisy (~1e-1), and the training loss is taken in those units, which weighs clean
and noisy windows alike.

- ``sparse_gru``: over the sparse Bayesian fit of each window on the period grid
  (:mod:`harmonic_forecast.models.skips.sparse_fit`), which uses only the periods present and so forecasts
  clean signals to ~3e-7 and noisy ones (σ = 0.1) to ~0.043, where linear maps reach ~4e-6 and 0.065.
  Its own fields: ``periods``, the grid (integers, half-open), and ``sparse_iterations``, the EM updates
  per window; the fit dominates a CPU training step (about 1,800 samples/s on two cores).
- ``wiener_gru``: over the adaptive Wiener skip path of :mod:`harmonic_forecast.models.skips.wiener` (the
  best linear forecast at each window's own noise level), about six times faster to train on a CPU and
  bounded by what linear maps reach (~4e-6 on clean signals). No fields of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from harmonic_forecast.models.base import Family, Forecaster, Loss, ModelConfig, PeriodGrid, nan_where_nonfinite
from harmonic_forecast.models.skips import SkipPath, SparseSkip, WienerSkip
from harmonic_forecast.models.windows import WindowSource
from harmonic_forecast.signals import SignalSpec
from harmonic_forecast.spectral import rfft_features
from harmonic_forecast.tables import Positive


class WienerGRUConfig(ModelConfig):
    """The ``[model]`` table of ``kind = "wiener_gru"``: the shared fields only."""

    kind: Literal["wiener_gru"] = "wiener_gru"


class SparseGRUConfig(ModelConfig):
    """The ``[model]`` table of ``kind = "sparse_gru"``: the shared fields and the sparse fit's."""

    kind: Literal["sparse_gru"] = "sparse_gru"
    periods: PeriodGrid = (10, 100)  # the integer period grid of the sparse fit (half-open)
    sparse_iterations: Positive = 16  # EM updates of the sparse fit per window


def wiener_skip(config: WienerGRUConfig) -> WienerSkip:
    """The skip path of ``wiener_gru``."""
    return WienerSkip(config.lookback, config.horizon)


def sparse_skip(config: SparseGRUConfig) -> SparseSkip:
    """The skip path of ``sparse_gru``; a window centred on its mean carries the negated mean as a level."""
    constant = config.input_scaling == "lookback"
    return SparseSkip(config.lookback, config.horizon, config.periods, config.sparse_iterations, constant)


class ResidualGRUForecaster(Forecaster):
    """A skip path plus a GRU-decoded residual; see the module docstring. ``skip`` is saved with the model."""

    def __init__(self, config: ModelConfig, skip: SkipPath) -> None:
        super().__init__(config)
        lookback, hidden = config.lookback, config.hidden
        self.skip = skip
        features = lookback + 2 * (lookback // 2 + 1) + 1 + config.horizon
        width = config.encoder_width
        self.encoder = nn.Sequential(
            nn.Linear(features, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, hidden)
        )
        self.decoder = nn.GRUCell(2, hidden)
        self.head = nn.Sequential(nn.Linear(hidden, hidden // 2), nn.GELU(), nn.Linear(hidden // 2, 1))

    def fit_to_data(self, source: WindowSource, spec: SignalSpec) -> None:
        """Fit the skip path on signals of ``spec`` from ``source``, scaled as the model scales them.

        The spec takes the model's lookback and horizon. Raises :class:`~harmonic_forecast.errors.ConfigError`
        when the skip path cannot serve ``spec`` (e.g. a period grid that does not cover ``spec.periods``).
        """
        spec = spec.replace(lookback=self.config.lookback, horizon=self.config.horizon)
        self.skip.fit(source, spec, scaled=self.config.input_scaling == "lookback")

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

    @staticmethod
    def flops_per_sample(config: ModelConfig, training: bool, skip: SkipPath) -> float:
        """Matrix-multiply FLOPs per signal: the network's (times 3 when ``training``) plus ``skip``'s forward.

        The skip path (float64, no gradient) is counted once, and the input features carry no gradient.
        """
        lookback, horizon, hidden, width = config.lookback, config.horizon, config.hidden, config.encoder_width
        features = lookback + 2 * (lookback // 2 + 1) + 1 + horizon
        encoder = 2 * (features * width + width * width + width * hidden)
        head = 2 * (hidden * (hidden // 2) + hidden // 2)
        network = encoder + horizon * (2 * 3 * hidden * (2 + hidden) + head)
        unused_input_gradient = 2 * features * width
        return float((3 * network - unused_input_gradient if training else network) + skip.flops())


def residual_family(config: type[ModelConfig], skip: Callable[[Any], SkipPath]) -> Family:
    """The registry entry of a residual kind: ``config`` and the factory of its skip path."""
    return Family(
        config,
        build=lambda values: ResidualGRUForecaster(values, skip(values)),
        flops=lambda values, training: ResidualGRUForecaster.flops_per_sample(values, training, skip(values)),
    )


SPARSE_GRU = residual_family(SparseGRUConfig, sparse_skip)
WIENER_GRU = residual_family(WienerGRUConfig, wiener_skip)
