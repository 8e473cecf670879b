"""Classical baselines: exact where the answer is known, batched, validated, and measured on the stream."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import pytest
import torch

from harmonic_forecast import HarmonicStream, SignalSpec
from harmonic_forecast.baseline_fits import fit_baselines
from harmonic_forecast.baselines import (
    AR_RIDGE,
    LinearMap,
    PeriodDictionary,
    ScaledLinearMap,
    autoregressive,
    autoregressive_float64,
    backtest_ar_orders,
    backtest_autoregressive,
    choose_ar_order,
    dft_extrapolation,
    drift,
    mse,
    naive,
    seasonal_naive,
)
from harmonic_forecast.errors import ConfigError

LOOKBACK, HORIZON = 100, 10


def sinusoids(rows: int, periods: Sequence[float], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Peak-normalised sums of sines with random phases and amplitudes in [0.5, 1): (lookback, target) float32."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(LOOKBACK + HORIZON, dtype=torch.float64)
    signal = torch.zeros(rows, LOOKBACK + HORIZON, dtype=torch.float64)
    for period in periods:
        phase = torch.rand(rows, 1, generator=generator, dtype=torch.float64) * 2 * math.pi
        amplitude = 0.5 + 0.5 * torch.rand(rows, 1, generator=generator, dtype=torch.float64)
        signal += amplitude * torch.sin(2 * math.pi * t / period + phase)
    signal = (signal / signal.abs().amax(dim=1, keepdim=True)).float()
    return signal[:, :LOOKBACK], signal[:, LOOKBACK:]


def ar2_processes(rows: int, noise: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lightly damped AR(2) oscillations ``x_t = a1 x_{t-1} + a2 x_{t-2} + noise``.

    Returns the float32 lookback, the true conditional expectation of the next ``HORIZON`` samples given
    the lookback (the noiseless recursion from its last two samples), and the realised continuation.
    """
    generator = torch.Generator().manual_seed(seed)
    radius = 0.995
    angle = 2 * math.pi / (10 + 20 * torch.rand(rows, generator=generator, dtype=torch.float64))
    a1, a2 = 2 * radius * angle.cos(), torch.full((rows,), -(radius**2), dtype=torch.float64)
    shocks = noise * torch.randn(rows, LOOKBACK + HORIZON, generator=generator, dtype=torch.float64)
    x = torch.zeros(rows, LOOKBACK + HORIZON, dtype=torch.float64)
    x[:, 0], x[:, 1] = 1.0, angle.cos()
    for t in range(2, LOOKBACK + HORIZON):
        x[:, t] = a1 * x[:, t - 1] + a2 * x[:, t - 2] + shocks[:, t]
    lookback = x[:, :LOOKBACK].float()
    expected = torch.zeros(rows, HORIZON + 2, dtype=torch.float64)
    expected[:, :2] = lookback[:, -2:].double()
    for h in range(HORIZON):
        expected[:, h + 2] = a1 * expected[:, h + 1] + a2 * expected[:, h]
    return lookback, expected[:, 2:].float(), x[:, LOOKBACK:].float()


@pytest.fixture(scope="module")
def linear_map() -> LinearMap:
    stream = HarmonicStream(SignalSpec(), batch_size=4096, seed=0, split="train")
    return LinearMap.fit_batches(stream.batch(index) for index in range(4))


@pytest.fixture(scope="module")
def small_baselines() -> dict:
    spec = SignalSpec(components=(3, 10))
    return fit_baselines(spec, seed=1, fit_batches=1, batch_size=1024, validation_size=256)


@pytest.mark.parametrize("period", [20, 25])
def test_period_dividing_window_is_exact(period: int) -> None:
    lookback, target = sinusoids(32, [period])
    for forecaster in (dft_extrapolation, seasonal_naive, functools.partial(autoregressive, order=2)):
        torch.testing.assert_close(forecaster(lookback, HORIZON), target, atol=1e-5, rtol=0)
    # A dictionary of few enough periods pins the representation down, so its fit is exact.
    dictionary = PeriodDictionary(LOOKBACK, HORIZON, (period - 2, period + 3))
    torch.testing.assert_close(dictionary(lookback), target, atol=1e-5, rtol=0)


def test_seasonal_naive_finds_a_period_that_does_not_divide_the_window() -> None:
    lookback, target = sinusoids(32, [30])
    torch.testing.assert_close(seasonal_naive(lookback, HORIZON), target, atol=1e-5, rtol=0)
    assert mse(dft_extrapolation(lookback, HORIZON), target) > 0.1


