"""The sparse period-grid fit: beyond every linear map on clean and noisy windows, exact on a few periods."""

from __future__ import annotations

import math

import pytest
import torch

from harmonic_forecast import HarmonicStream, SignalSpec
from harmonic_forecast.baselines import PeriodDictionary, mse
from harmonic_forecast.errors import ConfigError
from harmonic_forecast.models import SparseGRUConfig, build_model
from harmonic_forecast.models.skips.sparse_fit import PeriodSparseFit, SparseSkip
from harmonic_forecast.trainer import stream_windows

BAND = SignalSpec(components=(3, 46))


@pytest.fixture(scope="module")
def skip() -> SparseSkip:
    module = SparseSkip(BAND.lookback, BAND.horizon, (10, 100), iterations=16)
    module.fit(stream_windows(seed=0), BAND)
    return module


def _dense_posterior(fit: PeriodSparseFit, x: torch.Tensor, variance: torch.Tensor, iterations: int) -> torch.Tensor:
    """Tipping's EM updates written plainly, one window at a time, with an explicit inverse of the full ``S``."""
    periods, rank = fit.outer.shape[0], fit.rank
    atoms = fit.atom_rows.view(periods, 2, rank)
    forecasts = []
    for window, noise_variance in zip(x, variance, strict=True):
        z = window @ fit.projection
        power = window.square().mean()
        noise = torch.maximum(noise_variance, 1e-13 * power)
        gamma = torch.full((periods,), float(power) / periods, dtype=torch.float64)
        for step in range(iterations):
            covariance = torch.einsum("p,pkr,pks->rs", gamma, atoms, atoms) + noise * torch.eye(
                rank, dtype=torch.float64
            )
            inverse = torch.linalg.inv(covariance)
            mean = gamma[:, None] * torch.einsum("pkr,r->pk", atoms, inverse @ z)  # [P, 2]
            if step < iterations - 1:
                quadratic = torch.einsum("pkr,rs,pks->p", atoms, inverse, atoms)
                posterior = (2 * gamma - gamma.square() * quadratic).clamp_min(0.0)
                gamma = ((mean.square().sum(dim=1) + posterior) / 2).clamp_min(1e-30 * power)
        forecasts.append(torch.einsum("pk,pkh->h", mean, fit.horizon_atoms))
    return torch.stack(forecasts)


def test_the_batched_em_updates_match_tippings_updates_written_plainly() -> None:
    """The batched fit builds ``S`` from its lower triangle and solves the last step without an inverse:
    the same posterior mean as the plain updates, on noisy windows where the solves are well conditioned."""
    lookback, _ = _test_set((3, 10), noise=0.05)
    x = lookback[:16].double()
    variance = torch.full((16,), 0.05**2, dtype=torch.float64)
    fit = PeriodSparseFit(BAND.lookback, BAND.horizon, (10, 100), iterations=4, constant=True)
    torch.testing.assert_close(fit(x, variance), _dense_posterior(fit, x, variance, 4), rtol=1e-9, atol=1e-11)


def _test_set(components: tuple[int, int], noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    return HarmonicStream(BAND.replace(components=components, noise=noise), 1024, seed=9, split="test").batch(0)


def test_three_grid_periods_are_forecast_far_better_than_by_the_linear_fit_on_the_same_grid() -> None:
    t = torch.arange(110, dtype=torch.float64)
    signal = (
        0.5 * torch.sin(2 * math.pi * t / 17 + 1.0)
        + 0.3 * torch.cos(2 * math.pi * t / 41)
        + 0.2 * torch.sin(2 * math.pi * t / 88 + 2.0)
    )
    sparse = PeriodSparseFit(100, 10, (10, 100), iterations=40)(signal[None, :100], torch.zeros(1, dtype=torch.float64))
    linear = PeriodDictionary(100, 10, (10, 100))(signal[None, :100])
    assert mse(sparse, signal[None, 100:]) < 1e-8
    assert mse(sparse, signal[None, 100:]) * 100 < mse(linear, signal[None, 100:])


@pytest.mark.parametrize("components", [(3, 20), (40, 46)])
def test_clean_windows_beat_the_wiener_path_fivefold(skip: SparseSkip, components: tuple[int, int]) -> None:
    lookback, target = _test_set(components, 0.0)
    forecast, _, _ = skip(lookback)
    assert forecast.dtype == torch.float64 and forecast.shape == target.shape
    assert mse(forecast, target) * 5 < mse(skip.wiener(lookback)[0], target)
    assert mse(forecast, target) < 2e-6


@pytest.mark.parametrize("noise", [0.03, 0.1, 0.3])
def test_noisy_windows_beat_the_wiener_path(skip: SparseSkip, noise: float) -> None:
    lookback, target = _test_set((3, 46), noise)
    assert mse(skip(lookback)[0], target) < 0.95 * mse(skip.wiener(lookback)[0], target)


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_calibrated_error_predicts_the_measured_one(skip: SparseSkip, noise: float) -> None:
    lookback, target = _test_set((3, 46), noise)
    forecast, variance, _ = skip(lookback)
    measured = mse(forecast, target)
    assert 0.5 * measured < float(skip.expected_error(variance).mean()) < 2 * measured


def test_a_window_the_fit_cannot_handle_gets_the_wiener_forecast(skip: SparseSkip) -> None:
    lookback, _ = _test_set((3, 10), 0.0)
    lookback[0] = float("nan")
    forecast, _, _ = skip(lookback)
    linear, _, _ = skip.wiener(lookback)
    assert torch.equal(forecast[0].isnan(), linear[0].isnan())
    assert bool(forecast[1:].isfinite().all())


def test_signals_outside_the_period_grid_are_refused() -> None:
    model = build_model(SparseGRUConfig(periods=(10, 50)))
    with pytest.raises(ConfigError, match=r"model\.periods"):
        model.fit_to_data(stream_windows(seed=0), BAND)
