"""Spectral toolkit: real-DFT features, harmonic analysis, resynthesis and the DFT-extrapolation forecast.

Every function takes a batch ``[..., N]`` of real windows (sample rate 1; a tensor on any device, or a
numpy array or list, analysed on the CPU) and returns tensors. The
real DFT of ``N`` samples has ``N // 2 + 1`` bins at frequencies ``k / N``; for even ``N`` the last
one is the Nyquist bin (``1 / 2``), for odd ``N`` it lies just below it.

Resynthesising the harmonics beyond the window repeats the window with period ``N``, so the DFT
forecast is exact only when every component's period divides ``N``; otherwise energy leaks into
neighbouring bins and the forecast is a copy of the window's start (the seed notebook's lesson).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from harmonic_forecast.arrays import real_tensor
from harmonic_forecast.errors import ConfigError, require_int


def _as_window(window: Tensor | np.ndarray) -> tuple[Tensor, int]:
    """``(window, N)``: a tensor (or array-like) of real windows as a float tensor, and ``N = window.shape[-1]``.

    Integer windows are analysed in the default float dtype; float windows keep theirs. Complex or boolean
    values, or fewer than 2 samples, raise :class:`ConfigError`.
    """
    window = real_tensor(window, "window")
    if window.dim() == 0 or window.shape[-1] < 2:
        raise ConfigError(f"window: last dimension must be >= 2 samples, got shape {tuple(window.shape)}")
    return (window if window.is_floating_point() else window.to(torch.get_default_dtype())), window.shape[-1]


def rfft_features(window: Tensor) -> tuple[Tensor, Tensor]:
    """Amplitude and phase of ``rfft(window, norm="forward")``, each ``[..., N // 2 + 1]``.

    These are raw model features: no doubling rule, unlike :func:`harmonics`.
    """
    window, _ = _as_window(window)
    spectrum = torch.fft.rfft(window, norm="forward")
    return spectrum.abs(), spectrum.angle()


@dataclass(frozen=True)
class Spectrum:
    """The harmonics of a batch of windows of ``window_length`` samples.

    ``amplitude`` and ``phase`` are ``[..., N // 2 + 1]``, so that the window is
    ``x_t = sum_k amplitude_k cos(2 pi k t / N + phase_k)``. ``frequency`` (cycles per sample) and
    ``period`` (samples) are ``[N // 2 + 1]`` and broadcast against them. The DC bin's period is
    ``inf``: a constant has no period (the notebook wrote 0).
    """

    amplitude: Tensor
    phase: Tensor
    frequency: Tensor
    period: Tensor
    window_length: int

    def __post_init__(self) -> None:
        n = require_int("window_length", self.window_length, minimum=2)
        if self.amplitude.shape != self.phase.shape or self.amplitude.shape[-1:] != (n // 2 + 1,):
            raise ConfigError(
                f"spectrum: amplitude {tuple(self.amplitude.shape)} and phase {tuple(self.phase.shape)} "
                f"must both end in {n // 2 + 1} bins for window_length {n}"
            )


def harmonics(window: Tensor, hamming: bool = False) -> Spectrum:
    """Amplitudes, phases, frequencies and periods of the real DFT of ``window`` (``[..., N]``).

    Amplitudes are ``|rfft| / N``, doubled for every bin but DC and (for even ``N``) Nyquist, whose
    negative-frequency twins are themselves. With ``hamming`` the window is first multiplied by a
    symmetric Hamming window to reduce leakage, and the amplitudes are divided by its mean (coherent
    gain) so that a sinusoid's peak keeps roughly its amplitude; the notebook did not correct this.
    """
    window, n = _as_window(window)
    options = {"dtype": window.dtype, "device": window.device}
    if hamming:
        taper = torch.hamming_window(n, periodic=False, **options)
        window = window * taper
    dft = torch.fft.rfft(window)
    scale = torch.full((n // 2 + 1,), 2.0 / n, **options)
    scale[0] = 1.0 / n
    if n % 2 == 0:
        scale[-1] = 1.0 / n
    if hamming:
        scale = scale / taper.mean()
    frequency = torch.fft.rfftfreq(n, **options)
    return Spectrum(
        amplitude=dft.abs() * scale,
        phase=dft.angle(),
        frequency=frequency,
        period=1.0 / frequency,
        window_length=n,
    )


def reconstruct(spectrum: Spectrum, num_samples: int) -> Tensor:
    """``x_t = sum_k A_k cos(2 pi k t / N + phi_k)`` for ``t = 0 .. num_samples - 1``, ``[..., num_samples]``.

    ``N`` is ``spectrum.window_length`` (the notebook inferred it from the bin count, wrong for odd
    ``N``). The cos/sin tables are built in float64 from ``k t mod N`` and cast to the spectrum's dtype.
    """
    num_samples = require_int("num_samples", num_samples, minimum=1)
    n = spectrum.window_length
    amplitude = spectrum.amplitude
    bins = torch.arange(n // 2 + 1, dtype=torch.int64, device=amplitude.device)
    times = torch.arange(num_samples, dtype=torch.int64, device=amplitude.device)
    angle = (bins[:, None] * times[None, :] % n).to(torch.float64) * (2.0 * math.pi / n)
    table = torch.cat([angle.cos(), angle.sin()]).to(amplitude.dtype)
    # A cos(wt + phi) = (A cos phi) cos wt - (A sin phi) sin wt
    coefficients = torch.cat([amplitude * spectrum.phase.cos(), -amplitude * spectrum.phase.sin()], dim=-1)
    return coefficients @ table


def dft_forecast(lookback: Tensor, horizon: int, hamming: bool = False) -> Tensor:
    """The notebook's DFT extrapolation: the next ``horizon`` samples of the lookback's harmonics, ``[..., horizon]``.

    Without ``hamming`` this is the lookback repeated (``forecast[h] == lookback[h mod N]``).
    """
    horizon = require_int("horizon", horizon, minimum=1)
    spectrum = harmonics(lookback, hamming=hamming)
    n = spectrum.window_length
    return reconstruct(spectrum, n + horizon)[..., n:]
