"""The spectral toolkit against the seed notebook's worked DFT cases, plus exactness, batching and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harmonic_forecast.errors import ConfigError
from harmonic_forecast.spectral import Spectrum, dft_forecast, harmonics, reconstruct, rfft_features


def sinusoid(num_samples: int, period: float, seed: int = 0) -> torch.Tensor:
    """A unit sine of ``period`` samples with a random phase, computed in float64, returned as float32."""
    phase = float(torch.rand(1, generator=torch.Generator().manual_seed(seed))) * 2 * math.pi
    t = torch.arange(num_samples, dtype=torch.float64)
    return torch.sin(2 * math.pi * t / period + phase).float()


def test_bins_even_window() -> None:
    spectrum = harmonics(torch.zeros(16))
    assert spectrum.amplitude.shape == spectrum.phase.shape == (9,)
    torch.testing.assert_close(spectrum.frequency, torch.arange(9) / 16)
    assert spectrum.frequency[-1] == 0.5
    assert math.isinf(spectrum.period[0])
    torch.testing.assert_close(spectrum.period[1:], 16 / torch.arange(1, 9))
    assert spectrum.period[1] == 16 and spectrum.period[2] == 8 and spectrum.period[-1] == 2


def test_bins_odd_window() -> None:
    spectrum = harmonics(torch.zeros(15))
    assert spectrum.amplitude.shape == (8,)
    torch.testing.assert_close(spectrum.frequency[-1], torch.tensor(7 / 15))
    assert spectrum.frequency[-1] < 0.5
    assert math.isinf(spectrum.period[0])
    torch.testing.assert_close(spectrum.period[-1], torch.tensor(15 / 7))


def test_notebook_ramp_values() -> None:
    # The notebook printed |rfft(arange(15))| / 15 (undoubled) and the phases.
    spectrum = harmonics(torch.arange(15))
    undoubled = torch.tensor([7.0000, 2.4049, 1.2293, 0.8507, 0.6728, 0.5774, 0.5257, 0.5028])
    torch.testing.assert_close(spectrum.amplitude[0], undoubled[0])
    torch.testing.assert_close(spectrum.amplitude[1:], 2 * undoubled[1:], atol=2e-4, rtol=0)
    phases = torch.tensor([0.0000, 1.7802, 1.9897, 2.1991, 2.4086, 2.6180, 2.8274, 3.0369])
    torch.testing.assert_close(spectrum.phase, phases, atol=1e-4, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_period_dividing_window_is_one_bin_and_forecast_exact(seed: int) -> None:
    y = sinusoid(200, 20, seed)
    amplitude = harmonics(y[:100]).amplitude
    torch.testing.assert_close(amplitude[5], torch.tensor(1.0), atol=1e-5, rtol=0)
    others = torch.cat([amplitude[:5], amplitude[6:]])
    torch.testing.assert_close(others, torch.zeros_like(others), atol=1e-5, rtol=0)
    for horizon in (10, 37, 100):
        forecast = dft_forecast(y[:100], horizon)
        assert forecast.shape == (horizon,)
        torch.testing.assert_close(forecast, y[100 : 100 + horizon], atol=1e-5, rtol=0)


def test_period_not_dividing_window_repeats_window_and_leaks() -> None:
    n, horizon = 110, 150
    y = sinusoid(n + horizon, 20)
    window = y[:n]
    forecast = dft_forecast(window, horizon)
    torch.testing.assert_close(forecast, window[torch.arange(horizon) % n], atol=1e-5, rtol=0)
    assert (forecast - y[n:]).abs().max() > 0.1
    assert int((harmonics(window).amplitude > 0.05).sum()) > 1


@pytest.mark.parametrize("n", [16, 17, 100, 101])
def test_reconstruct_reproduces_window(n: int) -> None:
    window = torch.randn(5, n, generator=torch.Generator().manual_seed(n))
    torch.testing.assert_close(reconstruct(harmonics(window), n), window, atol=1e-5, rtol=0)


@pytest.mark.parametrize("n", [16, 15])
def test_doubling_rule(n: int) -> None:
    t = torch.arange(n, dtype=torch.float64)
    dc = harmonics(torch.full((n,), -0.75, dtype=torch.float64))
    torch.testing.assert_close(dc.amplitude[0], torch.tensor(0.75, dtype=torch.float64))
    assert dc.amplitude[1:].abs().max() < 1e-12
    torch.testing.assert_close(reconstruct(dc, 3 * n), torch.full((3 * n,), -0.75, dtype=torch.float64))
    for k in (1, n // 2 - 1, (n - 1) // 2):  # (n - 1) // 2 is the last bin for odd n, below Nyquist for even n
        amplitude = harmonics(0.5 * torch.cos(2 * math.pi * k * t / n + 0.3)).amplitude
        torch.testing.assert_close(amplitude[k], torch.tensor(0.5, dtype=torch.float64))


def test_nyquist_bin_not_doubled() -> None:
    spectrum = harmonics((-1.0) ** torch.arange(16, dtype=torch.float64))
    torch.testing.assert_close(spectrum.amplitude[-1], torch.tensor(1.0, dtype=torch.float64))
    assert spectrum.amplitude[:-1].abs().max() < 1e-12
    torch.testing.assert_close(reconstruct(spectrum, 40), (-1.0) ** torch.arange(40, dtype=torch.float64))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_hamming_reduces_far_leakage(seed: int) -> None:
    window = sinusoid(110, 20, seed)
    plain = harmonics(window).amplitude
    tapered = harmonics(window, hamming=True).amplitude
    peak = int(plain.argmax())
    assert int(tapered.argmax()) == peak
    far = (torch.arange(plain.shape[-1]) - peak).abs() >= 3
    assert bool((tapered[far] < plain[far]).all())
    assert abs(float(tapered[peak]) - 1.0) < 0.2
    assert tapered[peak] > plain[peak]  # less scalloping loss than the rectangular window


def test_hamming_gain_correction_on_bin() -> None:
    tapered = harmonics(sinusoid(100, 20), hamming=True)
    torch.testing.assert_close(tapered.amplitude[5], torch.tensor(1.0), atol=0.02, rtol=0)
    assert dft_forecast(sinusoid(100, 20), 10, hamming=True).shape == (10,)


@pytest.mark.parametrize("n", [16, 15])
@pytest.mark.parametrize("hamming", [False, True])
def test_batching_matches_rows(n: int, hamming: bool) -> None:
    batch = torch.randn(4, 3, n, generator=torch.Generator().manual_seed(7))
    spectrum = harmonics(batch, hamming=hamming)
    rebuilt = reconstruct(spectrum, 2 * n)
    forecast = dft_forecast(batch, 5, hamming=hamming)
    assert spectrum.amplitude.shape == spectrum.phase.shape == (4, 3, n // 2 + 1)
    assert rebuilt.shape == (4, 3, 2 * n) and forecast.shape == (4, 3, 5)
    for i in range(4):
        for j in range(3):
            row = harmonics(batch[i, j], hamming=hamming)
            torch.testing.assert_close(spectrum.amplitude[i, j], row.amplitude)
            torch.testing.assert_close(spectrum.phase[i, j], row.phase)
            torch.testing.assert_close(rebuilt[i, j], reconstruct(row, 2 * n))
            torch.testing.assert_close(forecast[i, j], dft_forecast(batch[i, j], 5, hamming=hamming))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_preserved(dtype: torch.dtype) -> None:
    window = torch.randn(2, 12, dtype=dtype)
    spectrum = harmonics(window, hamming=True)
    tensors = [spectrum.amplitude, spectrum.phase, spectrum.frequency, spectrum.period]
    tensors += [reconstruct(spectrum, 20), dft_forecast(window, 3), *rfft_features(window)]
    assert all(tensor.dtype == dtype for tensor in tensors)


def test_rfft_features() -> None:
    window = torch.randn(6, 100, generator=torch.Generator().manual_seed(3))
    amplitude, phase = rfft_features(window)
    assert amplitude.shape == phase.shape == (6, 51)
    assert torch.cat([window, amplitude, phase], dim=-1).shape == (6, 202)
    reference = torch.fft.rfft(window, norm="forward")
    torch.testing.assert_close(amplitude, reference.abs())
    torch.testing.assert_close(phase, reference.angle())


def test_numpy_arrays_and_lists_are_windows_too() -> None:
    window = np.sin(2 * np.pi * np.arange(24) / 8)
    torch.testing.assert_close(dft_forecast(window, 5), dft_forecast(torch.from_numpy(window), 5))  # float64 kept
    torch.testing.assert_close(rfft_features(window)[0], rfft_features(torch.from_numpy(window))[0])
    reversed_big_endian = window[::-1].astype(">f8")[::-1]  # negative strides and a foreign byte order
    torch.testing.assert_close(dft_forecast(reversed_big_endian, 5), dft_forecast(torch.from_numpy(window), 5))
    torch.testing.assert_close(dft_forecast(window.tolist(), 5), dft_forecast(torch.from_numpy(window), 5))


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: dft_forecast(torch.zeros(10), 0), "horizon"),
        (lambda: dft_forecast(torch.zeros(10), 2.5), "horizon"),
        (lambda: reconstruct(harmonics(torch.zeros(10)), 0), "num_samples"),
        (lambda: harmonics(torch.zeros(3, 1)), "window"),
        (lambda: rfft_features(torch.zeros(1)), "window"),
        (lambda: dft_forecast(torch.tensor(1.0), 3), "window"),
        (lambda: harmonics(torch.zeros(4, dtype=torch.complex64)), "window"),
        (lambda: rfft_features([True, False, True]), "window"),
        (lambda: Spectrum(torch.zeros(5), torch.zeros(5), torch.zeros(5), torch.zeros(5), 10), "spectrum"),
        (lambda: Spectrum(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), 1), "window_length"),
    ],
)
def test_invalid_inputs(call, argument: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{argument}: ") as error:
        call()
    assert "\n" not in str(error.value)
