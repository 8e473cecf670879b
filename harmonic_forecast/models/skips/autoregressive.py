"""Per-window autoregression with its order and its error chosen by a backtest inside the window.

``forward(x [B, L]) -> (forecast [B, H], backtest MSE [B], naive backtest MSE [B], MSE per fold [B, 1 + orders,
folds])``, float64, no trainable state. For every candidate order,
:func:`harmonic_forecast.baselines.autoregressive` is fitted on the first ``L - k * H`` samples and scored on
the next ``H`` (``k = 1 .. folds``, a rolling-origin backtest: Hyndman &
Athanasopoulos, *Forecasting: Principles and Practice*, 3rd ed., §5.10); the order of least mean error is
refitted on the whole window. A clean sum of ``K`` sinusoids obeys an exact linear recurrence of order
``2K`` whatever its periods, a linear trend one of order 2, so this expert needs no period grid. The
backtest's mean squared error of the chosen order, and that of the last value (naive) over the same folds,
come with it: the model reads them as each expert's expected error. So do naive's and every order's MSE in
each fold, the latest fold first: the model reads them for a regime break.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harmonic_forecast.baselines import AR_RIDGE, ar_backtest_errors, ar_refit
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

    def forward(self, lookback: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(forecast [B, H], backtest MSE of the chosen order [B], naive's backtest MSE [B], MSE per fold
        [B, 1 + len(orders), folds])``, float64. The last holds naive's row, then each order's; its column
        ``k - 1`` is fold ``k``, scored on samples ``L - k H`` to ``L - (k - 1) H`` (the latest fold first).

        A window none of whose orders backtests finitely gets an infinite error (and whatever forecast).
        """
        x = lookback.double()
        length, horizon = x.shape[1], self.horizon
        steps = self.folds * horizon
        squared = ar_backtest_errors(x, horizon, self.orders, self.folds, AR_RIDGE)  # [B, orders, folds]
        error, chosen = (squared.sum(dim=2) / steps).min(dim=1)
        cuts = [length - fold * horizon for fold in range(1, self.folds + 1)]
        naive = torch.stack([(x[:, cut - 1 : cut] - x[:, cut : cut + horizon]).square().sum(dim=1) for cut in cuts], 1)
        orders = torch.tensor(self.orders, device=x.device)[chosen]
        folds = torch.cat([naive[:, None], squared], dim=1) / horizon
        return ar_refit(x, horizon, orders, AR_RIDGE), error, naive.sum(dim=1) / steps, folds
