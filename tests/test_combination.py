"""The combination of the model with the last value by their discounted errors on a series' earlier windows."""

from __future__ import annotations

import numpy as np

from harmonic_forecast.combination import DISCOUNT, HISTORY, POWER, model_weights
from harmonic_forecast.forecast import series_windows

LOOKBACK, HORIZON = 20, 5


def _random_walk(length: int = 260, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A series, its windows ``[N, L]`` and the observed continuations ``[N - H, H]``."""
    series = np.cumsum(np.random.default_rng(seed).normal(size=length)) + 50.0
    windows = series_windows(series, LOOKBACK)
    return series, windows, series_windows(series[LOOKBACK:], HORIZON)


def test_a_model_worse_than_the_last_value_loses_its_weight_and_an_exact_one_keeps_it() -> None:
    _, windows, continuations = _random_walk()
    last = windows[:, -1:].repeat(HORIZON, axis=1)
    weight = model_weights(windows, last + 3.0 * windows.std(axis=1, keepdims=True), continuations, HORIZON)
    assert weight.shape == (len(windows),)
    assert (weight[:HORIZON] == 1).all(), "no earlier window has been seen: the model's forecast"
    assert (weight[HORIZON:] < 0.5).all() and np.median(weight[HORIZON:]) < 0.05
    exact = np.vstack([continuations, last[len(continuations) :]])  # the last H rows have no continuation yet
    assert (model_weights(windows, exact, continuations, HORIZON) == 1).all()


def test_the_weights_follow_stock_and_watson_and_are_causal() -> None:
    _, windows, continuations = _random_walk(seed=1)
    last = windows[:, -1:].repeat(HORIZON, axis=1)
    model = last + np.random.default_rng(2).normal(size=last.shape)
    weight = model_weights(windows, model, continuations, HORIZON)
    row = 150  # by hand: discounted MSEs over the windows whose continuation row 150's lookback holds
    scale = windows.std(axis=1)
    seen = len(continuations)
    errors = [((f[:seen] - continuations) / scale[:seen, None]) ** 2 for f in (model, last)]
    known = np.arange(row - HORIZON, row - HORIZON - HISTORY, -1)
    known = known[known >= 0]
    model_error, naive_error = (np.sum(DISCOUNT ** np.arange(len(known)) * e[known].mean(axis=1)) for e in errors)
    np.testing.assert_allclose(weight[row], 1 / (1 + (model_error / naive_error) ** POWER), rtol=1e-10)
    changed = model.copy()
    changed[row:] += 100.0  # later forecasts (and continuations) cannot move an earlier row's weight
    moved = model_weights(windows, changed, continuations, HORIZON)
    np.testing.assert_array_equal(moved[: row + HORIZON], weight[: row + HORIZON])
    assert (moved[row + HORIZON :] < weight[row + HORIZON :]).all()
