"""One scaling convention: every model kind is affine equivariant, and so is the user path of any saved model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harmonic_forecast import HarmonicStream, SignalSpec, load_forecaster
from harmonic_forecast.errors import ConfigError
from harmonic_forecast.forecast import HarmonicForecaster
from harmonic_forecast.models import MODEL_KINDS, ModelConfig, SeedGRUConfig, build_model
from harmonic_forecast.scaling import clip_to_lookback, lookback_spread, lookback_statistics, scale_windows, unscale

SHIFTS = [(1.0, 0.0), (3.7, -12.5), (0.01, 250.0), (1e4, 1e3)]


@pytest.fixture(scope="module")
def windows() -> torch.Tensor:
    spec = SignalSpec(components=(3, 20), noise=(0.0, 0.1))
    lookback, _ = HarmonicStream(spec, batch_size=32, seed=4, split="test").batch(0)
    return lookback.double()


def _assert_equivariant(predict, x: torch.Tensor, scale: float, shift: float) -> None:
    base = predict(x).double()
    moved = predict(scale * x + shift).double()
    # float32 rounding of the model's core, in the units of the moved window
    torch.testing.assert_close(moved, scale * base + shift, rtol=1e-5, atol=1e-4 * scale * base.abs().max())


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize(("scale", "shift"), SHIFTS)
def test_every_model_kind_is_affine_equivariant(kind: str, scale: float, shift: float, windows) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_dict({"kind": kind, "hidden": 16, "encoder_width": 16})).eval()
    with torch.no_grad():
        _assert_equivariant(model, windows, scale, shift)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_a_constant_window_forecasts_its_constant(kind: str) -> None:
    model = build_model(ModelConfig.from_dict({"kind": kind, "hidden": 16, "encoder_width": 16})).eval()
    constant = torch.full((3, 100), 7.25, dtype=torch.float64)
    constant[1] = -3.0
    with torch.no_grad():
        forecast = model(constant)
    torch.testing.assert_close(forecast, constant[:, :10].float(), rtol=0, atol=0)


@pytest.mark.parametrize(("scale", "shift"), SHIFTS)
def test_the_shipped_model_takes_any_units(scale: float, shift: float, windows) -> None:
    forecaster = load_forecaster()
    _assert_equivariant(forecaster.predict, windows, scale, shift)
    series = (scale * windows[0] + shift).numpy()
    np.testing.assert_allclose(
        forecaster.forecast(series), forecaster.predict(series[None])[0], rtol=1e-6, atol=1e-6 * scale
    )


def test_float64_windows_keep_their_digits_at_any_level_and_scale(windows) -> None:
    """float64 in, float64 out: a level of 1e9 or a scale of 1e300 or 1e-300 neither eats the digits nor
    overflows or underflows the scale (forecasts were float32, flat at 1e9; NaN at 1e300; the mean at 1e-300)."""
    forecaster = load_forecaster()
    x = windows[:4].numpy()
    base = forecaster.predict(x)
    assert base.dtype == np.float64 and forecaster.predict(x.astype(np.float32)).dtype == np.float32
    assert forecaster.predict(torch.from_numpy(x)).dtype == torch.float64
    reversed_big_endian = x[:, ::-1].astype(">f8")[:, ::-1]  # negative strides and a foreign byte order
    np.testing.assert_array_equal(forecaster.predict(reversed_big_endian), base)
    moved = forecaster.predict(x + 1e9) - 1e9  # the float32 core moves a noisy window's forecast by up to ~5e-3
    assert np.mean((moved - base) ** 2) < 1e-4 * np.mean(base**2), np.abs(moved - base).max()  # 1.3e-5 written
    for scale in (1e300, 1e-300):
        np.testing.assert_allclose(forecaster.predict(x * scale) / scale, base, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.ones((2, 100), dtype=complex), "expected real numbers, got complex128"),
        (np.ones((2, 100), dtype=bool), "expected real numbers, got bool"),
        (torch.ones(2, 100, dtype=torch.bool), "expected real numbers, got torch.bool"),
        (np.array([["a"] * 100]), "values are not numbers"),
        ([[0.0] * 100, [0.0] * 99], "expected an array of numbers, got rows of different lengths"),
    ],
)
def test_predict_refuses_what_is_not_a_real_number_as_forecast_does(values, message: str) -> None:
    forecaster = load_forecaster()
    with pytest.raises(ConfigError, match=f"lookback: {message}"):
        forecaster.predict(values)
    with pytest.raises(ConfigError, match="batch_size: must be >= 1"):
        forecaster.batch_size = 0


def test_the_package_lists_its_public_names() -> None:
    import harmonic_forecast

    assert {"ConfigError", "HarmonicStream", "SignalSpec", "load_forecaster"} <= set(dir(harmonic_forecast))


def test_training_loss_does_not_depend_on_units(windows) -> None:
    torch.manual_seed(0)
    model = build_model(SeedGRUConfig(hidden=16, encoder_width=16))
    target = windows[:, :10].clone()
    loss = lambda forecast, truth: (forecast - truth).square().mean()  # noqa: E731
    base = model.training_loss(windows.float(), target.float(), loss)
    moved = model.training_loss((5 * windows + 2).float(), (5 * target + 2).float(), loss)
    torch.testing.assert_close(moved, base, rtol=1e-4, atol=1e-7)


def test_scaling_functions() -> None:
    x = torch.tensor([[1.0, 3.0, 1.0, 3.0], [4.0, 4.0, 4.0, 4.0]], dtype=torch.float64)
    center, scale = lookback_statistics(x)
    assert center.tolist() == [[2.0], [4.0]] and scale.tolist() == [[1.0], [0.0]]  # mean, standard deviation
    (scaled,) = scale_windows(x)
    assert scaled.tolist() == [[-1.0, 1.0, -1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]
    back = unscale(torch.tensor([[2.0], [5.0]]), x)
    assert back.tolist() == [[4.0], [4.0]]  # 2 + 1 * 2; a constant window keeps its constant
    assert unscale(torch.ones(1, 1), torch.tensor([[1.0, float("inf")]])).isnan().all()


def test_legacy_model_is_scaled_around(tmp_path, windows) -> None:
    # A config.json from before the convention reads as input_scaling = "none"; the user path scales around it.
    model = build_model(SeedGRUConfig(hidden=16, encoder_width=16, input_scaling="none"))
    forecaster = HarmonicForecaster(model.eval())
    _assert_equivariant(forecaster.predict, windows, 3.0, 1.0)


def test_clip_to_lookback_bounds_by_the_largest_deviation_and_keeps_nan() -> None:
    lookback = torch.tensor([[0.0, 2.0, 4.0], [5.0, 5.0, 5.0]], dtype=torch.float64)  # centers 2 and 5, spreads 2 and 0
    center, spread = lookback_spread(lookback)
    assert center.flatten().tolist() == [2.0, 5.0] and spread.flatten().tolist() == [2.0, 0.0]
    forecast = torch.tensor([[100.0, -100.0, 3.0, float("nan")], [6.0, 4.0, 5.0, 5.0]], dtype=torch.float64)
    clipped = clip_to_lookback(forecast, lookback, 3.0)
    assert clipped[0, :3].tolist() == [8.0, -4.0, 3.0] and clipped[0, 3].isnan()
    assert clipped[1].tolist() == [5.0] * 4  # a constant lookback pins the forecast to its level
