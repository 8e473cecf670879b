"""Per-window autoregression with its order and its error chosen by a backtest inside the window.

``forward(x [B, L]) -> (forecast [B, H], backtest MSE [B], naive backtest MSE [B])``, float64, no trainable
state. For every candidate order, :func:`harmonic_forecast.baselines.autoregressive` is fitted on the first
``L - k * H`` samples and scored on the next ``H`` (``k = 1 .. folds``, a rolling-origin backtest: Hyndman &
Athanasopoulos, *Forecasting: Principles and Practice*, 3rd ed., §5.10); the order of least mean error is
refitted on the whole window. A clean sum of ``K`` sinusoids obeys an exact linear recurrence of order
``2K`` whatever its periods, a linear trend one of order 2, so this expert needs no period grid. The
backtest's mean squared error of the chosen order, and that of the last value (naive) over the same folds,
come with it: the model reads them as each expert's expected error.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harmonic_forecast.baselines import AR_RIDGE, autoregressive_float64
from harmonic_forecast.errors import ConfigError


class BacktestAR(nn.Module):
    """Per-window AR over ``orders`` with ``folds`` backtest folds of ``horizon`` samples each."""

    def __init__(self, lookback: int, horizon: int, orders: tuple[int, ...], folds: int) -> None:
        """Raises :class:`~harmonic_forecast.errors.ConfigError` when the highest order cannot be fitted on the
        shortest backtest window (``lookback - folds * horizon - order < order + 1`` equations)."""
        super().__init__()
        shortest = lookback - folds * horizon
        if shortest - max(orders) < max(orders) + 1:
            raise ConfigError(f"ar_orders: order {max(orders)} is too high to fit on {shortest} samples")
        self.horizon, self.orders, self.folds = horizon, tuple(sorted(orders)), folds

    def forward(self, lookback: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(forecast [B, H], backtest MSE of the chosen order [B], naive's backtest MSE [B])``, float64.

        A window none of whose orders backtests finitely gets an infinite error (and whatever forecast).
        """
        x = lookback.double()
        length, horizon = x.shape[1], self.horizon
        errors = x.new_zeros(x.shape[0], len(self.orders))
        naive_error = x.new_zeros(x.shape[0])
        for fold in range(1, self.folds + 1):
            cut = length - fold * horizon
            truth = x[:, cut : cut + horizon]
            naive_error += (x[:, cut - 1 : cut] - truth).square().mean(dim=1)
            for column, order in enumerate(self.orders):
                forecast = autoregressive_float64(x[:, :cut], horizon, order, AR_RIDGE)
                errors[:, column] += (forecast - truth).square().mean(dim=1)
        errors = torch.where(errors.isfinite(), errors, torch.inf) / self.folds
        error, chosen = errors.min(dim=1)
        forecast = x.new_zeros(x.shape[0], horizon)
        for column in chosen.unique().tolist():
            rows = chosen == column
            forecast[rows] = autoregressive_float64(x[rows], horizon, self.orders[column], AR_RIDGE)
        return forecast, error, naive_error / self.folds
