"""The fast stream draws signals from the same distribution as the seed's per-signal generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from harmonic_forecast import HarmonicStream, SignalSpec
from harmonic_forecast.counter_rng import stream_key
from harmonic_forecast.signals import SLOTS_PER_SIGNAL, sample_harmonics
from tests.reference_generator import generate_many

COUNT = 20_000
P_MIN = 1e-3  # a fixed-seed test: deterministic, and a wrong distribution fails far below this


@pytest.fixture(scope="module")
def reference() -> list:
    return generate_many(COUNT, seed=1)


@pytest.fixture(scope="module")
def spec() -> SignalSpec:
    return SignalSpec(lookback=100, horizon=10, components=(3, 45), periods=(10, 100), noise=0.0)


@pytest.fixture(scope="module")
def harmonics(spec: SignalSpec):
    counters = torch.arange(COUNT, dtype=torch.int64) * SLOTS_PER_SIGNAL
    return sample_harmonics(spec, stream_key(7), counters)


@pytest.fixture(scope="module")
def signals(spec: SignalSpec) -> np.ndarray:
    lookback, target = HarmonicStream(spec, batch_size=COUNT, seed=7).batch(0)
    return torch.cat([lookback, target], dim=1).double().numpy()


def _two_sample_histogram_p(ours: np.ndarray, theirs: np.ndarray, values: np.ndarray) -> float:
    table = np.stack([[np.sum(ours == v) for v in values], [np.sum(theirs == v) for v in values]])
    return stats.chi2_contingency(table).pvalue


def test_component_count_histogram_matches(harmonics, reference) -> None:
    ours = harmonics.count.numpy()
    theirs = np.array([len(r.periods) for r in reference])
    assert ours.min() == 3 and ours.max() == 44
    assert _two_sample_histogram_p(ours, theirs, np.arange(3, 45)) > P_MIN


def test_period_histogram_matches(harmonics, reference) -> None:
    active = harmonics.amplitude > 0
    ours = harmonics.period[active].numpy().astype(int)
    theirs = np.concatenate([r.periods for r in reference])
    assert ours.min() >= 10 and ours.max() <= 99
    assert _two_sample_histogram_p(ours, theirs, np.arange(10, 100)) > P_MIN


def test_amplitudes_sum_to_one_and_match(harmonics, reference) -> None:
    sums = harmonics.amplitude.sum(dim=1)
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-5, rtol=0)
    active = harmonics.amplitude > 0
    assert torch.equal(active.sum(dim=1), harmonics.count)
    ours = harmonics.amplitude[active].numpy()
    theirs = np.concatenate([r.amplitudes for r in reference])
    assert stats.ks_2samp(ours, theirs).pvalue > P_MIN
    largest_ours = harmonics.amplitude.max(dim=1).values.numpy()
    largest_theirs = np.array([r.amplitudes.max() for r in reference])
    assert stats.ks_2samp(largest_ours, largest_theirs).pvalue > P_MIN


def test_phases_are_uniform(harmonics) -> None:
    phases = harmonics.phase[harmonics.amplitude > 0].numpy()
    assert phases.min() >= 0 and phases.max() < 2 * np.pi
    assert stats.kstest(phases, stats.uniform(0, 2 * np.pi).cdf).pvalue > P_MIN


def test_peak_is_one(signals) -> None:
    assert np.all(np.abs(signals).max(axis=1) == 1.0)


def test_per_step_mean_and_variance_match(signals, reference) -> None:
    theirs = np.stack([r.signal for r in reference])
    n = len(signals)
    mean_gap = np.abs(signals.mean(0) - theirs.mean(0))
    mean_se = np.sqrt(signals.var(0) / n + theirs.var(0) / n)
    assert np.all(mean_gap < 5 * mean_se)
    var_gap = np.abs(signals.var(0) - theirs.var(0))
    var_se = np.sqrt(2 / n * (signals.var(0) ** 2 + theirs.var(0) ** 2))  # standard error of a variance
    assert np.all(var_gap < 6 * var_se)


@pytest.mark.parametrize("step", [0, 37, 99, 100, 109])
def test_value_distribution_at_each_step_matches(signals, reference, step: int) -> None:
    theirs = np.array([r.signal[step] for r in reference])
    assert stats.ks_2samp(signals[:, step], theirs).pvalue > P_MIN


def test_noisy_signals_match() -> None:
    spec = SignalSpec(components=(3, 10), noise=0.1)
    lookback, target = HarmonicStream(spec, batch_size=8192, seed=3).batch(0)
    ours = torch.cat([lookback, target], dim=1).double().numpy()
    theirs = np.stack([r.signal for r in generate_many(8192, seed=2, components=(3, 10), noise=0.1)])
    assert np.all(np.abs(ours).max(axis=1) == 1.0)
    assert stats.ks_2samp(ours[:, 50], theirs[:, 50]).pvalue > P_MIN
    roughness_ours = np.abs(np.diff(ours, axis=1)).mean(axis=1)
    roughness_theirs = np.abs(np.diff(theirs, axis=1)).mean(axis=1)
    assert stats.ks_2samp(roughness_ours, roughness_theirs).pvalue > P_MIN


def test_noise_is_standard_normal() -> None:
    from harmonic_forecast.signals import gaussian_noise

    spec = SignalSpec(lookback=1000, horizon=10)
    counters = torch.arange(400, dtype=torch.int64) * SLOTS_PER_SIGNAL
    noise = gaussian_noise(spec, stream_key(0), counters).flatten().double().numpy()
    assert stats.kstest(noise, "norm").pvalue > P_MIN


def test_continuous_periods_are_uniform() -> None:
    spec = SignalSpec(components=(3, 10), periods=(10.0, 100.0), integer_periods=False)
    counters = torch.arange(5000, dtype=torch.int64) * SLOTS_PER_SIGNAL
    h = sample_harmonics(spec, stream_key(0), counters)
    periods = h.period[h.amplitude > 0].double().numpy()
    assert periods.min() >= 10 and periods.max() < 100
    assert stats.kstest(periods, stats.uniform(10, 90).cdf).pvalue > P_MIN
