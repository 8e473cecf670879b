"""The counter-based generator matches its Python specification bit for bit, on any counter."""

from __future__ import annotations

import random

import torch

from harmonic_forecast.counter_rng import (
    GOLDEN,
    mix64_,
    mix64_reference,
    random_words,
    stream_key,
    uniform,
    uniform_index,
    words_for,
)


def _unsigned(value: int) -> int:
    return value & ((1 << 64) - 1)


def test_tensor_mix_matches_reference_bit_for_bit() -> None:
    rng = random.Random(0)
    values = [0, 1, 2**63 - 1, 2**63, 2**64 - 1, *(rng.getrandbits(64) for _ in range(2000))]
    signed = [v - 2**64 if v >= 2**63 else v for v in values]
    mixed = mix64_(torch.tensor(signed, dtype=torch.int64)).tolist()
    assert [_unsigned(m) for m in mixed] == [mix64_reference(v) for v in values]


def test_words_are_the_reference_hash_of_key_plus_counter() -> None:
    key = stream_key(123)
    counters = torch.tensor([0, 1, 5, 2**40 + 17, 2**62 + 3], dtype=torch.int64)
    expected = [mix64_reference(_unsigned(key) + c * _unsigned(GOLDEN)) for c in counters.tolist()]
    assert [_unsigned(w) for w in random_words(key, counters).tolist()] == expected


def test_words_for_equals_words_of_summed_counters() -> None:
    rows = torch.tensor([0, 4096, 8192 * 7], dtype=torch.int64)
    columns = torch.arange(50, dtype=torch.int64)
    grid = words_for(99, rows, columns)
    assert torch.equal(grid, random_words(99, rows[:, None] + columns[None, :]))


def test_distinct_counters_give_distinct_words_and_seeds_give_distinct_keys() -> None:
    words = random_words(stream_key(0), torch.arange(200_000, dtype=torch.int64))
    assert words.unique().numel() == 200_000
    assert len({stream_key(seed) for seed in range(10_000)}) == 10_000


def test_uniform_ranges_and_moments() -> None:
    words = random_words(stream_key(1), torch.arange(100_000, dtype=torch.int64))
    for shift, width in [(40, 24), (44, 20), (0, 24), (16, 24)]:
        values = uniform(words, shift, width)
        assert values.dtype == torch.float32
        assert float(values.min()) >= 0 and float(values.max()) < 1
        assert abs(float(values.mean()) - 0.5) < 0.005
        assert abs(float(values.var()) - 1 / 12) < 0.002
    open_values = uniform(words, 40, 24, open_low=True)
    assert float(open_values.min()) > 0


def test_open_uniforms_stay_inside_zero_one_at_the_top_bin() -> None:
    """The top bin's centre of a 24-bit field, 1 - 2**-25, is no float32: it rounded to 1.0, which put a
    1 -> r -> 1 drift peak on the window's last sample, and a division by zero made the signal NaN."""
    top = torch.tensor([-1], dtype=torch.int64)  # every bit set: the top bin of any field
    for width in (1, 20, 23, 24):
        value = float(uniform(top, 0, width, open_low=True)[0])
        assert 1 - 2.0**-width <= value < 1
        assert float(uniform(torch.zeros(1, dtype=torch.int64), 0, width, open_low=True)[0]) == 2.0 ** -(width + 1)


def test_uniform_index_covers_range_evenly() -> None:
    words = random_words(stream_key(2), torch.arange(90_000, dtype=torch.int64))
    index = uniform_index(words, 0, 90)
    counts = torch.bincount(index, minlength=90)
    assert counts.numel() == 90 and int(index.min()) == 0 and int(index.max()) == 89
    assert int(counts.min()) > 850 and int(counts.max()) < 1150
