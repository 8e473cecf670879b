"""Sums of harmonics: the validated signal spec, and batched synthesis on any device.

A signal has ``K ~ U{k_lo, k_hi - 1}`` components with periods, phases and amplitudes drawn per
component; ``x_t = sum_k a_k g_k(t) sin(2 pi t / P_k + phi_k)`` for ``t = 0 .. lookback + horizon - 1``,
then ``x /= max |x|``, optional Gaussian noise and a second normalisation (the seed's generator).
``g_k`` is 1 unless amplitude drift is on.

Integer periods without drift are rendered by one GEMM of a ``[B, 2 * #periods]`` coefficient
matrix against a fixed sin/cos table, since ``a sin(wt + phi) = (a cos phi) sin wt + (a sin phi) cos wt``.
Continuous periods and drift use a direct masked ``sin`` over ``[B, K, L]``, chunked to bound
memory. Every random number comes from :mod:`harmonic_forecast.counter_rng`, so the signal with
a given counter is the same whatever batch or device it is made in.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from harmonic_forecast.config import (
    ConfigError,
    reject_unknown,
    require_bool,
    require_choice,
    require_float,
    require_int,
    require_pair,
)
from harmonic_forecast.counter_rng import uniform, uniform_index, words_for

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


@dataclass(frozen=True)
class SignalSpec:
    """What a signal is; the defaults are the seed notebook's final task.

    ``components`` and ``periods`` are half-open ``(low, high)`` ranges like numpy's ``randint``.
    ``amplitudes``: ``"uniform"`` draws ``U[0, 1)`` per component, ``"equal"`` gives every
    component the same weight; both are normalised to sum 1. ``drift`` multiplies each component
    by a gain that moves linearly from 1 to ``r ~ U[drift_range]`` at a random time and back to 1
    at the window's end. ``normalize`` divides each signal by its max |x| over the whole window.
    ``noise`` is one σ, or a list of them: signal ``i`` of a stream then gets ``noise[i % len(noise)]``,
    so every batch mixes the levels in fixed proportions (training one model for all noise levels).
    """

    lookback: int = 100
    horizon: int = 10
    components: tuple[int, int] = (3, 45)
    periods: tuple[float, float] = (10, 100)
    integer_periods: bool = True
    amplitudes: str = "uniform"
    noise: float | tuple[float, ...] = 0.0
    drift: bool = False
    drift_range: tuple[float, float] = (0.5, 2.0)
    normalize: bool = True

    def __post_init__(self) -> None:
        lookback = require_int("signal.lookback", self.lookback, minimum=1)
        horizon = require_int("signal.horizon", self.horizon, minimum=1)
        if lookback + horizon > MAX_LENGTH:
            raise ConfigError(f"signal.lookback + signal.horizon: must be <= {MAX_LENGTH}, got {lookback + horizon}")
        k_lo, k_hi = require_pair("signal.components", self.components, integer=True)
        if not 1 <= k_lo < k_hi <= MAX_COMPONENTS + 1:
            raise ConfigError(
                f"signal.components: need 1 <= low < high <= {MAX_COMPONENTS + 1} (half-open), got ({k_lo}, {k_hi})"
            )
        integer_periods = require_bool("signal.integer_periods", self.integer_periods)
        p_lo, p_hi = require_pair("signal.periods", self.periods, integer=integer_periods)
        if not 2 <= p_lo < p_hi:
            raise ConfigError(f"signal.periods: need 2 <= low < high (half-open), got ({p_lo}, {p_hi})")
        if integer_periods and p_hi - p_lo > MAX_INTEGER_PERIODS:
            raise ConfigError(
                f"signal.periods: at most {MAX_INTEGER_PERIODS} integer periods, got {p_hi - p_lo}; "
                "use integer_periods = false"
            )
        require_choice("signal.amplitudes", self.amplitudes, AMPLITUDE_LAWS)
        noise = require_noise("signal.noise", self.noise)
        require_bool("signal.drift", self.drift)
        r_lo, r_hi = require_pair("signal.drift_range", self.drift_range, integer=False)
        if not 0 < r_lo <= r_hi:
            raise ConfigError(f"signal.drift_range: need 0 < low <= high, got ({r_lo}, {r_hi})")
        require_bool("signal.normalize", self.normalize)
        object.__setattr__(self, "components", (k_lo, k_hi))
        object.__setattr__(self, "periods", (p_lo, p_hi))
        object.__setattr__(self, "noise", noise)
        object.__setattr__(self, "drift_range", (r_lo, r_hi))

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

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SignalSpec:
        """Build from a config table; unknown keys are an error."""
        reject_unknown("signal", values, {field.name for field in dataclasses.fields(cls)})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON/TOML (tuples become lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()
        }

    def replace(self, **changes: Any) -> SignalSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def require_noise(name: str, value: Any) -> float | tuple[float, ...]:
    """A noise σ in [0, 10], or a non-empty list of them (one per signal class)."""
    if isinstance(value, list | tuple):
        if not value:
            raise ConfigError(f"{name}: a list of noise levels must not be empty")
        return tuple(require_float(f"{name}[{i}]", level, minimum=0.0, maximum=10.0) for i, level in enumerate(value))
    return require_float(name, value, minimum=0.0, maximum=10.0)


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
    ``drift_ratio``/``drift_peak`` are the gain's extreme value and its time (None without drift).
    """

    count: torch.Tensor  # [B] int64
    period: torch.Tensor  # [B, S] float32
    phase: torch.Tensor  # [B, S] float32, radians in [0, 2 pi)
    amplitude: torch.Tensor  # [B, S] float32
    drift_ratio: torch.Tensor | None = None  # [B, S]
    drift_peak: torch.Tensor | None = None  # [B, S], in (0, length - 1)


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
    if not spec.drift:
        return Harmonics(count, period, phase, amplitude)
    drift_words = words_for(key, signal_counters, torch.arange(_DRIFT_SLOT, _DRIFT_SLOT + slots, device=device))
    r_lo, r_hi = spec.drift_range
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


