"""Both synthesis paths compute the formula, agree with each other, and keep off the CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harmonic_forecast import HarmonicStream, SignalSpec
from harmonic_forecast.counter_rng import stream_key
from harmonic_forecast.signals import (
    SLOTS_PER_SIGNAL,
    Harmonics,
    drift_gain,
    render_direct,
    render_gemm,
    sample_harmonics,
    synthesize,
)
from tests.device_recorder import DeviceRecorder


def _counters(count: int, first: int = 0) -> torch.Tensor:
    return torch.arange(first, first + count, dtype=torch.int64) * SLOTS_PER_SIGNAL


def _numpy_render(spec: SignalSpec, h: Harmonics) -> np.ndarray:
    """Per-signal, per-component float64 evaluation of the spec's formula (the oracle)."""
    t = np.arange(spec.length, dtype=np.float64)
    out = np.zeros((len(h.count), spec.length))
    for row in range(len(h.count)):
        for slot in range(int(h.count[row])):
            period = float(h.period[row, slot])
            wave = float(h.amplitude[row, slot]) * np.sin(2 * np.pi * t / period + float(h.phase[row, slot]))
            if h.drift_ratio is not None:
                ratio, peak = float(h.drift_ratio[row, slot]), float(h.drift_peak[row, slot])
                last = spec.length - 1
                gain = np.where(t <= peak, 1 + (ratio - 1) * t / peak, 1 + (ratio - 1) * (last - t) / (last - peak))
                wave *= gain
            out[row] += wave
    return out


@pytest.mark.parametrize("band", [(3, 10), (3, 45), (40, 46)])
def test_gemm_and_direct_paths_agree(band: tuple[int, int]) -> None:
    spec = SignalSpec(components=band)
    h = sample_harmonics(spec, stream_key(5), _counters(2000))
    gemm, direct = render_gemm(spec, h), render_direct(spec, h)
    peak = gemm.abs().amax(dim=1, keepdim=True)
    torch.testing.assert_close(gemm / peak, direct / peak, atol=1e-5, rtol=0)


def test_gemm_path_matches_per_signal_formula() -> None:
    spec = SignalSpec(components=(3, 45))
    h = sample_harmonics(spec, stream_key(1), _counters(200))
    np.testing.assert_allclose(render_gemm(spec, h).numpy(), _numpy_render(spec, h), atol=2e-6)


def test_direct_path_matches_formula_for_continuous_periods() -> None:
    spec = SignalSpec(components=(3, 20), periods=(2.0, 500.0), integer_periods=False, lookback=300)
    h = sample_harmonics(spec, stream_key(2), _counters(100))
    assert not torch.equal(h.period, h.period.round())
    np.testing.assert_allclose(render_direct(spec, h).numpy(), _numpy_render(spec, h), atol=5e-6)


def test_direct_path_matches_formula_with_drift() -> None:
    spec = SignalSpec(components=(3, 12), drift=True, drift_range=(0.5, 2.0))
    h = sample_harmonics(spec, stream_key(3), _counters(100))
    assert h.drift_ratio is not None and h.drift_peak is not None
    assert float(h.drift_ratio.min()) >= 0.5 and float(h.drift_ratio.max()) <= 2.0
    assert float(h.drift_peak.min()) > 0 and float(h.drift_peak.max()) < spec.length - 1
    np.testing.assert_allclose(render_direct(spec, h).numpy(), _numpy_render(spec, h), atol=5e-6)


@pytest.mark.parametrize("lookback", [1, 15, 16, 17, 255, 1000])
@pytest.mark.parametrize("integer_periods", [True, False])
def test_direct_path_matches_formula_for_any_window_length(lookback: int, integer_periods: bool) -> None:
    """The block length R (ceil(sqrt L) rounded up to 16) and the block count change with the window's length."""
    periods = (2, 40) if integer_periods else (2.0, 40.0)
    spec = SignalSpec(
        components=(1, 8), periods=periods, integer_periods=integer_periods, lookback=lookback, horizon=2, drift=True
    )
    h = sample_harmonics(spec, stream_key(6), _counters(24))
    np.testing.assert_allclose(render_direct(spec, h).numpy(), _numpy_render(spec, h), atol=5e-6)


