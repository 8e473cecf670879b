"""Sums of harmonics and their families: the validated signal spec, and batched synthesis on any device.

A signal has ``K ~ U{k_lo, k_hi - 1}`` components with periods, phases and amplitudes drawn per
component (amplitudes sum to 1), and is built in this order, for ``t = 0 .. lookback + horizon - 1``:

1. the harmonic part ``h_t = sum_k a_k g_k(t) sin(2 pi t / P_k + phi_k)``; ``g_k`` is 1 unless
   amplitude drift is on (``drift = true``: 1 -> r -> 1 at a random time; ``"linear"``: g0 -> g1);
2. plus a level (DC offset) ``c``, a linear trend ``b t``, a level shift ``d 1[t >= tau]`` (a step of
   height ``d`` at a time ``tau ~ U[0, lookback + horizon)``) and a random walk ``w_t = s sum_{u=1..t} e_u``
   (``w_0 = 0``, ``e_u`` standard normal), all in units of the harmonic part's amplitude sum (1);
3. ``x /= max |x|`` over the whole window (when ``normalize``);
4. plus noise of marginal std σ: white Gaussian, Laplace, Student-t with ν degrees of freedom, or a
   stationary AR(1) with coefficient φ drawn per signal; then ``x /= max |x|`` again.

Integer periods without drift (or with linear drift, by a table stacked with its ramp-weighted
copy) are rendered by one GEMM of a ``[B, 2 * #periods]`` coefficient
matrix against a fixed sin/cos table, since ``a sin(wt + phi) = (a cos phi) sin wt + (a sin phi) cos wt``.
Continuous periods and the 1 -> r -> 1 drift are rendered directly, without a ``sin`` per sample: with
``t = s + r`` (block starts ``s``, offsets ``r < R``, ``R`` about ``sqrt L``) the angle-addition identity
``sin(w s + phi + w r) = cos(w s + phi) sin(w r) + sin(w s + phi) cos(w r)`` needs the sines and
cosines of ``L/R + R`` exactly reduced angles per component, and the sum over components is one
batched matmul (:func:`render_direct`).

Every random number comes from :mod:`harmonic_forecast.counter_rng`, so the signal with a given counter
is the same whatever batch or device it is made in. The seed's draws keep their slots; the families'
draws come from the same counters under derived keys (``key ^ salt``), so a spec without them gives
the same draws as earlier versions.

A spec with ``families`` is a mixture: signal ``i`` of a stream (its global index) takes family
``f`` when ``i mod sum(weights)`` falls in ``f``'s block of ``weight`` residues, so every batch holds
the families in fixed proportions, whatever the batch, rank or world size.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from harmonic_forecast.counter_rng import _signed, bit_field, uniform, uniform_index, words_for
from harmonic_forecast.errors import ConfigError
from harmonic_forecast.tables import Float, Int, Positive, Table, config_error

# Counter layout of one signal: 2**12 slots, each a 64-bit random word.
SLOTS_PER_SIGNAL = 1 << 12
MAX_COMPONENTS = 1024
_COUNT_SLOT = 0
_COMPONENT_SLOT = 1  # component j (0-based) uses slot 1 + j
_DRIFT_SLOT = 1 + MAX_COMPONENTS
_NOISE_SLOT = 1 + 2 * MAX_COMPONENTS  # each slot gives two Gaussian samples
MAX_LENGTH = 2 * (SLOTS_PER_SIGNAL - _NOISE_SLOT)
_INDEX_SHIFT = SLOTS_PER_SIGNAL.bit_length() - 1  # the signal index sits above the slot bits, below the split bits
_INDEX_MASK = (1 << 48) - 1
MAX_INTEGER_PERIODS = 100_000
AMPLITUDE_LAWS = ("uniform", "equal")
DRIFT_MODES = (False, True, "linear")
NOISE_KINDS = ("gaussian", "laplace", "student_t", "ar1")
MAX_FAMILY_WEIGHT = 10_000
CPU_CHUNK = 4096  # rows synthesised at once on a CPU: keeps the working set in cache
# Derived keys (key ^ salt) for the families' draws, with the same per-signal counters and slots:
_PARAMETER_SALT = _signed(0xA0761D6478BD642F)  # slot 0: level, trend; 1 + j: linear drift; _DRIFT_SLOT: AR(1) φ
_SHIFT_SLOT = _DRIFT_SLOT + 1  # under _PARAMETER_SALT: the level shift's height and time
_WALK_SALT = _signed(0xE7037ED1A0B428DB)  # slots 0 ..: the random walk's normal steps (two per slot)
_NOISE_SALT = _signed(0x8EBC6AF09C88C6E3)  # slots 0 .. L - 1: one Laplace or Student-t sample each


def _pair(rule: str, holds: Callable[[float, float], bool]) -> Any:
    """A ``(low, high)`` pair of numbers (made floats) for which ``holds(low, high)``, else ``need <rule>``."""

    def check(value: tuple[float, float]) -> tuple[float, float]:
        low, high = float(value[0]), float(value[1])
        if not holds(low, high):
            raise ValueError(f"need {rule}")
        return low, high

    return Annotated[tuple[Float, Float], AfterValidator(check)]


def _band(value: tuple[int, int]) -> tuple[int, int]:
    if not 1 <= value[0] < value[1] <= MAX_COMPONENTS + 1:
        raise ValueError(f"need 1 <= low < high <= {MAX_COMPONENTS + 1} (half-open)")
    return value


Components = Annotated[tuple[Int, Int], AfterValidator(_band)]
Periods = Annotated[tuple[Int | Float, Int | Float], Field(validate_default=True)]  # checked with integer_periods
NoiseLevel = Annotated[Float, Field(ge=0, le=10)]
Noise = NoiseLevel | Annotated[tuple[NoiseLevel, ...], Field(min_length=1)]  # one σ, or one per signal class
Drift = Literal["linear"] | StrictBool
DriftRange = _pair("0 < low <= high", lambda low, high: 0 < low <= high)
Level = _pair("-1000 <= low <= high <= 1000", lambda low, high: -1e3 <= low <= high <= 1e3)  # closed
Trend = _pair("-10 <= low <= high <= 10", lambda low, high: -10 <= low <= high <= 10)  # closed
Phi = _pair("-1 < low <= high < 1", lambda low, high: -1 < low <= high < 1)


def _frozen(value: Any) -> Any:
    return tuple(_frozen(item) for item in value) if isinstance(value, list | tuple) else value


Override = Annotated[Any, AfterValidator(_frozen)]  # a family's value (lists made tuples), checked by SignalSpec


class Family(Table):
    """One member of a mixture: ``weight`` signals in every ``sum(weights)`` use the base spec with ``overrides``.

    Read from a table ``{"weight": 2, "noise": 0.1, ...}``: the fields given override the base
    :class:`SignalSpec`'s (any but the stream's lookback, horizon and families), whose validation
    checks their values.
    """

    refused_fields: ClassVar[tuple[str, ...]] = ("lookback", "horizon", "families")  # declared to refuse them

    weight: Annotated[Int, Field(ge=1, le=MAX_FAMILY_WEIGHT)]
    components: Override = None
    periods: Override = None
    integer_periods: Override = None
    amplitudes: Override = None
    noise: Override = None
    drift: Override = None
    drift_range: Override = None
    normalize: Override = None
    level: Override = None
    trend: Override = None
    level_shift: Override = None
    random_walk: Override = None
    noise_kind: Override = None
    noise_df: Override = None
    noise_phi: Override = None
    lookback: Override = None  # the stream's: refused below
    horizon: Override = None
    families: Override = None  # no nesting

    @model_validator(mode="before")
    @classmethod
    def _has_weight(cls, values: Any) -> Any:
        if isinstance(values, dict) and "weight" not in values:
            raise ValueError("needs weight = N (an integer)")
        return values

    @field_validator("lookback", "horizon", "families")
    @classmethod
    def _streams(cls, value: Any) -> Any:
        raise ValueError("a family cannot override it (it is the stream's)")

    @property
    def overrides(self) -> tuple[tuple[str, Any], ...]:
        """The fields it sets, as a sorted tuple of ``(field, value)`` pairs."""
        return tuple(sorted((name, getattr(self, name)) for name in self.model_fields_set - {"weight"}))

    def __repr_args__(self) -> list[tuple[str, Any]]:
        return [("weight", self.weight), *self.overrides]

    @model_serializer
    def _table(self) -> dict[str, Any]:
        """Dumped as it is written: the weight and the fields it sets."""
        return {"weight": self.weight, **dict(self.overrides)}


def _mixture(families: tuple[Family, ...]) -> tuple[Family, ...]:
    if len(families) == 1 or sum(family.weight for family in families) > MAX_FAMILY_WEIGHT:
        raise ValueError(f"need none or at least two families, weights summing to <= {MAX_FAMILY_WEIGHT}")
    return families


Families = Annotated[tuple[Family, ...], AfterValidator(_mixture)]


class SignalSpec(Table):
    """What a signal is; the defaults are the seed notebook's final task.

    ``components`` and ``periods`` are half-open ``(low, high)`` ranges like numpy's ``randint``.
    ``periods`` need a low bound >= 2 samples (Nyquist); they may exceed the window. ``components``
    may start at 1 (a pure tone). ``amplitudes``: ``"uniform"`` draws ``U[0, 1)`` per component,
    ``"equal"`` gives every component the same weight; both are normalised to sum 1. ``drift``:
    ``true`` multiplies each component by a gain that moves linearly from 1 to ``r ~ U[drift_range]``
    at a random time and back to 1 at the window's end; ``"linear"`` by a gain moving linearly from
    ``g0`` to ``g1``, both ``~ U[drift_range]``, over the window. ``level`` (DC offset) and ``trend``
    (slope per sample) are drawn uniformly from their closed ranges per signal, ``level_shift`` is the
    closed range of the height of one step at a time uniform over the window (a structural break), and ``random_walk``
    is the step σ of an integrated white noise, all in units of the harmonic part's amplitude sum
    (1), added before normalisation. ``normalize`` divides each signal by its max |x| over the whole
    window. ``noise`` is one σ (the marginal std), or a list of them: signal ``i`` of a stream then
    gets ``noise[i % len(noise)]``, so every batch mixes the levels in fixed proportions.
    ``noise_kind`` is ``"gaussian"``, ``"laplace"``, ``"student_t"`` (``noise_df`` = ν > 2) or
    ``"ar1"`` (φ ~ U[noise_phi] per signal, a stationary AR(1) scaled to std σ).
    ``families`` makes a mixture: a list of tables (or :class:`Family`), each with an integer
    ``weight`` and the fields it overrides in this spec (any but lookback, horizon and families).

    A pydantic table, frozen and hashable by value; a bad value raises :class:`ConfigError` (one line
    naming the field, e.g. ``signal.trend: ...``), also from keyword construction.
    """

    lookback: Positive = 100
    horizon: Positive = 10
    components: Components = (3, 45)
    integer_periods: StrictBool = True  # (before periods: it decides their type)
    periods: Periods = (10, 100)
    amplitudes: Literal[AMPLITUDE_LAWS] = "uniform"
    noise: Noise = 0.0
    drift: Drift = False
    drift_range: DriftRange = (0.5, 2.0)
    normalize: StrictBool = True
    level: Level = (0.0, 0.0)
    trend: Trend = (0.0, 0.0)
    level_shift: Level = (0.0, 0.0)
    random_walk: Annotated[Float, Field(ge=0, le=10)] = 0.0
    noise_kind: Literal[NOISE_KINDS] = "gaussian"
    noise_df: Annotated[Float, Field(gt=2, le=1e6)] = 5.0  # ν > 2: a finite variance
    noise_phi: Phi = (0.0, 0.9)
    families: Families = ()
    _members: tuple[tuple[int, int, SignalSpec], ...] = PrivateAttr()

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            tables = {"signal": SignalSpec, "signal.families": Family}
            raise config_error(error, _plain(values), "signal", tables) from None

    @field_validator("periods")
    @classmethod
    def _periods(cls, periods: tuple[Any, Any], info: ValidationInfo) -> tuple[Any, Any]:
        """Integers with ``integer_periods`` (at most ``MAX_INTEGER_PERIODS`` of them), floats without."""
        integer = info.data.get("integer_periods")  # (absent when bad: that error is told)
        for index, period in enumerate(periods):
            if integer and not isinstance(period, int):
                raise ConfigError(f"signal.periods[{index}]: expected an integer, got {period!r}")
        if not 2 <= periods[0] < periods[1]:
            raise ValueError("need 2 <= low < high (half-open)")
        if integer and periods[1] - periods[0] > MAX_INTEGER_PERIODS:
            raise ValueError(f"at most {MAX_INTEGER_PERIODS} integer periods (else integer_periods = false)")
        return periods if integer else (float(periods[0]), float(periods[1]))

    @model_validator(mode="after")
    def _length_and_members(self) -> SignalSpec:
        """The window's length, then the mixture's members ``(first, stop, spec)``: each family's values
        checked (errors named ``signal.families[i].field``) and kept canonical."""
        if self.length > MAX_LENGTH:
            raise ConfigError(f"signal.lookback + signal.horizon: must be <= {MAX_LENGTH}, got {self.length}")
        if not self.families:
            self._members = ((0, 1, self),)
            return self
        plain = {name: getattr(self, name) for name in type(self).model_fields} | {"families": ()}
        canonical, members, first = [], [], 0
        for index, family in enumerate(self.families):
            try:
                spec = SignalSpec(**{**plain, **dict(family.overrides)})
            except ConfigError as error:
                raise ConfigError(str(error).replace("signal.", f"signal.families[{index}].", 1)) from None
            canonical.append(Family(weight=family.weight, **{key: getattr(spec, key) for key, _ in family.overrides}))
            members.append((first, first + family.weight, spec))
            first += family.weight
        self.__dict__["families"] = tuple(canonical)  # (frozen to the user)
        self._members = tuple(members)
        return self

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in type(self).model_fields)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    @property
    def length(self) -> int:
        """Samples per signal: lookback plus horizon."""
        return self.lookback + self.horizon

    @property
    def noise_levels(self) -> tuple[float, ...]:
        """The noise σ of each signal class: signal ``i`` of a stream gets ``noise_levels[i % len]``."""
        return self.noise if isinstance(self.noise, tuple) else (self.noise,)

    @property
    def max_components(self) -> int:
        """Component slots per signal (``k_hi - 1``)."""
        return self.components[1] - 1

    @property
    def members(self) -> tuple[tuple[int, int, SignalSpec], ...]:
        """The mixture as ``(first, stop, spec)``: signal ``i`` takes ``spec`` when ``first <= i mod period < stop``.

        ``period`` is the sum of the weights; a spec without families is its own single member ``(0, 1, self)``.
        """
        return self._members

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SignalSpec:
        """Build from a config table; unknown keys are an error."""
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON/TOML (tuples become lists; families become tables with their weight)."""
        return _plain(self.model_dump())

    def replace(self, **changes: Any) -> SignalSpec:
        """A copy with some fields changed (validated again)."""
        return SignalSpec(**{name: getattr(self, name) for name in type(self).model_fields} | changes)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return [_plain(item) for item in value] if isinstance(value, list | tuple) else value


