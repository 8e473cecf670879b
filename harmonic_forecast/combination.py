"""Forecast combination over a series' own past: the model, the last value, AR and drift, by their recent errors.

On a series, every window but the last ones has a continuation already observed, so how well each
forecaster has been doing on *this* series is known when the next forecast is made. Stock & Watson
(2004, "Combination forecasts of output growth in a seven-country data set", *Journal of Forecasting*
23(6)) weight each forecaster by the inverse of its discounted past MSE, separately for each horizon
from its past forecasts at that horizon; here step ``h`` (1 .. ``horizon``) of window ``i``'s forecast is
``sum_f w_fh forecast_fh`` over the forecasters ``f`` with

    w_fh ∝ m_fh ** -POWER,   m_fh = sum_k DISCOUNT**k e_fh[i - h - k]  (k < HISTORY),

where ``e_fh[j]`` is forecaster ``f``'s squared error at step ``h`` of window ``j`` in that window's
lookback-scaled units (:mod:`harmonic_forecast.scaling`), so the weights do not depend on the series'
units. Window ``j``'s step ``h`` is the last sample of window ``j + h``, so exactly the windows
``j <= i - h`` enter: the combination is causal and uses each step's newest errors. A step with no such
window keeps the first forecaster's forecast (the model's). ``forecast(series)`` combines the model with
naive (the last value, a random walk's best forecast), per-window AR with its order backtested inside
the window (:func:`~harmonic_forecast.baselines.backtest_autoregressive`) and the drift method
(:func:`~harmonic_forecast.baselines.drift`: the last value plus the lookback's mean step, a random walk
with drift's forecast, which trending series such as GDP or prices follow and the model, trained on
stationary sums of harmonics, does not). ``POWER`` is Stock & Watson's 1: sharper weights (2, 4, 8) did
not help on the real suite or on random walks, where the forecasters' discounted errors are close and
trade places.

Records earned before a regime break say nothing of the regime after it. A window whose last ``horizon``
samples broke regime (:func:`regime_breaks`: the best forecaster's one-step errors there exceed
:data:`BREAK_RATIO` times its mean before) takes the model's forecast alone, as the default model's own
intervention rule, which forecasts such a window, would want. A classical forecast that leaves the safety
range is an unstable recursion and is replaced by the last value (:func:`classical_forecasts`).
"""

from __future__ import annotations

import numpy as np
import torch

from harmonic_forecast.baselines import BACKTEST_AR_ORDERS, BACKTEST_FOLDS, backtest_autoregressive, drift
from harmonic_forecast.scaling import clip_to_lookback, scale_windows, unscale

DISCOUNT = 0.95  # one of Stock & Watson's discount factors
POWER = 1.0  # weights are the discounted MSEs to the power -POWER (Stock & Watson's: 1)
HISTORY = 100  # windows in the discounted sum (0.95 ** 100 < 0.6%): bounds the history a forecast needs
MAX_EXCURSION = 3.0  # AR or drift beyond the lookback mean +- this many max deviations is replaced by naive
AR_CHUNK = 4096  # windows per call of the AR backtest (its memory grows with the windows, not the series)
ERROR_FLOOR = 1e-300  # a perfect record (m = 0) gets the largest finite weight, never a division by zero
BREAK_RATIO = 30.0  # the best one-step error over the last horizon above this many times its mean before: a break


def classical_forecasts(windows: np.ndarray, horizon: int) -> np.ndarray:
    """Naive, per-window AR and drift forecasts ``[3, N, H]`` float64 of windows ``[N, L]`` in their own units.

    AR and drift are computed on each window scaled by its lookback and mapped back, so they are affine
    equivariant like the model; AR's orders are those of :data:`~harmonic_forecast.baselines.BACKTEST_AR_ORDERS`
    that its backtest can fit in ``L``. A row of either that leaves the lookback mean ± :data:`MAX_EXCURSION` ×
    the lookback's largest deviation from it, or is not finite, is naive's instead: such a forecast is an
    unstable recursion (e.g. AR fitted across a level shift in the window's last samples), and a combination of
    them with naive and the default model stays in that range. A lookback too short for any AR order gives
    naive and drift, ``[2, N, H]``; a one-sample lookback naive alone, ``[1, N, H]``.
    """
    naive = np.repeat(windows[:, -1:], horizon, axis=1).astype(np.float64)
    if windows.shape[1] < 2:
        return naive[None]
    lookback = torch.tensor(windows, dtype=torch.float64)  # a copy: sliding-window views are read-only
    (scaled,) = scale_windows(lookback)

    def bounded(forecast: torch.Tensor) -> np.ndarray:
        values = unscale(forecast, lookback)
        inside = (clip_to_lookback(values, lookback, MAX_EXCURSION) == values).all(dim=1, keepdim=True)  # finite too
        return np.where(inside.numpy(), values.numpy(), naive)

    shortest = windows.shape[1] - BACKTEST_FOLDS * horizon  # the backtest's shortest fit
    orders = [order for order in BACKTEST_AR_ORDERS if shortest - order >= order + 1]
    # in chunks of windows: the backtest's design matrices hold about L x order numbers per window
    chunks = scaled.split(AR_CHUNK)
    ar = [bounded(torch.cat([backtest_autoregressive(chunk, horizon, orders) for chunk in chunks]))] if orders else []
    return np.stack([naive, *ar, bounded(drift(scaled, horizon))])