def test_chunked_direct_path_equals_unchunked() -> None:
    spec = SignalSpec(components=(3, 45), periods=(10.0, 100.0), integer_periods=False)
    h = sample_harmonics(spec, stream_key(4), _counters(64))
    whole = render_direct(spec, h)
    chunked = render_direct(spec, h, max_elements=64 * spec.length * 5)
    assert torch.equal(whole, chunked)


def test_drift_gain_shape() -> None:
    t = torch.arange(11, dtype=torch.float32)
    gain = drift_gain(t, torch.tensor([[2.0]]), torch.tensor([[4.0]]))[0]
    expected = [1.0, 1.25, 1.5, 1.75, 2.0, 1 + 5 / 6, 1 + 4 / 6, 1 + 3 / 6, 1 + 2 / 6, 1 + 1 / 6, 1.0]
    torch.testing.assert_close(gain, torch.tensor(expected))


@pytest.mark.parametrize(
    "spec",
    [
        SignalSpec(noise=0.1),
        SignalSpec(drift=True, noise=0.1),
        SignalSpec(drift="linear"),
        SignalSpec(periods=(2.0, 300.0), integer_periods=False, drift=True),
        SignalSpec(components=(1, 45), periods=(2, 11)),
        SignalSpec(families=[{"weight": 2}, {"weight": 1, "drift": True}, {"weight": 1, "integer_periods": False}]),
    ],
    ids=["default", "drift", "linear", "continuous_drift", "short_periods", "mixture"],
)
def test_same_signal_whatever_batch_it_is_made_in(spec: SignalSpec) -> None:
    """Bit for bit, whatever rows (and how many: one row takes BLAS's matrix-vector path) share the call."""
    key = stream_key(11)
    whole, _ = synthesize(spec, key, _counters(5000))  # more than one CPU chunk
    for first, count in ((32, 16), (4090, 10), (7, 1), (4999, 1)):
        part, _ = synthesize(spec, key, _counters(count, first=first))
        assert torch.equal(whole[first : first + count], part)


def test_equal_amplitudes_and_no_normalisation() -> None:
    spec = SignalSpec(components=(4, 5), amplitudes="equal", normalize=False)
    h = sample_harmonics(spec, stream_key(0), _counters(10))
    torch.testing.assert_close(h.amplitude, torch.full((10, 4), 0.25))
    signal, _ = synthesize(spec, stream_key(0), _counters(10))
    np.testing.assert_allclose(signal.numpy(), _numpy_render(spec, h), atol=2e-6)
    assert float(signal.abs().max()) <= 1.0 + 1e-6


def test_period_two_is_allowed_and_finite() -> None:
    spec = SignalSpec(components=(1, 2), periods=(2, 3))
    signal, _ = synthesize(spec, stream_key(0), _counters(1000))
    assert torch.isfinite(signal).all()


@pytest.mark.parametrize(
    "spec",
    [
        SignalSpec(),
        SignalSpec(noise=0.1),
        SignalSpec(drift=True),
        SignalSpec(periods=(10.0, 100.0), integer_periods=False),
    ],
    ids=["gemm", "noise", "drift", "continuous"],
)
def test_synthesis_touches_only_the_target_device(spec: SignalSpec) -> None:
    """On a non-CPU device (meta here), no batch touches a CPU tensor once the period table is cached."""
    stream = HarmonicStream(spec, batch_size=256, device="meta", return_components=True)
    stream.batch(1)
    with DeviceRecorder() as recorder:
        lookback, target, count = stream.batch(2)
    assert recorder.devices == {"meta"}
    assert lookback.shape == (256, 100) and target.shape == (256, 10) and count.shape == (256,)


def test_twopi_phase_range_is_half_open() -> None:
    h = sample_harmonics(SignalSpec(), stream_key(9), _counters(5000))
    assert float(h.phase.max()) < 2 * math.pi