def band_label(components: tuple[int, int]) -> str:
    """The name of a component band in tables and metrics, e.g. ``(3,45)``."""
    return f"({components[0]},{components[1]})"


def set_label(components: tuple[int, int], noise: float) -> str:
    """The name of a band at one noise level in tables and metrics, e.g. ``(3,45) clean`` or ``(3,45) σ=0.1``."""
    return f"{band_label(components)} " + ("clean" if noise == 0 else f"σ={noise:g}")


@dataclass(frozen=True)
class Harmonics:
    """The drawn components of a batch, padded to ``spec.max_components`` slots.

    Inactive slots (slot index >= ``count``) have amplitude 0. Amplitudes of each signal sum to 1.
    ``drift_ratio``/``drift_peak`` are the gain's extreme value and its time (``drift = true``);
    ``gain_start``/``gain_end`` the linear gain's ends (``drift = "linear"``); None otherwise.
    """

    count: torch.Tensor  # [B] int64
    period: torch.Tensor  # [B, S] float32
    phase: torch.Tensor  # [B, S] float32, radians in [0, 2 pi)
    amplitude: torch.Tensor  # [B, S] float32
    drift_ratio: torch.Tensor | None = None  # [B, S]
    drift_peak: torch.Tensor | None = None  # [B, S], in (0, length - 1)
    gain_start: torch.Tensor | None = None  # [B, S], g0 at t = 0
    gain_end: torch.Tensor | None = None  # [B, S], g1 at t = length - 1