def combination_weights(windows: np.ndarray, forecasts: np.ndarray, horizon: int) -> np.ndarray:
    """The forecasters' weights ``[F, N, H]`` float64 for each of ``N`` consecutive windows and each step.

    ``windows`` ``[N, L]`` start one sample apart; ``forecasts`` ``[F, N, H]`` are each forecaster's forecasts
    of them. Both in the series' units, finite. The target of window ``j``'s step ``h`` is the last sample of
    window ``j + h``. Each ``[:, i, h]`` sums to 1; where no window's step ``h + 1`` is known yet (``i <= h``)
    it is ``(1, 0, ..., 0)``.
    """
    count = len(windows)
    weights = np.zeros((len(forecasts), count, horizon))
    weights[0] = 1.0
    if count < 2:
        return weights
    targets = np.full((count - 1, horizon), np.nan)  # the last window's steps are not observed
    for step in range(1, min(horizon, count - 1) + 1):
        targets[: count - step, step - 1] = windows[step:, -1]
    lookback, target, forecasts = (
        torch.tensor(values, dtype=torch.float64) for values in (windows[:-1], targets, forecasts[:, :-1])
    )  # copies: sliding-window views are read-only
    scaled = scale_windows(lookback, target, *forecasts)
    errors = torch.stack([(forecast - scaled[1]).square() for forecast in scaled[2:]])  # [F, N - 1, H]
    decay = DISCOUNT ** torch.arange(HISTORY, dtype=torch.float64)
    for step in range(1, min(horizon, count - 1) + 1):
        seen = count - step  # windows j <= N - 1 - step, whose step is observed
        # m[:, j] = sum_k decay[k] * errors[:, j - k] (j - k >= 0): a causal convolution over the seen windows
        padded = torch.nn.functional.pad(errors[:, None, :seen, step - 1], (HISTORY - 1, 0))
        discounted = torch.nn.functional.conv1d(padded, decay.flip(0)[None, None])[:, 0]  # [F, seen]
        discounted = discounted.clamp_min(ERROR_FLOOR)
        relative = (discounted.min(dim=0).values / discounted) ** POWER  # in [0, 1]: no overflow at any power
        weights[:, step:, step - 1] = (relative / relative.sum(dim=0)).numpy()  # window i reads j = i - step
    broken = regime_breaks(errors[:, :, 0], horizon)  # records from before a break: the model's forecast alone
    weights[:, broken] = 0.0
    weights[0, broken] = 1.0
    return weights


def regime_breaks(one_step: torch.Tensor, horizon: int) -> np.ndarray:
    """``[N]`` bool for ``N = one_step.shape[1] + 1`` windows: the series broke regime in window ``i``'s last
    ``horizon`` samples, so the forecasters' records before it say nothing of the new regime.

    ``one_step`` ``[F, N - 1]`` are the forecasters' squared one-step errors of windows ``0 .. N - 2``. Window ``i``
    breaks when the best forecaster's mean over windows ``i - horizon .. i - 1`` (errors of its last ``horizon``
    samples) exceeds :data:`BREAK_RATIO` times the best mean over the up to :data:`HISTORY` windows before those: a
    tracking signal (Trigg 1964), the rule the default model applies inside each window.
    """
    count = one_step.shape[1] + 1
    cumulative = torch.nn.functional.pad(one_step.cumsum(dim=1), (1, 0))  # [F, N]: sum of the first j errors
    index = torch.arange(count)
    recent_start, history_start = (index - horizon).clamp_min(0), (index - horizon - HISTORY).clamp_min(0)
    recent = (cumulative - cumulative[:, recent_start]) / (index - recent_start).clamp_min(1)
    history = (cumulative[:, recent_start] - cumulative[:, history_start]) / (recent_start - history_start).clamp_min(1)
    known = recent_start - history_start >= horizon  # a history of at least one horizon
    return (known & (recent.min(dim=0).values > BREAK_RATIO * history.min(dim=0).values)).numpy()