def render_gemm(spec: SignalSpec, harmonics: Harmonics) -> torch.Tensor:
    """``[B, L]`` un-normalised signals for integer periods, as one GEMM against the period table."""
    p_lo, p_hi = spec.periods
    n_periods = p_hi - p_lo
    table = period_table(p_lo, p_hi, spec.length, harmonics.period.device)
    index = harmonics.period.long().sub_(p_lo)
    coefficients = torch.zeros(index.shape[0], 2 * n_periods, device=index.device)
    coefficients[:, :n_periods].scatter_add_(1, index, harmonics.phase.cos().mul_(harmonics.amplitude))
    coefficients[:, n_periods:].scatter_add_(1, index, harmonics.phase.sin().mul_(harmonics.amplitude))
    return coefficients @ table


def render_direct(spec: SignalSpec, harmonics: Harmonics, max_elements: int = 1 << 24) -> torch.Tensor:
    """``[B, L]`` un-normalised signals by a masked ``sin`` over ``[B, K, L]``, in chunks of components.

    The phase of ``t`` is reduced exactly with ``fmod(t, P)`` before scaling, so float32 keeps
    about 1e-6 absolute accuracy for any period.
    """
    batch, slots = harmonics.period.shape
    t = torch.arange(spec.length, device=harmonics.period.device, dtype=torch.float32)
    signal = torch.zeros(batch, spec.length, device=t.device)
    step = max(1, max_elements // max(1, batch * spec.length))
    for start in range(0, slots, step):
        chunk = slice(start, start + step)
        period = harmonics.period[:, chunk, None]
        wave = torch.fmod(t, period).mul_(2 * math.pi / period).add_(harmonics.phase[:, chunk, None]).sin_()
        wave.mul_(harmonics.amplitude[:, chunk, None])
        if harmonics.drift_ratio is not None and harmonics.drift_peak is not None:
            wave.mul_(drift_gain(t, harmonics.drift_ratio[:, chunk, None], harmonics.drift_peak[:, chunk, None]))
        signal += wave.sum(dim=1)
    return signal


def drift_gain(t: torch.Tensor, ratio: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear gain: 1 at t = 0, ``ratio`` at ``peak``, 1 again at ``t = L - 1``."""
    last = t.shape[-1] - 1
    rise = t / peak
    fall = (last - t) / (last - peak)
    return 1 + (ratio - 1) * torch.minimum(rise, fall)


def gaussian_noise(spec: SignalSpec, key: int, signal_counters: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` standard normal samples (Box-Muller, two per random word)."""
    pairs = (spec.length + 1) // 2
    offsets = torch.arange(_NOISE_SLOT, _NOISE_SLOT + pairs, device=signal_counters.device)
    words = words_for(key, signal_counters, offsets)
    radius = uniform(words, 40, 24, open_low=True).log_().mul_(-2).sqrt_()
    angle = uniform(words, 16, 24).mul_(2 * math.pi)
    normal = torch.empty(words.shape[0], 2 * pairs, device=words.device)
    torch.mul(radius, angle.cos(), out=normal[:, :pairs])
    torch.mul(radius, angle.sin_(), out=normal[:, pairs:])
    return normal[:, : spec.length]


def normalize_peak_(signal: torch.Tensor) -> torch.Tensor:
    """Divide each row by its max |x| in place (an all-zero row stays zero)."""
    return signal.div_(signal.abs().amax(dim=1, keepdim=True).clamp_(min=torch.finfo(signal.dtype).tiny))


def render(spec: SignalSpec, harmonics: Harmonics) -> torch.Tensor:
    """Un-normalised ``[B, L]`` signals by the fastest exact path for the spec."""
    if spec.integer_periods and harmonics.drift_ratio is None:
        return render_gemm(spec, harmonics)
    return render_direct(spec, harmonics)


def synthesize(spec: SignalSpec, key: int, signal_counters: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Finished signals ``[B, L]`` float32 and their component counts ``[B]`` for the given counters."""
    harmonics = sample_harmonics(spec, key, signal_counters)
    signal = render(spec, harmonics)
    if spec.normalize:
        normalize_peak_(signal)
    levels = spec.noise_levels
    if max(levels) > 0:
        noise = gaussian_noise(spec, key, signal_counters)
        if len(levels) == 1:
            noise.mul_(levels[0])
        else:
            index = signal_counters.bitwise_right_shift(_INDEX_SHIFT).bitwise_and_(_INDEX_MASK).remainder_(len(levels))
            sigma = torch.zeros_like(noise[:, :1])
            for position, level in enumerate(levels):  # scalar fills: no host-to-device copy per batch
                sigma.masked_fill_(index[:, None] == position, level)
            noise.mul_(sigma)
        signal.add_(noise)
        if spec.normalize:
            normalize_peak_(signal)
    return signal, harmonics.count