def sample_harmonics(spec: SignalSpec, key: int, signal_counters: torch.Tensor) -> Harmonics:
    """Draw the components of the signals whose base counters are ``signal_counters`` ([B] int64)."""
    device = signal_counters.device
    slots = spec.max_components
    offsets = torch.arange(_COUNT_SLOT, _COMPONENT_SLOT + slots, device=device)
    words = words_for(key, signal_counters, offsets)
    k_lo, k_hi = spec.components
    count = k_lo + uniform_index(words[:, _COUNT_SLOT], 0, k_hi - k_lo)
    component_words = words[:, _COMPONENT_SLOT:]
    active = offsets[_COMPONENT_SLOT:] <= count[:, None]  # slot 1 + j is active when j < count
    if spec.amplitudes == "uniform":
        amplitude = uniform(component_words, 44, 20, open_low=True).mul_(active)
    else:
        amplitude = active.to(torch.float32)
    amplitude.div_(amplitude.sum(dim=1, keepdim=True))
    phase = uniform(component_words, 24, 20).mul_(2 * math.pi)
    p_lo, p_hi = spec.periods
    if spec.integer_periods:
        period = uniform_index(component_words, 0, p_hi - p_lo).add_(p_lo).to(torch.float32)
    else:
        highest_below = math.nextafter(float(p_hi), -math.inf)
        period = uniform(component_words, 0, 24).mul_(p_hi - p_lo).add_(p_lo).clamp_(max=highest_below)
    if spec.drift is False:
        return Harmonics(count, period, phase, amplitude)
    r_lo, r_hi = spec.drift_range
    if spec.drift == "linear":
        gain_words = words_for(
            key ^ _PARAMETER_SALT,
            signal_counters,
            torch.arange(_COMPONENT_SLOT, _COMPONENT_SLOT + slots, device=device),
        )
        start = uniform(gain_words, 40, 24).mul_(r_hi - r_lo).add_(r_lo)
        end = uniform(gain_words, 16, 24).mul_(r_hi - r_lo).add_(r_lo)
        return Harmonics(count, period, phase, amplitude, gain_start=start, gain_end=end)
    drift_words = words_for(key, signal_counters, torch.arange(_DRIFT_SLOT, _DRIFT_SLOT + slots, device=device))
    ratio = uniform(drift_words, 40, 24).mul_(r_hi - r_lo).add_(r_lo)
    peak = uniform(drift_words, 16, 24, open_low=True).mul_(spec.length - 1)
    return Harmonics(count, period, phase, amplitude, ratio, peak)


