"""Counter-based random numbers: every random word is a pure function of (seed, counter).

A word is ``mix64(key + counter * GOLDEN)`` with SplitMix64's finaliser, a bijection on 64-bit
integers, computed with wrapping int64 tensor arithmetic. No generator state exists, so any
sample of any batch can be produced on any device, by any rank, in any order, with identical
bits; the stream of the framework is built on this.
"""

from __future__ import annotations

import torch

_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    """Two's-complement int64 view of an unsigned 64-bit constant."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def mix64_reference(value: int) -> int:
    """SplitMix64's finaliser on a Python int (the specification the tensor version must match)."""
    value &= _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def mix64_(words: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser applied in place to an int64 tensor (logical shifts via masks)."""
    shifted = torch.empty_like(words)  # one scratch tensor for the three shifts
    for shift, multiplier in ((30, _MIX1), (27, _MIX2), (31, None)):
        torch.bitwise_right_shift(words, shift, out=shifted).bitwise_and_((1 << (64 - shift)) - 1)
        words.bitwise_xor_(shifted)
        if multiplier is not None:
            words.mul_(multiplier)
    return words


def stream_key(seed: int) -> int:
    """The int64 key of a seed; distinct seeds in [0, 2**64) give distinct keys."""
    return _signed(mix64_reference(seed + 0x5851F42D4C957F2D))


def random_words(key: int, counters: torch.Tensor) -> torch.Tensor:
    """Random int64 words for int64 ``counters`` (any shape): distinct counters, distinct words."""
    return mix64_(counters.mul(GOLDEN).add_(key))


def words_for(key: int, row_counters: torch.Tensor, column_offsets: torch.Tensor) -> torch.Tensor:
    """Words ``[rows, columns]`` for counters ``row_counters[:, None] + column_offsets[None, :]``.

    Multiplication distributes over the wrapping sum, so the per-element work is one add and the
    mix; the products are formed on the two short vectors only.
    """
    rows = row_counters.mul(GOLDEN).add_(key)
    columns = column_offsets.mul(GOLDEN)
    return mix64_(rows[:, None] + columns[None, :])


def bit_field(words: torch.Tensor, shift: int, width: int) -> torch.Tensor:
    """The unsigned integer in bits ``[shift, shift + width)`` of each word (int64)."""
    return (words >> shift).bitwise_and_((1 << width) - 1)


_BELOW_ONE = 1.0 - 2.0**-24  # the largest float32 below 1


def uniform(words: torch.Tensor, shift: int, width: int, *, open_low: bool = False) -> torch.Tensor:
    """Float32 uniforms on [0, 1) from a bit field of ``width`` <= 24 bits (exact in float32).

    With ``open_low`` the values sit at bin centres, in (0, 1), so they can be logged or divided by. The top
    bin's centre of a 24-bit field, ``1 - 2**-25``, is not a float32 (it would round to 1.0): it is taken as
    the largest float32 below 1.
    """
    if width > 24:
        raise ValueError("a float32 uniform holds at most 24 random bits")
    field = bit_field(words, shift, width).to(torch.float32)
    if not open_low:
        return field.mul_(2.0**-width)
    field.add_(0.5).mul_(2.0**-width)
    return field.clamp_(max=_BELOW_ONE) if width == 24 else field  # narrower fields' top centres are float32s


def uniform_index(words: torch.Tensor, shift: int, count: int, width: int = 24) -> torch.Tensor:
    """Integers uniform on ``[0, count)`` from a bit field, by exact integer scaling (int64)."""
    return (bit_field(words, shift, width) * count) >> width