def test_overcomplete_dictionary_and_linear_map_are_close_on_a_sinusoid(linear_map: LinearMap) -> None:
    # The full (10, 100) dictionary is nearly collinear over 100 samples: the ridge spreads a pure sinusoid
    # over neighbouring periods, so it is accurate but not exact.
    lookback, target = sinusoids(32, [20])
    assert mse(PeriodDictionary(LOOKBACK, HORIZON)(lookback), target) < 1e-4
    assert mse(linear_map(lookback), target) < 1e-4


@pytest.mark.parametrize(("periods", "order"), [([17], 2), ([20, 33], 6), ([12, 20, 37], 10)])
def test_ar_is_exact_on_sums_of_sinusoids(periods: list[int], order: int) -> None:
    # A sum of K sinusoids obeys an AR(2K) recursion.
    lookback, target = sinusoids(32, periods)
    torch.testing.assert_close(autoregressive(lookback, HORIZON, order), target, atol=1e-4, rtol=0)


def test_forward_backward_ar_is_exact_on_sinusoids_with_a_level_where_forward_cannot_be() -> None:
    """Two sinusoids and a level obey an AR(4) recurrence both ways. On 8 samples a forward fit has 4 equations
    for its 5 unknowns; read backwards too it has 8, and is exact."""
    t = torch.arange(13, dtype=torch.float64)
    phases = torch.rand(16, 2, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 * math.pi
    signal = torch.sin(2 * math.pi * t / 6.5 + phases[:, 0]) + 0.7 * torch.sin(2 * math.pi * t / 11.0 + phases[:, 1])
    lookback, target = signal[:, :8] + 0.3, signal[:, 8:] + 0.3
    both_ways = autoregressive_float64(lookback, 5, 4, AR_RIDGE, forward_backward=True)
    torch.testing.assert_close(both_ways, target, atol=1e-7, rtol=0)
    assert (autoregressive_float64(lookback, 5, 4, AR_RIDGE) - target).abs().max() > 0.1


def test_a_lookback_too_short_for_a_seasonal_period_says_so() -> None:
    with pytest.raises(
        ConfigError, match="seasonal period: a lookback of 3 samples holds lags up to 1, under min_period 2"
    ):
        seasonal_naive(torch.randn(4, 3), HORIZON)
    assert seasonal_naive(torch.randn(4, 3), HORIZON, period=2).shape == (4, HORIZON)


def test_naive_is_exact_on_constants() -> None:
    lookback = torch.linspace(-1, 1, 8)[:, None].expand(8, LOOKBACK).contiguous()
    for forecaster in (naive, seasonal_naive, dft_extrapolation):
        torch.testing.assert_close(forecaster(lookback, HORIZON), lookback[:, :HORIZON], atol=1e-6, rtol=0)


def test_ar2_forecast_matches_the_conditional_expectation() -> None:
    lookback, expected, realised = ar2_processes(64, noise=1e-3)
    forecast = autoregressive(lookback, HORIZON, order=2)
    # The fitted coefficients' error stays well below the noise the future adds.
    assert (forecast[:, 0] - expected[:, 0]).abs().max() < 1e-3
    assert mse(forecast, expected) < 0.3 * mse(expected, realised)
    assert mse(forecast, realised) < 1e-3 * mse(naive(lookback, HORIZON), realised)


def test_choose_ar_order() -> None:
    lookback, target = sinusoids(64, [12, 20, 37])
    assert choose_ar_order(lookback, target, orders=(2, 4, 6, 8, 10)) >= 6
    lookback, _, realised = ar2_processes(64, noise=1e-3)
    assert choose_ar_order(lookback, realised, orders=(1, 2)) == 2


def test_backtested_ar_is_exact_on_sums_of_sinusoids() -> None:
    # Three sinusoids obey an AR(6) recursion; 6 is a candidate, so the backtest finds an exact order.
    lookback, target = sinusoids(32, [12, 20, 37])
    assert (backtest_ar_orders(lookback, HORIZON) >= 6).all()
    torch.testing.assert_close(backtest_autoregressive(lookback, HORIZON), target, atol=1e-4, rtol=0)


def test_backtested_ar_picks_a_low_order_on_random_walks() -> None:
    generator = torch.Generator().manual_seed(0)
    walks = torch.randn(256, LOOKBACK, generator=generator, dtype=torch.float64).cumsum(dim=1)
    orders = backtest_ar_orders(walks, HORIZON)
    assert orders.float().median() <= 4
    forecast = backtest_autoregressive(walks, HORIZON)
    assert forecast.shape == (256, HORIZON) and forecast.dtype == torch.float32 and forecast.isfinite().all()


def test_drift_continues_the_line_through_the_first_and_last_samples() -> None:
    """Hyndman & Athanasopoulos's drift method: exact on a line, whatever lies between its two ends."""
    t = torch.arange(LOOKBACK + HORIZON, dtype=torch.float64)
    line = (1e4 + 0.25 * t)[None]  # a large level: computed in float64, the step is not lost to rounding
    torch.testing.assert_close(drift(line[:, :LOOKBACK], HORIZON), line[:, LOOKBACK:].float(), atol=0, rtol=1e-7)
    generator = torch.Generator().manual_seed(7)
    bumped = line[:, :LOOKBACK].clone()
    bumped[:, 1:-1] += torch.randn(1, LOOKBACK - 2, generator=generator, dtype=torch.float64)  # only the ends count
    torch.testing.assert_close(drift(bumped, HORIZON), line[:, LOOKBACK:].float(), atol=0, rtol=1e-7)
    walk = torch.randn(4, LOOKBACK, generator=generator).cumsum(dim=1)
    torch.testing.assert_close(drift(3.0 * walk - 2.0, HORIZON), 3.0 * drift(walk, HORIZON) - 2.0, rtol=1e-5, atol=1e-4)
    assert drift(walk, HORIZON).dtype == torch.float32
    with pytest.raises(ConfigError, match="at least 2 samples"):
        drift(walk[:, :1], HORIZON)


def test_seasonal_naive_with_a_given_period() -> None:
    lookback = torch.arange(2 * LOOKBACK, dtype=torch.float32).reshape(2, LOOKBACK)
    forecast = seasonal_naive(lookback, 14, period=12)
    torch.testing.assert_close(forecast[:, :12], lookback[:, -12:])
    torch.testing.assert_close(forecast[:, 12:], lookback[:, -12:-10])
    torch.testing.assert_close(seasonal_naive(lookback, 3, period=1), naive(lookback, 3))
    with pytest.raises(ConfigError, match="period"):
        seasonal_naive(lookback, 3, period=LOOKBACK + 1)
    with pytest.raises(ConfigError, match="orders"):
        backtest_ar_orders(lookback, HORIZON, orders=(50,))


def test_linear_map_recovers_a_linear_map_across_batches() -> None:
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(8, 3, generator=generator, dtype=torch.float64)
    bias = torch.randn(3, generator=generator, dtype=torch.float64)
    inputs = torch.randn(512, 8, generator=generator, dtype=torch.float64)
    outputs = inputs @ weights + bias
    fitted = LinearMap.fit_batches([(inputs[:200], outputs[:200]), (inputs[200:], outputs[200:], "extra")])
    torch.testing.assert_close(fitted.weights, weights, atol=1e-6, rtol=0)
    torch.testing.assert_close(fitted.bias, bias, atol=1e-6, rtol=0)
    once = LinearMap.fit(inputs, outputs)
    torch.testing.assert_close(fitted(inputs.float()), once(inputs.float()), atol=1e-6, rtol=0)


def test_shapes_dtypes_and_batching(small_baselines: dict) -> None:
    assert set(small_baselines) == {
        "naive",
        "seasonal_naive",
        "dft",
        "ar",
        "linear_map",
        "scaled_linear_map",
        "period_dictionary",
    }
    lookback, _ = HarmonicStream(SignalSpec(components=(3, 10)), batch_size=16, seed=2, split="test").batch(0)
    for name, forecaster in small_baselines.items():
        batched = forecaster(lookback)
        assert batched.shape == (16, HORIZON) and batched.dtype == torch.float32, name
        assert batched.device == lookback.device, name
        assert forecaster(lookback.double()).dtype == torch.float32, name
        rows = torch.cat([forecaster(lookback[i : i + 1]) for i in range(len(lookback))])
        torch.testing.assert_close(batched, rows, atol=1e-5, rtol=0, msg=name)


def test_bad_input_is_a_config_error(linear_map: LinearMap) -> None:
    lookback, target = sinusoids(4, [20])
    with pytest.raises(ConfigError, match="horizon"):
        naive(lookback, 0)
    with pytest.raises(ConfigError, match="horizon"):
        autoregressive(lookback, -1, 2)
    with pytest.raises(ConfigError, match="order"):
        autoregressive(lookback, HORIZON, 0)
    with pytest.raises(ConfigError, match="order"):
        autoregressive(lookback, HORIZON, LOOKBACK)
    with pytest.raises(ConfigError, match="ridge"):
        autoregressive(lookback, HORIZON, 2, ridge=0.0)
    with pytest.raises(ConfigError, match="min_period"):
        seasonal_naive(lookback, HORIZON, min_period=LOOKBACK // 2 + 1)
    with pytest.raises(ConfigError, match="lookback"):
        dft_extrapolation(lookback[0], HORIZON)
    with pytest.raises(ConfigError, match="lookback"):
        linear_map(lookback[:, 1:])
    with pytest.raises(ConfigError, match="orders"):
        choose_ar_order(lookback, target, orders=())
    with pytest.raises(ConfigError, match="target"):
        choose_ar_order(lookback, target[:2])
    with pytest.raises(ConfigError, match="batches"):
        LinearMap.fit_batches([])
    with pytest.raises(ConfigError, match="periods"):
        PeriodDictionary(LOOKBACK, HORIZON, periods=(1, 10))


def test_clean_stream_mse_table(linear_map: LinearMap) -> None:
    spec = SignalSpec(components=(3, 45))
    lookback, target = HarmonicStream(spec, batch_size=2048, seed=0, split="test").batch(0)
    validation = HarmonicStream(spec, batch_size=256, seed=0, split="validation").batch(0)
    order = choose_ar_order(*validation, orders=(8, 16, 24, 32, 40))
    forecasts = {
        "naive": naive(lookback, HORIZON),
        "seasonal_naive": seasonal_naive(lookback, HORIZON),
        "dft": dft_extrapolation(lookback, HORIZON),
        f"ar({order})": autoregressive(lookback, HORIZON, order),
        "linear_map": linear_map(lookback),
        "period_dictionary": PeriodDictionary(LOOKBACK, HORIZON)(lookback),
    }
    errors = {name: mse(forecast, target) for name, forecast in forecasts.items()}
    print("\nbaseline MSE on 2048 clean (3,45) test signals:")
    for name, error in errors.items():
        print(f"  {name:<18} {error:.3e}")
    assert errors["linear_map"] < 1e-4 and errors["period_dictionary"] < 1e-4
    assert errors[f"ar({order})"] < 1e-3
    assert min(errors["naive"], errors["seasonal_naive"], errors["dft"]) > 1e-2


def test_the_scaled_linear_map_is_affine_equivariant_where_the_stream_units_map_is_not(linear_map: LinearMap) -> None:
    """The stream normalises each signal over lookback and horizon; a map fitted in those units learns that
    scale and breaks in a user's units. The map fitted on lookback-scaled windows does not."""
    spec = SignalSpec(components=(3, 45), noise=0.1)
    train = HarmonicStream(spec, batch_size=4096, seed=0, split="train")
    native = LinearMap.fit_batches(train.batch(index) for index in range(2))
    scaled = ScaledLinearMap.fit_batches(train.batch(index) for index in range(2))
    lookback, target = HarmonicStream(spec, batch_size=1024, seed=0, split="test").batch(0)
    moved = 3.0 * lookback.double() - 5.0
    torch.testing.assert_close(scaled(moved).double(), 3.0 * scaled(lookback).double() - 5.0, atol=1e-4, rtol=0)
    in_units = mse(native(lookback), target)
    moved_error = mse(native(moved), 3.0 * target.double() - 5.0) / 9.0  # back in the stream's units
    assert moved_error > 10 * in_units
    assert mse(scaled(lookback), target) < mse(naive(lookback, HORIZON), target)
    clean, clean_target = HarmonicStream(SignalSpec(), batch_size=1024, seed=0, split="test").batch(0)
    clean_map = ScaledLinearMap.fit_batches(
        HarmonicStream(SignalSpec(), 4096, 0, split="train").batch(i) for i in range(4)
    )
    assert mse(clean_map(clean), clean_target) < 1e-4


def test_linear_map_does_not_depend_on_rounding_order() -> None:
    # Another machine's BLAS sums in another order; a well-posed fit gives the same forecasts whatever the order.
    # Normal equations with a 1e-15 ridge moved these forecasts by 4e-3 between the two batchings.
    spec = SignalSpec(components=(3, 10))
    lookback, target = HarmonicStream(spec, batch_size=4096, seed=3, split="train").batch(0)
    test, _ = HarmonicStream(spec, batch_size=512, seed=3, split="test").batch(0)
    whole = LinearMap.fit(lookback, target)(test)
    pieces = [(lookback[i : i + 512], target[i : i + 512]) for i in range(0, 4096, 512)]
    split = LinearMap.fit_batches(pieces)(test)
    torch.testing.assert_close(whole, split, atol=1e-6, rtol=0)
    torch.set_num_threads(1)
    try:
        one_thread = LinearMap.fit(lookback, target)(test)
    finally:
        torch.set_num_threads(2)
    torch.testing.assert_close(whole, one_thread, atol=1e-6, rtol=0)