@functools.lru_cache(maxsize=8)
def period_table(p_lo: int, p_hi: int, length: int, device: torch.device) -> torch.Tensor:
    """``[2 * P, length]``: rows ``sin(2 pi t / p)`` then ``cos(2 pi t / p)`` for ``p`` in ``[p_lo, p_hi)``."""
    t = torch.arange(length, dtype=torch.float64)
    periods = torch.arange(p_lo, p_hi, dtype=torch.float64)[:, None]
    angle = torch.remainder(t, periods) * (2 * math.pi) / periods
    return torch.cat([angle.sin(), angle.cos()]).to(device=device, dtype=torch.float32)


def gemm_coefficients(spec: SignalSpec, harmonics: Harmonics) -> torch.Tensor:
    """``[B, 2 * #periods]`` float32: each signal's ``a cos phi`` then ``a sin phi`` per integer period.

    With a linear gain ``g0 + (g1 - g0) t / (L - 1)`` it is ``[B, 4 * #periods]``: the same for
    ``a g0`` then for ``a (g1 - g0)``, to multiply :func:`gemm_table`'s ramped rows.
    """
    p_lo, p_hi = spec.periods
    n_periods = p_hi - p_lo
    index = harmonics.period.long().sub_(p_lo)
    weights = [harmonics.amplitude]
    if harmonics.gain_start is not None and harmonics.gain_end is not None:
        weights = [
            harmonics.amplitude * harmonics.gain_start,
            harmonics.amplitude * (harmonics.gain_end - harmonics.gain_start),
        ]
    coefficients = torch.zeros(index.shape[0], 2 * n_periods * len(weights), device=index.device)
    cos, sin = harmonics.phase.cos(), harmonics.phase.sin()
    for block, weight in enumerate(weights):
        first = 2 * n_periods * block
        coefficients[:, first : first + n_periods].scatter_add_(1, index, cos * weight)
        coefficients[:, first + n_periods : first + 2 * n_periods].scatter_add_(1, index, sin * weight)
    return coefficients


@functools.lru_cache(maxsize=8)
def _ramped_table(p_lo: int, p_hi: int, length: int, device: torch.device) -> torch.Tensor:
    table = period_table(p_lo, p_hi, length, device)
    ramp = torch.arange(length, dtype=torch.float64).div_(max(1, length - 1)).to(device=device, dtype=torch.float32)
    return torch.cat([table, table * ramp])


def gemm_table(spec: SignalSpec, device: torch.device) -> torch.Tensor:
    """The table :func:`gemm_coefficients` multiplies: :func:`period_table`, stacked on itself times
    ``t / (L - 1)`` for ``drift = "linear"`` (``[4 * #periods, L]``)."""
    if spec.drift == "linear":
        return _ramped_table(*spec.periods, spec.length, device)
    return period_table(*spec.periods, spec.length, device)


GEMM_DEPTH = 256  # the longest inner dimension a GEMM here is given (see render_gemm)
GEMM_ROW_MULTIPLE = 8  # a GEMM here is given a multiple of this many rows (see render_gemm)


def render_gemm(spec: SignalSpec, harmonics: Harmonics) -> torch.Tensor:
    """``[B, L]`` un-normalised signals for integer periods, as GEMMs against the period table.

    The inner dimension (two or four table rows per grid period) is cut into pieces of at most
    ``GEMM_DEPTH`` and their products are summed in a fixed order. MKL splits a longer inner
    dimension across threads depending on the thread count and the shape (``K = 1996``, periods
    2..1000, gave different bits at 1 and 2 threads), which would make a row's bits depend on the
    machine's thread count, and so on the world size (launchers give each process fewer threads).
    The rows are padded with zero rows to a multiple of ``GEMM_ROW_MULTIPLE``: BLAS takes other kernels
    for a product of one row (matrix-vector) and, on AVX2 CPUs, for the last one to three rows of a
    product, which round differently from the GEMM kernel that the other rows get.
    """
    coefficients = gemm_coefficients(spec, harmonics)
    table = gemm_table(spec, harmonics.period.device)
    rows = len(coefficients)
    padding = -rows % GEMM_ROW_MULTIPLE
    if padding:
        coefficients = torch.cat([coefficients, coefficients.new_zeros(padding, coefficients.shape[1])])
    signal = coefficients[:, :GEMM_DEPTH] @ table[:GEMM_DEPTH]
    for first in range(GEMM_DEPTH, table.shape[0], GEMM_DEPTH):
        signal += coefficients[:, first : first + GEMM_DEPTH] @ table[first : first + GEMM_DEPTH]
    return signal[:rows]


