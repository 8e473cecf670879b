"""The combination of the model with naive, per-window AR and drift by their discounted errors on earlier windows."""

from __future__ import annotations

import numpy as np
import torch

from harmonic_forecast.combination import (
    DISCOUNT,
    HISTORY,
    classical_forecasts,
    combination_weights,
    regime_breaks,
)
from harmonic_forecast.forecast import series_windows

LOOKBACK, HORIZON = 20, 5


def _random_walk(length: int = 260, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``[N, L]`` of a random walk and the series ``[length]``."""
    series = np.cumsum(np.random.default_rng(seed).normal(size=length)) + 50.0
    return series_windows(series, LOOKBACK), series


def test_a_model_worse_than_the_last_value_loses_its_weight_and_an_exact_one_takes_it_all() -> None:
    windows, series = _random_walk()
    last = windows[:, -1:].repeat(HORIZON, axis=1)
    bad = last + 3.0 * windows.std(axis=1, keepdims=True)
    weights = combination_weights(windows, np.stack([bad, last]), HORIZON)
    assert weights.shape == (2, len(windows), HORIZON)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0)
    for step in range(HORIZON):  # no earlier window's value at this step has been seen: the model's forecast
        assert (weights[0, : step + 1, step] == 1).all() and (weights[0, step + 1 :, step] < 1).all()
    seen = weights[0, HORIZON:]  # a walk can drift near the bad forecast for a while, most at the last steps
    assert (seen[:, 0] < 0.5).all() and (seen < 0.5).mean() > 0.95 and np.median(seen) < 0.2
    padded = np.concatenate([series, np.full(HORIZON, series[-1])])  # after the series: the last value
    exact = series_windows(padded[LOOKBACK:], HORIZON)[: len(windows)]  # exact wherever observed
    weights = combination_weights(windows, np.stack([exact, last, bad]), HORIZON)
    np.testing.assert_allclose(weights[0], 1.0)
    assert np.isfinite(weights).all()


def test_the_weights_are_stock_and_watsons_discounted_inverse_mse_per_step_and_causal() -> None:
    windows, series = _random_walk(seed=1)
    last = windows[:, -1:].repeat(HORIZON, axis=1)
    rng = np.random.default_rng(2)
    forecasts = np.stack([last + rng.normal(size=last.shape), last, last + 0.3 * rng.normal(size=last.shape)])
    weights = combination_weights(windows, forecasts, HORIZON)
    row, scale = 150, windows.std(axis=1)  # by hand: discounted MSEs at each step over the windows before
    for step in range(1, HORIZON + 1):
        known = np.arange(row - step, row - step - HISTORY, -1)  # window j's step: sample j + L + step - 1
        known = known[known >= 0]
        truth = series[known + LOOKBACK + step - 1]
        errors = [((f[known, step - 1] - truth) / scale[known]) ** 2 for f in forecasts]
        inverse = np.array([1 / np.sum(DISCOUNT ** np.arange(len(known)) * e) for e in errors])
        np.testing.assert_allclose(weights[:, row, step - 1], inverse / inverse.sum(), rtol=1e-10)
    changed = forecasts.copy()
    changed[0, row:] += 100.0  # later forecasts cannot move an earlier row's weights
    moved = combination_weights(windows, changed, HORIZON)
    for step in range(1, HORIZON + 1):
        np.testing.assert_array_equal(moved[:, : row + step, step - 1], weights[:, : row + step, step - 1])
        assert (moved[0, row + step :, step - 1] < weights[0, row + step :, step - 1]).all()


def test_the_classical_forecasts_are_naive_and_affine_equivariant_ar_and_drift() -> None:
    windows, _ = _random_walk()
    t = np.arange(LOOKBACK + HORIZON)
    tone = np.sin(2 * np.pi * t / 7.3)[None]  # AR(2) continues a pure tone exactly
    naive, ar, drift = classical_forecasts(np.vstack([windows[:3], tone[:, :LOOKBACK]]), HORIZON)
    np.testing.assert_array_equal(naive[:3], windows[:3, -1:].repeat(HORIZON, axis=1))
    np.testing.assert_allclose(ar[3], tone[0, LOOKBACK:], atol=1e-5)
    step = (windows[:3, -1] - windows[:3, 0]) / (LOOKBACK - 1)  # the last value plus h mean steps
    np.testing.assert_allclose(drift[:3], windows[:3, -1:] + step[:, None] * np.arange(1, HORIZON + 1), rtol=1e-6)
    _, moved_ar, moved_drift = classical_forecasts(4.0 * windows[:3] - 7.0, HORIZON)
    np.testing.assert_allclose(moved_ar, 4.0 * ar[:3] - 7.0, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(moved_drift, 4.0 * drift[:3] - 7.0, rtol=1e-5, atol=1e-4)


def test_on_a_trending_series_the_drift_forecast_takes_the_weight_the_last_value_loses() -> None:
    """A random walk with drift (GDP, prices): the last value lags by h steps of drift, drift does not."""
    series = np.cumsum(0.5 + 0.1 * np.random.default_rng(5).normal(size=260)) + 50.0
    windows = series_windows(series, LOOKBACK)
    naive, ar, drift = classical_forecasts(windows, HORIZON)
    forecasts = np.stack([naive - 2.0, naive, ar, drift])  # first a model that lags further still
    weights = combination_weights(windows, forecasts, HORIZON)
    seen = weights[:, HORIZON:]
    assert (seen[3] > 10 * seen[1]).all() and seen[3].mean() > 0.5
    combined = np.einsum("fnh,fnh->nh", weights, forecasts)[HORIZON:-HORIZON]
    truth = series_windows(series[LOOKBACK:], HORIZON)[HORIZON : len(windows) - HORIZON]
    error = {name: np.mean((f[HORIZON:-HORIZON] - truth) ** 2) for name, f in (("naive", naive), ("ar", ar))}
    assert np.mean((combined - truth) ** 2) < min(0.05 * error["naive"], error["ar"])


def test_a_lookback_too_short_for_any_ar_order_combines_with_naive_and_drift() -> None:
    windows = series_windows(np.sin(np.arange(60) / 3.0), 12)  # 12 - 3 x 5 leaves no sample to fit AR on
    forecasts = classical_forecasts(windows, HORIZON)
    assert forecasts.shape == (2, len(windows), HORIZON)
    np.testing.assert_array_equal(forecasts[0], windows[:, -1:].repeat(HORIZON, axis=1))
    step = (windows[:, -1:] - windows[:, :1]) / 11
    center = windows.mean(axis=1, keepdims=True)
    bound = 3 * np.abs(windows - center).max(axis=1, keepdims=True)  # a row leaving the safety range: naive
    expected = windows[:, -1:] + step * np.arange(1, HORIZON + 1)
    inside = (np.abs(expected - center) <= bound).all(axis=1, keepdims=True)
    expected = np.where(inside, expected, windows[:, -1:])
    np.testing.assert_allclose(forecasts[1], expected, rtol=1e-6, atol=1e-7)
    assert classical_forecasts(windows[:, -1:], HORIZON).shape == (1, len(windows), HORIZON)


def test_an_ar_fit_that_leaves_three_lookback_deviations_is_replaced_by_the_last_value() -> None:
    """An unstable recursion is not a forecast to weigh: clipped, it would sit at the bound (the old rule), and a
    combination that trusted AR on the windows before would follow it there."""
    t = np.arange(LOOKBACK)
    growing = (1.3**t)[None] + 0.01 * np.random.default_rng(4).normal(size=(1, LOOKBACK))  # AR extrapolates it
    tone = np.sin(2 * np.pi * t / 7.3)[None]  # AR continues it inside the range
    naive, ar, _ = classical_forecasts(np.vstack([growing, tone]), HORIZON)
    np.testing.assert_array_equal(ar[0], naive[0])
    assert np.abs(ar[1] - naive[1]).max() > 0.1


def test_a_level_shift_in_the_last_samples_is_not_undone_by_the_combination() -> None:
    """A step of 10 a few samples before the end of a flat noisy series: the model's regime-break rule forecasts
    the new level, and the combination, whose weights were earned before the step, must not pull it away (AR
    fitted across the step swung to the safety bounds, -28 and +29, and kept a quarter of the weight)."""
    from harmonic_forecast import load_forecaster

    forecaster = load_forecaster()
    for sigma, at, seed in ((0.01, 5, 3), (0.01, 1, 0), (0.1, 3, 0), (0.1, 3, 1), (0.1, 9, 2)):
        noise = sigma * np.random.default_rng(seed).normal(size=300)
        series = np.r_[np.zeros(300 - at), np.full(at, 10.0)] + noise
        assert np.abs(forecaster.forecast(series, combine=False) - 10.0).max() < 1.0
        assert np.abs(forecaster.forecast(series) - 10.0).max() < 1.0, (sigma, at, seed)


def test_a_break_in_the_last_horizon_hands_the_window_to_the_model_and_a_walk_never_breaks() -> None:
    """Trigg's tracking signal on the best one-step error: windows whose last ``horizon`` samples hold a step
    of 50 noise deviations break (weights ``(1, 0, ...)``); the windows before it, and every window of a random
    walk, do not. (AR fitted across the step stayed inside the safety range at -17 to 11, and with the
    forecasters' equal records before it kept a quarter of the weight: the combined forecast was 3.5 to 10.5.)"""
    rng = np.random.default_rng(7)
    series = np.r_[np.zeros(200), np.full(30, 50.0)] + rng.normal(size=230)
    windows = series_windows(series, LOOKBACK)  # window i ends at sample i + LOOKBACK - 1, window i - 1's step 1
    forecasts = classical_forecasts(windows, HORIZON)
    weights = combination_weights(windows, forecasts, HORIZON)
    first = 200 - LOOKBACK + 1  # the first window holding the step
    broken = np.flatnonzero((weights[0] == 1).all(axis=1) & (np.arange(len(windows)) > HORIZON))
    assert broken.min() == first and broken.max() <= first + HORIZON - 1  # while the step's error is recent
    assert (weights[1:, broken] == 0).all()
    walk, _ = _random_walk(seed=3)
    steps = np.diff(walk[:, -2:], axis=1)  # one-step errors of naive on a walk: its steps
    assert not regime_breaks(torch.tensor(steps.T**2), HORIZON).any()
    naive_errors = torch.tensor((windows[1:, -1] - windows[:-1, -1])[None] ** 2)  # of the stepped series
    assert not regime_breaks(naive_errors, HORIZON)[:first].any()


def test_the_ar_backtest_runs_in_chunks_of_windows_with_the_same_forecasts(monkeypatch) -> None:
    """A long series' rolling forecast held every window's AR design matrices at once (3.9 GB at 1e5 samples)."""
    from harmonic_forecast import combination

    windows, _ = _random_walk(length=120)
    whole = classical_forecasts(windows, HORIZON)
    monkeypatch.setattr(combination, "AR_CHUNK", 7)  # 101 windows: 15 chunks, the last of 3
    np.testing.assert_array_equal(classical_forecasts(windows, HORIZON), whole)
