"""Forecast combination over a series' own past: the model and the last value, weighted by their recent errors.

On a series, every window but the last ``horizon`` ones has a continuation already observed, so how
well the model and naive (the last value, a random walk's best forecast) have been doing on *this*
series is known when the next forecast is made. Stock & Watson (2004, "Combination forecasts of output
growth in a seven-country data set", *Journal of Forecasting* 23(6)) weight each forecaster by a power of
its discounted past MSE; here window ``i``'s forecast is ``w f_model + (1 - w) f_naive`` with

    w = 1 / (1 + (m_model / m_naive) ** POWER),   m = sum_k DISCOUNT**k e[i - horizon - k]  (k < HISTORY),

where ``e[j]`` is a forecaster's MSE on window ``j`` in that window's lookback-scaled units
(:mod:`harmonic_forecast.scaling`), so the weights do not depend on the series' units. Only windows
whose whole continuation lies inside window ``i``'s lookback enter: the combination is causal. A window
with no such predecessor, or where the model's discounted error is 0, keeps the model's forecast.
``DISCOUNT`` is one of Stock & Watson's; ``POWER`` = 2 (theirs is 1) sharpens the weights, chosen on the
real-series suite (``evaluate --suite real``).
"""

from __future__ import annotations

import numpy as np
import torch

from harmonic_forecast.scaling import scale_windows

DISCOUNT = 0.95
POWER = 2.0
HISTORY = 100  # windows in the discounted sum (0.95 ** 100 < 0.6%): bounds the history a forecast needs


def model_weights(windows: np.ndarray, model: np.ndarray, continuations: np.ndarray, horizon: int) -> np.ndarray:
    """The model's weight ``w`` ``[N]`` float64 for each of ``N`` consecutive windows of one series.

    ``windows`` ``[N, L]`` start one sample apart; ``model`` ``[N, H]`` are the model's forecasts of them and
    ``continuations`` ``[N - H, H]`` the observed continuations of the first ``N - H`` windows (fewer rows
    when the series ends sooner: only those are used). All in the series' units, finite.
    """
    count = len(windows)
    known = min(len(continuations), max(count - horizon, 0))
    weight = np.ones(count)
    if known == 0:
        return weight
    lookback, forecast, target = (
        torch.from_numpy(np.ascontiguousarray(a[:known])) for a in (windows, model, continuations)
    )
    scaled, forecast, target = scale_windows(lookback, forecast, target)
    errors = torch.stack([(forecast - target).square().mean(dim=1), (scaled[:, -1:] - target).square().mean(dim=1)])
    decay = DISCOUNT ** torch.arange(HISTORY, dtype=torch.float64)
    # m[:, j] = sum_k decay[k] * errors[:, j - k] (j - k >= 0): a causal convolution over the known windows
    padded = torch.nn.functional.pad(errors[:, None], (HISTORY - 1, 0))
    discounted = torch.nn.functional.conv1d(padded, decay.flip(0)[None, None])[:, 0]  # [2, known]
    ratio = (discounted[0] / discounted[1]).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        combined = np.where(discounted[0].numpy() > 0, 1.0 / (1.0 + ratio**POWER), 1.0)
    weight[horizon : horizon + known] = combined  # window i reads the sums up to window i - horizon
    return weight
