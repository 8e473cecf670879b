"""Non-finite input: a window holding a NaN or inf forecasts NaN in its own row, never raises, leaves the others."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harmonic_forecast import ConfigError, HarmonicStream, SignalSpec, load_forecaster
from harmonic_forecast.forecast import HarmonicForecaster
from harmonic_forecast.losses import weighted_mse
from harmonic_forecast.models import MODEL_KINDS, Forecaster, ModelConfig, build_model
from harmonic_forecast.models.skips.wiener import ERROR_KNOTS, interpolate_error

BAND = SignalSpec(components=(3, 10))
BAD_ROWS = {1: float("nan"), 3: float("inf"), 5: float("-inf")}  # row -> the value put into one of its samples
KINDS = [*MODEL_KINDS, "pretrained"]


@pytest.fixture(scope="module")
def pretrained() -> HarmonicForecaster:
    return load_forecaster()


@pytest.fixture(scope="module")
def models(pretrained: HarmonicForecaster) -> dict[str, Forecaster]:
    """Every kind at small sizes, and the shipped model; the Wiener paths take the shipped model's fitted buffers
    (fitting them here would take seconds to minutes on a loaded CPU)."""
    shipped = pretrained.model
    result: dict[str, Forecaster] = {"pretrained": shipped}
    for kind in MODEL_KINDS:
        torch.manual_seed(0)
        sparse = {"sparse_iterations": 4} if kind == "sparse_gru" else {}
        model = build_model(ModelConfig.from_dict({"kind": kind, "hidden": 16, "encoder_width": 16, **sparse}))
        if kind == "sparse_gru":
            model.skip.wiener.load_state_dict(shipped.wiener.state_dict())
        elif kind == "wiener_gru":
            model.skip.load_state_dict(shipped.wiener.state_dict())
        elif kind == "expert_gru":
            model.wiener.load_state_dict(shipped.wiener.state_dict())
        result[kind] = model.eval()
    return result


def _windows(count: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    return HarmonicStream(BAND, count, seed=9, split="test").batch(0)


def _with_bad_rows(lookback: torch.Tensor) -> torch.Tensor:
    bad = lookback.clone()
    for row, value in BAD_ROWS.items():
        bad[row, 10 * row] = value
    return bad


GOOD_ROWS = [row for row in range(8) if row not in BAD_ROWS]
ROUNDING = {"rtol": 1e-4, "atol": 1e-5}  # a row's forecast in another batch (see the first test below)


def test_a_nan_variance_interpolates_to_nan_not_to_an_index_error() -> None:
    errors = torch.linspace(1.0, 2.0, len(ERROR_KNOTS), dtype=torch.float64)
    variance = torch.tensor([1e-6, float("nan"), 0.01, float("inf")], dtype=torch.float64)
    result = interpolate_error(ERROR_KNOTS, errors, variance)
    assert bool(result[1].isnan()) and float(result[3]) == 2.0
    assert torch.equal(result[[0, 2]], interpolate_error(ERROR_KNOTS, errors, variance[[0, 2]]))


@pytest.mark.parametrize("kind", KINDS)
@torch.no_grad()
def test_a_nonfinite_row_forecasts_nan_and_leaves_the_others(models: dict[str, Forecaster], kind: str) -> None:
    model = models[kind]
    lookback, _ = _windows()
    forecast = model(_with_bad_rows(lookback))
    assert forecast.shape == (8, model.config.horizon)
    assert bool(forecast[list(BAD_ROWS)].isnan().all())
    assert bool(forecast[GOOD_ROWS].isfinite().all())
    # the same batch without the bad values, and the good rows alone: the same forecasts up to rounding. The
    # experts fit rows in groups that the bad rows change; on AVX2 CPUs MKL's small batched kernels round a row
    # by its place in them, and the near-singular fits of clean windows amplify that to ~1e-5 relative.
    torch.testing.assert_close(forecast[GOOD_ROWS], model(lookback)[GOOD_ROWS], **ROUNDING)
    torch.testing.assert_close(forecast[GOOD_ROWS], model(lookback[GOOD_ROWS]), **ROUNDING)


@pytest.mark.parametrize("kind", KINDS)
@torch.no_grad()
def test_constant_windows_forecast_finite_values_and_leave_the_others(models: dict[str, Forecaster], kind: str) -> None:
    model = models[kind]
    lookback, _ = _windows()
    lookback[2] = 0.0
    lookback[4] = 0.7
    forecast = model(lookback)
    assert bool(forecast.isfinite().all())
    others = [0, 1, 3, 5, 6, 7]
    torch.testing.assert_close(forecast[others], model(lookback[others]), **ROUNDING)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", ["lookback_nan", "lookback_inf", "first_sample_inf", "target_nan"])
def test_training_loss_on_a_nonfinite_batch_is_nonfinite(models: dict[str, Forecaster], kind: str, where: str) -> None:
    model = models[kind]
    lookback, target = _windows()
    if where == "lookback_nan":
        lookback[2, 50] = float("nan")
    elif where == "lookback_inf":
        lookback[2, 50] = float("inf")
    elif where == "first_sample_inf":  # the LSTM's objective never compares against sample 0
        lookback[2, 0] = float("inf")
    else:
        target[2, 3] = float("nan")
    loss = model.training_loss(lookback, target, weighted_mse)
    assert loss.dim() == 0 and not bool(loss.isfinite())
    assert bool(model.training_loss(lookback[[0, 1]], target[[0, 1]], weighted_mse).isfinite())


def test_predict_of_the_shipped_model_gives_nan_rows(pretrained: HarmonicForecaster) -> None:
    lookback = _windows()[0].numpy()
    bad = _with_bad_rows(torch.from_numpy(lookback)).numpy()
    forecast = pretrained.predict(bad)
    assert isinstance(forecast, np.ndarray) and forecast.dtype == np.float32 and forecast.shape == (8, 10)
    assert np.isnan(forecast[list(BAD_ROWS)]).all()
    np.testing.assert_allclose(forecast[GOOD_ROWS], pretrained.predict(lookback[GOOD_ROWS]), rtol=1e-6, atol=1e-7)


def test_forecast_of_a_series_with_nan_is_still_refused(pretrained: HarmonicForecaster) -> None:
    series = np.sin(np.arange(200) / 5.0)
    series[150] = np.nan
    with pytest.raises(ConfigError, match="non-finite value nan at index 150"):
        pretrained.forecast(series)