_ALIGNED_COLUMNS = 16  # float32 columns in 64 bytes: render_direct's block length R is a multiple of it
_SLOT_BUCKET = 8  # on a CPU a row is rendered with its count rounded up to this many slots, not all of them


@dataclass(frozen=True)
class _BlockTables:
    """Integer periods ``p`` in ``[p_lo, p_hi)``, float32 from float64, indexed by ``p - p_lo``.

    ``coarse`` ``[P, 4, blocks]``: ``cos a, sin a, -sin a, cos a`` for ``a = 2 pi (R q mod p) / p``;
    ``local`` ``[P, 4, R]``: ``sin b, cos b, r sin b, r cos b`` for ``b = 2 pi (r mod p) / p``;
    ``local_pair`` its first two rows.
    """

    coarse: torch.Tensor
    local: torch.Tensor
    local_pair: torch.Tensor


@functools.lru_cache(maxsize=8)
def _block_tables(p_lo: float, p_hi: float, fine: int, blocks: int, device: torch.device) -> _BlockTables:
    periods = torch.arange(int(p_lo), int(p_hi), dtype=torch.float64)[:, None]
    offset = torch.arange(fine, dtype=torch.float64)
    coarse = torch.remainder(torch.arange(blocks, dtype=torch.float64) * fine, periods) * (2 * math.pi) / periods
    local = torch.remainder(offset, periods) * (2 * math.pi) / periods
    coarse_table = torch.stack([coarse.cos(), coarse.sin(), -coarse.sin(), coarse.cos()], dim=1)
    local_table = torch.stack([local.sin(), local.cos(), offset * local.sin(), offset * local.cos()], dim=1)
    local_table = local_table.to(device=device, dtype=torch.float32)
    return _BlockTables(
        coarse_table.to(device=device, dtype=torch.float32), local_table, local_table[:, :2].contiguous()
    )


