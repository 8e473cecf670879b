"""Signal families (periods, pure tones, level, trend, drift, random walk, noise kinds) and mixtures.

Each family is checked against the per-signal numpy oracle in tests/reference_generator.py (KS and
chi-square on drawn parameters and per-step values); mixtures against their single-family streams.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from harmonic_forecast import ConfigError, HarmonicStream, SignalSpec
from harmonic_forecast.config import parse_run_config
from harmonic_forecast.counter_rng import stream_key
from harmonic_forecast.signals import (
    SLOTS_PER_SIGNAL,
    Family,
    ar1_coefficient,
    level_and_trend,
    level_shifts,
    linear_recurrence,
    random_walk,
    render_direct,
    render_gemm,
    sample_harmonics,
    synthesize,
    unit_noise,
)
from tests.reference_generator import generate_family_many

P_MIN = 1e-3  # fixed seeds: deterministic, and a wrong distribution fails far below this
COUNT = 6000


def _counters(count: int, first: int = 0) -> torch.Tensor:
    return torch.arange(first, first + count, dtype=torch.int64) * SLOTS_PER_SIGNAL


def _stream_signals(spec: SignalSpec, count: int = COUNT, seed: int = 7) -> np.ndarray:
    lookback, target = HarmonicStream(spec, batch_size=count, seed=seed).batch(0)
    return torch.cat([lookback, target], dim=1).double().numpy()


def _whole(stream: HarmonicStream, index: int) -> torch.Tensor:
    return torch.cat(stream.batch(index), dim=1)


# Batch 5 (batch 256, seed 3) of each spec, every fourth row, in tests/data/golden_batches.npz: the values a
# spec drew before signal families existed (commit 02a6245), re-taken at rounding-level changes of the
# renderer (the block factorisation of render_direct: max |new - old| 1.4e-6; float64 tables for integer
# periods: 1.0e-6; render_gemm's inner dimension in pieces: 1.2e-7). They were sha256 digests of the bits
# until 2026-12-01, when a fresh clone on an AMD EPYC (AVX2) machine drew noisy_drift, continuous and
# equal_raw up to 4e-7 away from the bits taken on another CPU: MKL's float32 kernels, and so the last
# bits of a batch, differ between instruction sets. The batches are compared to 1e-5 here; bit-identity on
# one machine (world sizes, thread counts, resume, the rows a batch is made of) is tested below.
GOLDEN = {
    "default": SignalSpec(),
    "noisy_drift": SignalSpec(components=(3, 20), noise=(0.0, 0.1, 0.3), drift=True),
    "continuous": SignalSpec(components=(1, 8), periods=(2.0, 500.0), integer_periods=False, noise=0.05),
    "equal_raw": SignalSpec(components=(1, 4), periods=(2, 1000), amplitudes="equal", normalize=False),
}
GOLDEN_BATCHES = Path(__file__).parent / "data" / "golden_batches.npz"
GOLDEN_TOLERANCE = 1e-5  # far above float32 rounding across CPUs, far below any change of what is drawn


@pytest.mark.parametrize("name", list(GOLDEN))
def test_existing_specs_give_the_same_batches(name: str) -> None:
    batch = _whole(HarmonicStream(GOLDEN[name], batch_size=256, seed=3), 5)[::4]
    with np.load(GOLDEN_BATCHES) as stored:
        np.testing.assert_allclose(batch.numpy(), stored[name], rtol=0, atol=GOLDEN_TOLERANCE)


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"level": (1.0, -1.0)}, "signal.level"),
        ({"level": 0.5}, "signal.level"),
        ({"trend": (0.0, 100.0)}, "signal.trend"),
        ({"trend": (0.0, float("nan"))}, "signal.trend[1]"),
        ({"level_shift": (2.0, -2.0)}, "signal.level_shift"),
        ({"families": [{"weight": 1}, {"weight": 1, "level_shift": 1.0}]}, "signal.families[1].level_shift"),
        ({"drift": "linearly"}, "signal.drift"),
        ({"drift": 1}, "signal.drift"),
        ({"random_walk": -0.1}, "signal.random_walk"),
        ({"noise_kind": "cauchy"}, "signal.noise_kind"),
        ({"noise_df": 2}, "signal.noise_df"),
        ({"noise_phi": (-1.0, 0.5)}, "signal.noise_phi"),
        ({"noise_phi": (0.5, 0.2)}, "signal.noise_phi"),
        ({"families": {"weight": 1}}, "signal.families"),
        ({"families": [{"weight": 1}]}, "signal.families"),
        ({"families": [{"weight": 1}, {"noise": 0.1}]}, "signal.families[1]"),
        ({"families": [{"weight": 1}, {"weight": 1.5}]}, "signal.families[1].weight"),
        ({"families": [{"weight": 1}, {"weight": 1, "horizon": 5}]}, "signal.families[1].horizon"),
        ({"families": [{"weight": 1}, {"weight": 1, "noyse": 5}]}, "signal.families[1].noyse"),
        ({"families": [{"weight": 1}, {"weight": 1, "trend": (1.0, 0.0)}]}, "signal.families[1].trend"),
        ({"families": [{"weight": 1}, {"weight": 1, "components": (0, 2)}]}, "signal.families[1].components"),
    ],
)
def test_invalid_family_values_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        SignalSpec(**changes)
    message = str(error.value)
    assert message.startswith(field + ":") and "\n" not in message


def test_family_fields_are_the_specs_and_the_streams_are_refused() -> None:
    assert set(Family.model_fields) == set(SignalSpec.model_fields) | {"weight"}
    with pytest.raises(ConfigError, match=r"^signal\.families\[0\]\.lookback: a family cannot override it"):
        SignalSpec(families=[{"weight": 1, "lookback": 50}, {"weight": 1}])


def test_families_round_trip_and_stay_hashable() -> None:
    spec = SignalSpec.from_dict(
        {
            "noise": 0.01,
            "families": [{"weight": 3}, {"weight": 1, "noise": [0.1, 0.2], "level": [-2, 2], "drift": "linear"}],
        }
    )
    assert SignalSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["families"][1] == {"weight": 1, "drift": "linear", "level": [-2.0, 2.0], "noise": [0.1, 0.2]}
    assert hash(spec) == hash(SignalSpec.from_dict(spec.to_dict()))
    assert [(first, stop, member.noise) for first, stop, member in spec.members] == [(0, 3, 0.01), (3, 4, (0.1, 0.2))]
    assert spec.replace(components=(3, 10)).members[1][2].components == (3, 10)  # a family follows the base band


def test_stage_families_parse_and_errors_name_the_stage() -> None:
    text = """
        [signal]
        [[signal.families]]
        weight = 3
        [[signal.families]]
        weight = 1
        trend = [-0.02, 0.02]
        [[stages]]
        components = [3, 10]
        steps = 5
        [[stages]]
        components = [3, 20]
        steps = 5
        drift = "linear"
        [[stages.families]]
        weight = 1
        [[stages.families]]
        weight = 1
        noise = 0.1
        noise_kind = "laplace"
        """
    values = tomllib.loads(text)
    config = parse_run_config(values)
    first, second = (config.stage_spec(stage) for stage in config.stages)
    assert [m[2].trend for m in first.members] == [(0.0, 0.0), (-0.02, 0.02)]
    assert [m[2].noise_kind for m in second.members] == ["gaussian", "laplace"]
    assert second.drift == "linear" and second.components == (3, 20)
    values["stages"][1]["families"][1]["noise_df"] = 1.5
    with pytest.raises(ConfigError, match=r"^stages\[1\]\.families\[1\]\.noise_df:"):
        parse_run_config(values)


# --- periods and component counts ------------------------------------------------------------------


def _formula(spec: SignalSpec, h) -> np.ndarray:
    """Per-signal float64 harmonic part, with the linear gain when drawn (the oracle for rendering)."""
    t = np.arange(spec.length, dtype=np.float64)
    out = np.zeros((len(h.count), spec.length))
    for row in range(len(h.count)):
        for slot in range(int(h.count[row])):
            wave = float(h.amplitude[row, slot]) * np.sin(
                2 * np.pi * t / float(h.period[row, slot]) + float(h.phase[row, slot])
            )
            if h.gain_start is not None:
                g0, g1 = float(h.gain_start[row, slot]), float(h.gain_end[row, slot])
                wave *= g0 + (g1 - g0) * t / (spec.length - 1)
            out[row] += wave
    return out


@pytest.mark.parametrize(
    "spec",
    [
        SignalSpec(components=(1, 2), periods=(2, 11)),
        SignalSpec(components=(1, 6), periods=(100, 1000)),
        SignalSpec(components=(1, 6), periods=(2.0, 10.0), integer_periods=False),
        SignalSpec(components=(1, 6), periods=(100.0, 1000.0), integer_periods=False, lookback=400),
        SignalSpec(components=(1, 6), periods=(2.0, 5000.0), integer_periods=False, lookback=2000),
        SignalSpec(components=(1, 6), periods=(5.0, 300.0), integer_periods=False, drift="linear"),
        SignalSpec(components=(1, 20), periods=(2, 300), drift="linear", drift_range=(0.1, 3.0)),
    ],
    ids=[
        "tone-2..10",
        "int-100..1000",
        "cont-2..10",
        "cont-100..1000",
        "cont-2..5000-long",
        "linear-drift",
        "gemm-linear",
    ],
)
def test_rendering_matches_the_formula_for_short_and_long_periods(spec: SignalSpec) -> None:
    h = sample_harmonics(spec, stream_key(5), _counters(150))
    rendered = render_gemm(spec, h) if spec.integer_periods else render_direct(spec, h)
    np.testing.assert_allclose(rendered.numpy(), _formula(spec, h), atol=1e-5 if spec.length < 1000 else 3e-5)


@pytest.mark.parametrize(
    ("periods", "integer"),
    [((2, 11), True), ((100, 1000), True), ((2.0, 10.0), False), ((100.0, 1000.0), False)],
)
def test_period_and_count_histograms_match_the_reference(periods: tuple, integer: bool) -> None:
    spec = SignalSpec(components=(1, 5), periods=periods, integer_periods=integer)
    h = sample_harmonics(spec, stream_key(2), _counters(COUNT))
    reference = generate_family_many(COUNT, seed=3, components=(1, 5), periods=periods, integer_periods=integer)
    counts = h.count.numpy()
    theirs_counts = np.array([len(r.periods) for r in reference])
    assert counts.min() == 1 and counts.max() == 4
    table = np.stack([np.bincount(counts, minlength=5)[1:], np.bincount(theirs_counts, minlength=5)[1:]])
    assert stats.chi2_contingency(table).pvalue > P_MIN
    ours = h.period[h.amplitude > 0].double().numpy()
    theirs = np.concatenate([r.periods for r in reference]).astype(np.float64)
    assert ours.min() >= periods[0] and ours.max() < periods[1]
    assert stats.ks_2samp(ours, theirs).pvalue > P_MIN


def test_pure_tones_have_one_component_of_unit_amplitude() -> None:
    spec = SignalSpec(components=(1, 2), periods=(2, 11))
    h = sample_harmonics(spec, stream_key(0), _counters(500))
    assert torch.equal(h.count, torch.ones(500, dtype=torch.int64))
    torch.testing.assert_close(h.amplitude[:, 0], torch.ones(500))


# --- level, trend, drift, random walk --------------------------------------------------------------

FAMILY = {
    "components": (3, 10),
    "level": (-2.0, 2.0),
    "trend": (-0.02, 0.02),
    "drift_range": (0.5, 2.0),
    "random_walk": 0.05,
    "noise": 0.1,
    "noise_kind": "student_t",
    "noise_df": 4.0,
}


@pytest.fixture(scope="module")
def family_pair() -> tuple[np.ndarray, list]:
    spec = SignalSpec(**FAMILY, drift="linear")
    reference_kwargs = {key: value for key, value in FAMILY.items() if key != "drift_range"}
    reference = generate_family_many(COUNT, seed=4, linear_drift=FAMILY["drift_range"], **reference_kwargs)
    return _stream_signals(spec), reference


def test_level_and_trend_are_uniform_on_their_ranges(family_pair) -> None:
    spec = SignalSpec(**FAMILY)
    level, trend = level_and_trend(spec, stream_key(1), _counters(COUNT))
    _, reference = family_pair
    for ours, theirs, (low, high) in [
        (level, [r.level for r in reference], spec.level),
        (trend, [r.trend for r in reference], spec.trend),
    ]:
        ours = ours.double().numpy()
        assert ours.min() >= low and ours.max() < high
        assert stats.kstest(ours, stats.uniform(low, high - low).cdf).pvalue > P_MIN
        assert stats.ks_2samp(ours, theirs).pvalue > P_MIN
    assert abs(stats.pearsonr(level.numpy(), trend.numpy())[0]) < 0.05  # independent bit fields


def test_linear_drift_gains_match_the_reference(family_pair) -> None:
    spec = SignalSpec(**FAMILY, drift="linear")
    h = sample_harmonics(spec, stream_key(1), _counters(COUNT))
    assert h.drift_ratio is None and h.gain_start is not None and h.gain_end is not None
    active = (h.amplitude > 0).numpy()
    _, reference = family_pair
    for ours, theirs in [
        (h.gain_start, [r.gain_start for r in reference]),
        (h.gain_end, [r.gain_end for r in reference]),
    ]:
        ours = ours.double().numpy()[active]
        assert ours.min() >= 0.5 and ours.max() < 2.0
        assert stats.ks_2samp(ours, np.concatenate(theirs)).pvalue > P_MIN


def test_level_and_trend_add_exactly_before_normalisation() -> None:
    base = SignalSpec(components=(3, 10), normalize=False)
    shifted = base.replace(level=(-2.0, 2.0), trend=(-0.02, 0.02))
    counters, key = _counters(300), stream_key(6)
    plain, _ = synthesize(base, key, counters)
    moved, _ = synthesize(shifted, key, counters)
    level, trend = level_and_trend(shifted, key, counters)
    t = torch.arange(base.length, dtype=torch.float32)
    torch.testing.assert_close(moved, plain + level[:, None] + trend[:, None] * t, atol=1e-5, rtol=0)


def test_level_shift_height_and_time_match_the_reference() -> None:
    """Height uniform on its closed range, time uniform over the window, independent, as the numpy oracle draws them."""
    spec = SignalSpec(components=(3, 10), level_shift=(-2.0, 1.0))
    height, time = (x.double().numpy() for x in level_shifts(spec, stream_key(1), _counters(COUNT)))
    reference = generate_family_many(COUNT, seed=5, components=(3, 10), level_shift=(-2.0, 1.0))
    assert height.min() >= -2.0 and height.max() < 1.0 and time.min() >= 0 and time.max() < spec.length
    assert stats.kstest(height, stats.uniform(-2.0, 3.0).cdf).pvalue > P_MIN
    assert stats.kstest(time, stats.uniform(0, spec.length).cdf).pvalue > P_MIN
    assert stats.ks_2samp(height, [r.shift[0] for r in reference]).pvalue > P_MIN
    assert stats.ks_2samp(time, [r.shift[1] for r in reference]).pvalue > P_MIN
    assert abs(stats.pearsonr(height, time)[0]) < 0.05  # independent bit fields


def test_a_level_shift_adds_one_step_before_normalisation() -> None:
    base = SignalSpec(components=(3, 10), normalize=False)
    shifted = base.replace(level_shift=(-2.0, 2.0))
    counters, key = _counters(300), stream_key(6)
    plain, _ = synthesize(base, key, counters)
    moved, _ = synthesize(shifted, key, counters)
    height, time = level_shifts(shifted, key, counters)
    step = (torch.arange(base.length) >= time[:, None]).float()
    torch.testing.assert_close(moved, plain + height[:, None] * step, atol=1e-6, rtol=0)
    assert (moved != plain).any(dim=1).float().mean() > 0.8, "most windows hold their step"


def test_random_walk_steps_are_normal_with_the_given_sigma() -> None:
    spec = SignalSpec(lookback=1000, random_walk=0.05)
    walk = random_walk(spec, stream_key(0), _counters(400)).double().numpy()
    assert np.all(walk[:, 0] == 0)
    steps = np.diff(walk, axis=1).ravel()
    assert stats.kstest(steps, stats.norm(scale=0.05).cdf).pvalue > P_MIN
    assert abs(np.corrcoef(np.diff(walk, axis=1)[:, 1:].ravel(), np.diff(walk, axis=1)[:, :-1].ravel())[0, 1]) < 0.02


def test_family_per_step_values_match_the_reference(family_pair) -> None:
    ours, reference = family_pair
    theirs = np.stack([r.signal for r in reference])
    assert np.all(np.abs(ours).max(axis=1) == 1.0)
    for step in (0, 55, 99, 109):
        assert stats.ks_2samp(ours[:, step], theirs[:, step]).pvalue > P_MIN
    roughness = [np.abs(np.diff(x, axis=1)).mean(axis=1) for x in (ours, theirs)]
    assert stats.ks_2samp(*roughness).pvalue > P_MIN


@pytest.mark.parametrize(
    "changes",
    [
        {"components": (1, 2), "periods": (2, 11), "noise": 0.05, "noise_kind": "laplace"},
        {"periods": (100, 1000), "level": (-1.0, 1.0)},
        {"periods": (2.0, 10.0), "integer_periods": False, "noise": 0.2, "noise_kind": "ar1", "noise_phi": (-0.5, 0.9)},
        {"random_walk": 0.1, "normalize": False},
        {"level_shift": (-2.0, 2.0), "noise": 0.05},
    ],
    ids=["tone-laplace", "long-level", "short-ar1", "walk-raw", "shift"],
)
def test_more_families_per_step_values_match_the_reference(changes: dict) -> None:
    spec = SignalSpec(**{"components": (3, 10), **changes})
    ours = _stream_signals(spec, count=4000, seed=8)
    reference_kwargs = {"components": (3, 10), **changes}
    theirs = np.stack([r.signal for r in generate_family_many(4000, seed=9, **reference_kwargs)])
    for step in (0, 50, 109):
        assert stats.ks_2samp(ours[:, step], theirs[:, step]).pvalue > P_MIN
    lag1 = [np.mean(x[:, 1:] * x[:, :-1], axis=1) for x in (ours, theirs)]
    assert stats.ks_2samp(*lag1).pvalue > P_MIN


# --- noise kinds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "law"),
    [
        ("gaussian", stats.norm()),
        ("laplace", stats.laplace(scale=2**-0.5)),
        ("student_t", stats.t(4, scale=0.5**0.5)),
    ],
)
def test_white_noise_kinds_have_their_law_at_unit_std(kind: str, law) -> None:
    spec = SignalSpec(lookback=1000, noise_kind=kind, noise_df=4.0)
    noise = unit_noise(spec, stream_key(3), _counters(300))
    assert noise.dtype == torch.float32 and noise.shape == (300, spec.length)
    values = noise.double().numpy()
    assert stats.kstest(values.ravel(), law.cdf).pvalue > P_MIN
    assert abs(values.std() - 1) < 0.02
    assert abs(np.corrcoef(values[:, 1:].ravel(), values[:, :-1].ravel())[0, 1]) < 0.02


def test_ar1_noise_is_stationary_with_the_drawn_phi() -> None:
    spec = SignalSpec(noise_kind="ar1", noise_phi=(-0.5, 0.9))
    counters, key = _counters(COUNT), stream_key(4)
    phi = ar1_coefficient(spec, key, counters).double().numpy()
    reference = generate_family_many(
        COUNT, seed=5, components=(1, 2), noise=1.0, noise_kind="ar1", noise_phi=(-0.5, 0.9), normalize=False
    )
    assert phi.min() >= -0.5 and phi.max() < 0.9
    assert stats.ks_2samp(phi, [r.phi for r in reference]).pvalue > P_MIN
    noise = unit_noise(spec, key, counters).double().numpy()
    for step in (0, 1, 60, 109):
        assert stats.kstest(noise[:, step], "norm").pvalue > P_MIN  # stationary, unit marginal std
    one = phi > 0.7
    lag = np.mean(noise[one, 1:] * noise[one, :-1]) / np.mean(noise[one] ** 2)
    assert abs(lag - phi[one].mean()) < 0.02


def test_linear_recurrence_equals_the_loop() -> None:
    coefficient = torch.tensor([[0.9], [-0.5], [0.0]], dtype=torch.float64)
    drive = torch.randn(3, 37, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = drive.clone()
    for step in range(1, 37):
        expected[:, step] += coefficient[:, 0] * expected[:, step - 1]
    torch.testing.assert_close(linear_recurrence(coefficient, drive), expected)


# --- mixtures --------------------------------------------------------------------------------------

MIXTURE = SignalSpec(
    components=(3, 20),
    noise=[0.0, 0.1],
    families=[
        {"weight": 3},
        {"weight": 1, "components": (1, 2), "periods": (2, 11)},
        {"weight": 1, "level": (-2.0, 2.0), "trend": (-0.02, 0.02), "drift": "linear"},
        {"weight": 1, "random_walk": 0.05, "periods": (100.0, 1000.0), "integer_periods": False},
        {"weight": 1, "noise": 0.1, "noise_kind": "laplace"},
        {"weight": 1, "noise": 0.1, "noise_kind": "student_t", "noise_df": 3.0},
        {"weight": 1, "noise": 0.1, "noise_kind": "ar1", "noise_phi": (0.0, 0.9), "drift": True},
    ],
)


def test_mixture_rows_are_their_family_signals_in_fixed_proportions() -> None:
    batch, period = 36, 9
    mixed = HarmonicStream(MIXTURE, batch_size=batch, seed=5, world_size=2, rank=1, return_components=True)
    start = 2 * batch + batch // 2  # the first signal of rank 1's share of batch 2
    rows_of = {}
    for first, stop, member in MIXTURE.members:
        single = HarmonicStream(member, batch_size=batch, seed=5, world_size=2, rank=1, return_components=True)
        rows = [row for row in range(batch // 2) if first <= (start + row) % period < stop]
        rows_of[first] = rows
        *signal, count = mixed.batch(2)
        *expected, expected_count = single.batch(2)
        assert torch.equal(torch.cat(signal, dim=1)[rows], torch.cat(expected, dim=1)[rows])
        assert torch.equal(count[rows], expected_count[rows])
    whole = HarmonicStream(MIXTURE, batch_size=9 * 40, seed=5, return_components=True)
    counts = whole.batch(0)[2]
    assert int((counts == 1).sum()) >= 40  # the pure-tone family: exactly 1 in every 9 signals
    assert sorted(len(rows) for rows in rows_of.values()) == [2, 2, 2, 2, 2, 2, 6]


@pytest.mark.parametrize("world_size", [2, 4, 8])
def test_mixture_shares_concatenate_to_the_same_batch(world_size: int) -> None:
    single = HarmonicStream(MIXTURE, batch_size=64, seed=3, world_size=1, rank=0)
    for index in (0, 1, 17):
        shares = [
            _whole(HarmonicStream(MIXTURE, batch_size=64, seed=3, world_size=world_size, rank=rank), index)
            for rank in range(world_size)
        ]
        assert torch.equal(torch.cat(shares), _whole(single, index))


def test_mixture_resumes_exactly_on_another_world_size() -> None:
    uninterrupted = HarmonicStream(MIXTURE, batch_size=64, seed=4)
    expected = [torch.cat(b, dim=1) for _, b in zip(range(6), uninterrupted, strict=False)]
    saved = HarmonicStream(MIXTURE, batch_size=64, seed=4, world_size=4, rank=2)
    iterator = iter(saved)
    for _ in range(4):
        next(iterator)
    pair = [HarmonicStream(MIXTURE, batch_size=64, seed=4, world_size=2, rank=r) for r in range(2)]
    for stream in pair:
        stream.load_state_dict(saved.state_dict())
    iterators = [iter(stream) for stream in pair]
    for position in (4, 5):
        resumed = torch.cat([torch.cat(next(iterator), dim=1) for iterator in iterators])
        assert torch.equal(resumed, expected[position])
    assert torch.isfinite(expected[0]).all() and torch.equal(expected[0].abs().amax(dim=1), torch.ones(64))


# --- thread count ----------------------------------------------------------------------------------


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


LONG_GRID = SignalSpec(components=(1, 45), periods=(10, 1000), drift="linear")  # 3960 table rows: 16 pieces


@pytest.mark.parametrize("spec", [*GOLDEN.values(), LONG_GRID, MIXTURE], ids=[*GOLDEN, "long_grid", "mixture"])
def test_batches_do_not_depend_on_the_thread_count(spec: SignalSpec, restore_threads) -> None:
    """Launchers give each process fewer threads than a lone process has: the bits must not change."""
    batches = []
    for threads in (1, 2, 3):
        torch.set_num_threads(threads)
        batches.append(torch.cat([_whole(HarmonicStream(spec, batch_size=size, seed=3), 5) for size in (16, 1000)]))
    assert torch.equal(batches[0], batches[1])
    assert torch.equal(batches[0], batches[2])


def test_a_drift_peak_drawn_in_the_top_bin_gives_a_finite_signal() -> None:
    """Signal 4802 of batch 4 (8192 signals, seed 0) draws a 1 -> r -> 1 peak in the top bin of its 24-bit
    field; it was exactly the last sample, and the signal was NaN (and `train` with drift = true crashed)."""
    spec = SignalSpec(lookback=100, horizon=10, drift=True)
    lookback, target = HarmonicStream(spec, batch_size=1, seed=0, split="train").batch(4 * 8192 + 4802)
    assert torch.isfinite(lookback).all() and torch.isfinite(target).all()
    assert float(torch.cat([lookback, target], dim=1).abs().max()) == 1.0