def render_direct(spec: SignalSpec, harmonics: Harmonics, max_elements: int = 1 << 22) -> torch.Tensor:
    """``[B, L]`` un-normalised signals for any periods and gains, by one batched matmul per chunk of rows.

    Time is split as ``t = s + r`` with block starts ``s = R q`` and offsets ``r < R``, ``R`` being
    ``ceil(sqrt L)`` rounded up to a multiple of ``_ALIGNED_COLUMNS`` (16). The angle-addition identity
    ``sin(w s + phi + w r) = cos(w s + phi) sin(w r) + sin(w s + phi) cos(w r)`` turns the ``[B, K, L]``
    sines into sines and cosines of ``[B, K, L/R]`` and ``[B, K, R]`` angles (``L/R + R`` instead of
    ``L`` per component), summed over components by ``torch.bmm`` of ``[B, L/R, n K]`` and
    ``[B, n K, R]``. Integer periods take both from tables made once in float64 (:class:`_BlockTables`);
    other periods reduce both angles exactly with ``fmod`` of the integer time by the period before
    scaling (skipped where the periods exceed every such time, which gives the same bits), so float32
    keeps about 1e-6 absolute accuracy for any period. A gain that is linear within a block, ``G + b r``,
    adds the same products weighted by ``b r`` (see :func:`_block_gains`); the 1 -> r -> 1 gain's peak
    block is corrected by one more batched matmul. On a CPU, rows are grouped by their component count
    rounded up to ``_SLOT_BUCKET`` slots (inactive slots are zeros at the end), and chunked; never
    components. Each row's ``[L/R, R]`` product holds a multiple of 16 columns, so it starts 64-byte
    aligned wherever the row sits in its chunk: on AVX2 CPUs, MKL's small batched GEMMs round an output
    matrix differently by its address. A row's bits therefore depend only on the row, not on the batch it
    is made in.
    """
    batch, slots = harmonics.period.shape
    device = harmonics.period.device
    fine = -(-(math.isqrt(spec.length - 1) + 1) // _ALIGNED_COLUMNS) * _ALIGNED_COLUMNS  # R (see above)
    blocks = -(-spec.length // fine)
    tables = _block_tables(*spec.periods, fine, blocks, device) if spec.integer_periods else None
    products = 2 if spec.drift is False else 4
    order, widths = None, [(batch, slots)]  # rows in render order, and (rows, slots) of each group
    if device.type == "cpu" and batch > 0:
        needed = harmonics.count.add(_SLOT_BUCKET - 1).div_(_SLOT_BUCKET, rounding_mode="floor")
        needed = needed.mul_(_SLOT_BUCKET).clamp_(1, slots)
        needed, order = needed.sort(stable=True)
        values, sizes = needed.unique_consecutive(return_counts=True)
        widths = list(zip(sizes.tolist(), values.tolist(), strict=True))
        harmonics = Harmonics(*(None if f is None else f.index_select(0, order) for f in _fields(harmonics)))
    result = torch.empty(batch, blocks * fine, device=device)
    first = 0
    for rows, width in widths:
        chunk = max(1, max_elements // (width * (blocks + fine) * 2 * products))
        for start in range(first, first + rows, chunk):
            stop = min(start + chunk, first + rows)
            # a lone row is rendered twice: a one-matrix bmm takes another kernel, which rounds differently
            rows_here = slice(start, stop) if stop - start > 1 else [start, start]
            fields = [
                None if f is None else f[rows_here] if f.dim() == 1 else f[rows_here, :width]
                for f in _fields(harmonics)
            ]
            part = _render_blocks(spec, Harmonics(*fields), fine, blocks, tables)[: stop - start]
            if order is None:
                result[start:stop] = part
            else:  # back to the batch's order
                result.index_copy_(0, order[start:stop], part)
        first += rows
    return result[:, : spec.length]


def _render_blocks(
    spec: SignalSpec, harmonics: Harmonics, fine: int, blocks: int, tables: _BlockTables | None
) -> torch.Tensor:
    """``[b, blocks * R]`` signals of :func:`render_direct` for one chunk of rows (any number of slots)."""
    count, slots = harmonics.period.shape
    device = harmonics.period.device
    start = torch.arange(blocks, device=device, dtype=torch.float32).mul_(fine)
    offset = torch.arange(fine, device=device, dtype=torch.float32)
    period, phase, amplitude = (x[:, :, None] for x in (harmonics.period, harmonics.phase, harmonics.amplitude))
    products = 2 if spec.drift is False else 4
    if tables is not None:  # (index_select on a 2-D table is twice as fast as on the 3-D one)
        index = harmonics.period.long().sub_(int(spec.periods[0])).flatten()
        local = (tables.local if products == 4 else tables.local_pair).flatten(1).index_select(0, index)
        right = local.view(count, slots, products, fine)  # sin wr, cos wr (, r sin wr, r cos wr)
        coarse = tables.coarse.flatten(1).index_select(0, index).view(count, slots, 4, blocks)
        cos_p, sin_p = phase.cos()[..., None], phase.sin()[..., None]
        waves = torch.mul(coarse[:, :, :2], cos_p).addcmul_(coarse[:, :, 2:], sin_p)  # cos, sin of w s + phi
    else:
        reduce = spec.periods[0] <= (blocks - 1) * fine  # else fmod(s, P) = s
        angle = (torch.fmod(start, period) if reduce else start).mul(2 * math.pi / period).add_(phase)
        waves = torch.stack([angle.cos(), angle.sin()], dim=2)
        local = torch.fmod(offset, period) if spec.periods[0] <= fine - 1 else offset  # else fmod(r, P) = r
        local = local * (2 * math.pi / period)
        sin_r, cos_r = local.sin(), local.cos()
        pieces = [sin_r, cos_r] if products == 2 else [sin_r, cos_r, sin_r * offset, cos_r * offset]
        right = torch.stack(pieces, dim=2)
    kink = None
    if spec.drift is False:
        left = waves * amplitude[..., None]  # [b, K, 2, blocks]
    else:
        gain, slope, kink = _block_gains(spec, harmonics, start, offset)  # times the amplitudes
        left = torch.empty(count, slots, 2, 2, blocks, device=device)  # [b, K, gain|slope, cos|sin, blocks]
        slope = slope.expand_as(gain)
        for column, weight in enumerate((gain, slope)):
            for wave in range(2):  # same-shape products: a broadcast over the 2 would cost 5x here
                torch.mul(waves[:, :, wave], weight, out=left[:, :, column, wave])
    out = torch.bmm(left.view(count, slots * products, blocks).transpose(1, 2), right.view(count, -1, fine))
    if kink is not None:  # the block holding a 1 -> r -> 1 peak: the exact gain minus G + b r there
        index, correction = kink
        at_peak = waves.gather(3, index[:, :, None, :].expand(-1, -1, 2, -1)).mul_(amplitude[..., None])
        wave = torch.mul(right[:, :, 0], at_peak[:, :, 0]).addcmul_(right[:, :, 1], at_peak[:, :, 1])
        one_hot = torch.zeros(count, slots, blocks, device=device).scatter_(2, index, 1.0)
        out.baddbmm_(one_hot.transpose(1, 2), wave.mul_(correction))
    return out.view(count, blocks * fine)


def _fields(harmonics: Harmonics) -> list[torch.Tensor | None]:
    return [getattr(harmonics, field.name) for field in dataclasses.fields(harmonics)]


def _block_gains(
    spec: SignalSpec, harmonics: Harmonics, start: torch.Tensor, offset: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """The gain on each block as ``G + b r`` (``G`` ``[B, K, blocks]``, ``b`` broadcastable), and the peak correction.

    ``G`` and ``b`` come multiplied by the components' amplitudes. ``start`` ``[blocks]`` and ``offset``
    ``[R]`` are the blocks' first times and the offsets. A linear gain is exactly ``G + b r`` on every
    block. The 1 -> r -> 1 gain is too, except on the block that holds its peak: there ``G + b r``
    follows the flatter of the two pieces (so neither ``G`` nor ``b`` is ever large), and the
    correction is that block's index ``[B, K, 1]`` and the exact gain minus ``G + b r`` on it
    ``[B, K, R]`` (without the amplitude).
    """
    last = max(1, spec.length - 1)
    if harmonics.gain_start is not None and harmonics.gain_end is not None:
        amplitude = harmonics.amplitude[:, :, None]
        begin, change = harmonics.gain_start[:, :, None], (harmonics.gain_end - harmonics.gain_start)[:, :, None]
        return (change * (start / last) + begin).mul_(amplitude), change / last * amplitude, None
    assert harmonics.drift_ratio is not None and harmonics.drift_peak is not None
    ratio, peak = harmonics.drift_ratio[:, :, None], harmonics.drift_peak[:, :, None]
    rise, fall = (ratio - 1) / peak, (1 - ratio) / (last - peak)
    fine = len(offset)
    index = torch.ceil(peak / fine).sub_(1).clamp_(0, len(start) - 1)  # the peak's block: s < peak <= s + R
    follows_rise = (2 * peak >= last).to(peak.dtype)  # on the peak's block, follow the flatter line
    # 1.0 on the blocks that follow the rising line, else 0.0 ([B, K, blocks]); selections below are
    # x * 1 + y * 0, which is exact, because torch.where is ~25x slower than a multiply on a CPU
    block = torch.arange(len(start), device=start.device, dtype=peak.dtype)
    rising = (index + follows_rise - block).clamp_(0, 1)
    amplitude = harmonics.amplitude[:, :, None]
    slope = torch.mul(rise * amplitude, rising).addcmul_(1 - rising, fall * amplitude)
    gain = torch.addcmul(ratio * amplitude, start - peak, slope)  # the line through (peak, a r) at s
    # on the peak's block the exact gain minus the line followed is (fall - rise) |t - peak| on the other side
    sign = follows_rise.mul(2).sub_(1)
    distance = torch.addcmul((index * fine - peak).mul_(sign), offset, sign)  # sign * (t - peak) there, [B, K, R]
    correction = distance.clamp_(min=0).mul_(fall - rise)
    index = index.long()
    return gain, slope, (index, correction)


def drift_gain(t: torch.Tensor, ratio: torch.Tensor, peak: torch.Tensor, last: int | None = None) -> torch.Tensor:
    """Piecewise-linear gain: 1 at t = 0, ``ratio`` at ``peak``, 1 again at ``t = last`` (default: ``len(t) - 1``)."""
    last = t.shape[-1] - 1 if last is None else last
    rise = t / peak
    fall = (last - t) / (last - peak)
    return 1 + (ratio - 1) * torch.minimum(rise, fall)


def standard_normal(key: int, signal_counters: torch.Tensor, first_slot: int, count: int) -> torch.Tensor:
    """``[B, count]`` float32 standard normals from slots ``first_slot ..`` (Box-Muller, two per random word)."""
    pairs = (count + 1) // 2
    offsets = torch.arange(first_slot, first_slot + pairs, device=signal_counters.device)
    words = words_for(key, signal_counters, offsets)
    radius = uniform(words, 40, 24, open_low=True).log_().mul_(-2).sqrt_()
    angle = uniform(words, 16, 24).mul_(2 * math.pi)
    normal = torch.empty(words.shape[0], 2 * pairs, device=words.device)
    torch.mul(radius, angle.cos(), out=normal[:, :pairs])
    torch.mul(radius, angle.sin_(), out=normal[:, pairs:])
    return normal[:, :count]


def gaussian_noise(spec: SignalSpec, key: int, signal_counters: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` standard normal samples (Box-Muller, two per random word)."""
    return standard_normal(key, signal_counters, _NOISE_SLOT, spec.length)


def level_and_trend(spec: SignalSpec, key: int, signal_counters: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-signal level and trend (slope per sample), each ``[B]`` float32 uniform on its closed range."""
    slot = torch.zeros(1, dtype=torch.int64, device=signal_counters.device)
    words = words_for(key ^ _PARAMETER_SALT, signal_counters, slot)[:, 0]
    (l_lo, l_hi), (b_lo, b_hi) = spec.level, spec.trend
    level = uniform(words, 40, 24).mul_(l_hi - l_lo).add_(l_lo)
    trend = uniform(words, 16, 24).mul_(b_hi - b_lo).add_(b_lo)
    return level, trend


def level_shifts(spec: SignalSpec, key: int, signal_counters: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-signal step height, uniform on ``spec.level_shift`` (closed), and time ``tau``, uniform on
    ``[0, lookback + horizon)`` in samples; each ``[B]`` float32. The signal gains the height at ``t >= tau``."""
    slot = torch.full((1,), _SHIFT_SLOT, dtype=torch.int64, device=signal_counters.device)
    words = words_for(key ^ _PARAMETER_SALT, signal_counters, slot)[:, 0]
    low, high = spec.level_shift
    height = uniform(words, 40, 24).mul_(high - low).add_(low)
    time = uniform(words, 16, 24).mul_(spec.length)
    return height, time


def random_walk(spec: SignalSpec, key: int, signal_counters: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` random walk ``w_t = s * sum_{u=1..t} e_u`` with ``w_0 = 0`` and step σ ``s = spec.random_walk``."""
    steps = standard_normal(key ^ _WALK_SALT, signal_counters, 0, spec.length)
    steps[:, 0] = 0
    return steps.cumsum_(dim=1).mul_(spec.random_walk)


def ar1_coefficient(spec: SignalSpec, key: int, signal_counters: torch.Tensor) -> torch.Tensor:
    """``[B]`` float32 AR(1) coefficients φ, uniform on ``spec.noise_phi``."""
    slot = torch.full((1,), _DRIFT_SLOT, dtype=torch.int64, device=signal_counters.device)
    words = words_for(key ^ _PARAMETER_SALT, signal_counters, slot)[:, 0]
    phi_lo, phi_hi = spec.noise_phi
    return uniform(words, 40, 24).mul_(phi_hi - phi_lo).add_(phi_lo)


def unit_noise(spec: SignalSpec, key: int, signal_counters: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` float32 noise of ``spec.noise_kind`` with zero mean and unit marginal std.

    Gaussian: Box-Muller. Laplace: a random sign times an exponential of scale ``1/sqrt 2``. Student-t with ν =
    ``noise_df``: Bailey's polar formula ``cos θ sqrt(ν (W^(-2/ν) - 1))``, scaled by ``sqrt((ν-2)/ν)``.
    AR(1): ``x_0 = e_0``, ``x_t = φ x_{t-1} + sqrt(1 - φ²) e_t`` (stationary), by a log-depth scan.
    """
    if spec.noise_kind == "gaussian":
        return gaussian_noise(spec, key, signal_counters)
    if spec.noise_kind == "ar1":
        innovation = gaussian_noise(spec, key, signal_counters)
        phi = ar1_coefficient(spec, key, signal_counters)[:, None]
        innovation[:, 1:].mul_((1 - phi * phi).sqrt_())
        return linear_recurrence(phi, innovation)
    slots = torch.arange(spec.length, device=signal_counters.device)
    words = words_for(key ^ _NOISE_SALT, signal_counters, slots)
    if spec.noise_kind == "laplace":  # an exponential magnitude with a random sign
        magnitude = uniform(words, 40, 23, open_low=True).log_().mul_(-(0.5**0.5))
        return bit_field(words, 39, 1).mul_(2).sub_(1).to(torch.float32).mul_(magnitude)
    df = spec.noise_df
    # exp(log) rather than pow: CPU pow's vector and tail loops round differently, and a row must not
    # depend on the batch it is made in
    radius = uniform(words, 40, 24, open_low=True).log_().mul_(-2 / df).exp_().sub_(1).mul_(df).sqrt_()
    angle = uniform(words, 16, 24).mul_(2 * math.pi).cos_()
    return radius.mul_(angle).mul_(math.sqrt((df - 2) / df))


def linear_recurrence(coefficient: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """``y_t = a y_{t-1} + u_t`` with ``y_0 = u_0`` along the last dim, for ``a`` ``[B, 1]`` and ``u`` ``[B, L]``.

    A Hillis-Steele scan: ``log2 L`` vectorised steps, no loop over time or signals.
    """
    result, power, shift = drive, coefficient, 1
    while shift < drive.shape[-1]:
        result = torch.cat([result[:, :shift], result[:, shift:] + power * result[:, :-shift]], dim=1)
        power, shift = power * power, 2 * shift
    return result


def normalize_peak_(signal: torch.Tensor) -> torch.Tensor:
    """Divide each row by its max |x| in place (an all-zero row stays zero)."""
    return signal.div_(signal.abs().amax(dim=1, keepdim=True).clamp_(min=torch.finfo(signal.dtype).tiny))


def uses_gemm(spec: SignalSpec) -> bool:
    """Whether the spec's harmonic part is rendered by the GEMM (integer periods; no drift, or linear drift)."""
    return spec.integer_periods and spec.drift is not True


def render(spec: SignalSpec, harmonics: Harmonics) -> torch.Tensor:
    """Un-normalised ``[B, L]`` signals by the fastest exact path for the spec."""
    if uses_gemm(spec):
        return render_gemm(spec, harmonics)
    return render_direct(spec, harmonics)


def synthesize(spec: SignalSpec, key: int, signal_counters: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Finished signals ``[B, L]`` float32 and their component counts ``[B]`` int64 for the given counters.

    ``signal_counters`` ([B] int64) are the signals' base counters (see :mod:`harmonic_forecast.stream`).
    A mixture picks each row's family from the signal index the counter holds, with one pass per
    family (never per signal). On a CPU each family's rows are made ``CPU_CHUNK`` at a time, which
    keeps the working set in cache. Every step is row-wise (GEMMs of at least two rows, see
    :func:`render_gemm`), so a row's bits never depend on the batch, rank or world size.
    """
    members = spec.members
    batch, device = len(signal_counters), signal_counters.device
    signal = torch.empty(batch, spec.length, device=device)
    count = torch.empty(batch, dtype=torch.int64, device=device)
    if len(members) == 1:
        _synthesize_rows(spec, key, signal_counters, signal, count)
        return signal, count
    residue = _signal_index(signal_counters).remainder_(members[-1][1])
    for first, stop, member in members:
        rows = ((residue >= first) & (residue < stop)).nonzero().squeeze(1)
        _synthesize_rows(member, key, signal_counters.index_select(0, rows), signal, count, rows)
    return signal, count


def _synthesize_rows(
    spec: SignalSpec,
    key: int,
    signal_counters: torch.Tensor,
    signal: torch.Tensor,
    count: torch.Tensor,
    rows: torch.Tensor | None = None,
) -> None:
    """Make the signals of one family and write them to ``rows`` of ``signal`` and ``count`` (all rows when None)."""
    step = CPU_CHUNK if signal_counters.device.type == "cpu" else max(1, len(signal_counters))
    for first in range(0, len(signal_counters), step):
        counters = signal_counters[first : first + step]
        harmonics = sample_harmonics(spec, key, counters)
        made = _finish(spec, key, counters, render(spec, harmonics))
        if rows is None:
            signal[first : first + step] = made
            count[first : first + step] = harmonics.count
        else:
            signal.index_copy_(0, rows[first : first + step], made)
            count.index_copy_(0, rows[first : first + step], harmonics.count)


def _signal_index(signal_counters: torch.Tensor) -> torch.Tensor:
    return signal_counters.bitwise_right_shift(_INDEX_SHIFT).bitwise_and_(_INDEX_MASK)


def _finish(spec: SignalSpec, key: int, signal_counters: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
    """Steps 2-4 of the module docstring, in place on the rendered harmonic part ``signal`` ``[B, L]``."""
    t = torch.arange(spec.length, device=signal.device, dtype=torch.float32)  # sample times, for what follows
    if spec.level != (0.0, 0.0) or spec.trend != (0.0, 0.0):
        level, trend = level_and_trend(spec, key, signal_counters)
        signal.add_(trend[:, None] * t).add_(level[:, None])
    if spec.level_shift != (0.0, 0.0):
        height, time = level_shifts(spec, key, signal_counters)
        signal.addcmul_((t >= time[:, None]).to(signal.dtype), height[:, None])
    if spec.random_walk > 0:
        signal.add_(random_walk(spec, key, signal_counters))
    if spec.normalize:
        normalize_peak_(signal)
    levels = spec.noise_levels
    if max(levels) > 0:
        noise = unit_noise(spec, key, signal_counters)
        if len(levels) == 1:
            noise.mul_(levels[0])
        else:
            index = _signal_index(signal_counters).remainder_(len(levels))
            sigma = torch.zeros_like(noise[:, :1])
            for position, level in enumerate(levels):  # scalar fills: no host-to-device copy per batch
                sigma.masked_fill_(index[:, None] == position, level)
            noise.mul_(sigma)
        signal.add_(noise)
        if spec.normalize:
            normalize_peak_(signal)
    return signal
