"""The one scaling convention: every window is read relative to its own lookback.

``center`` is the lookback's mean and ``scale`` its standard deviation (root mean square deviation
from that mean; robust to a single outlier where the largest deviation is not), per window; a window
is scaled as ``(x - center) / scale``. Both statistics are affine equivariant
(``a·x + b`` has center ``a·center + b`` and scale ``a·scale`` for ``a > 0``), so a model that reads
scaled windows and maps its output back, ``center + scale · f((x - center) / scale)``, satisfies
``F(a·x + b) = a·F(x) + b``: users' units never matter, and the horizon's scale is never needed
(instance normalisation, as RevIN, Kim et al. 2022, and Chronos's mean scaling, Ansari et al. 2024).
A constant lookback has scale 0; it is scaled by 1 (its scaled window is all zeros) and a model
forecasts its constant. The models (:mod:`harmonic_forecast.models`), their closed-form fits and
the evaluation's per-window MSE all use these functions.
"""

from __future__ import annotations

import torch
from torch import Tensor


def lookback_statistics(lookback: Tensor) -> tuple[Tensor, Tensor]:
    """``(center, scale)`` of windows ``[B, L]``, each ``[B, 1]`` float64; ``scale`` is 0 for a constant window.

    Computed in float64 whatever the input's float dtype, so a large level does not eat the variation's digits,
    and relative to the window's largest magnitude and deviation, so squares neither overflow (values near
    1e300) nor underflow (values near 1e-300) on the way.
    """
    x = lookback.double()
    magnitude = x.abs().amax(dim=-1, keepdim=True)
    magnitude = torch.where((magnitude > 0) & magnitude.isfinite(), magnitude, 1.0)
    center = (x / magnitude).mean(dim=-1, keepdim=True) * magnitude
    deviation = x - center
    spread = deviation.abs().amax(dim=-1, keepdim=True)
    spread_or_one = torch.where((spread > 0) & spread.isfinite(), spread, 1.0)
    scale = (deviation / spread_or_one).square().mean(dim=-1, keepdim=True).sqrt() * spread_or_one
    return center, scale


def lookback_spread(lookback: Tensor) -> tuple[Tensor, Tensor]:
    """``(center, spread)`` of windows ``[B, L]``, each ``[B, 1]`` in the lookback's dtype: its mean and its largest
    absolute deviation from that mean (0 for a constant window), the units of the safety range."""
    center = lookback.mean(dim=-1, keepdim=True)
    return center, (lookback - center).abs().amax(dim=-1, keepdim=True)


def lookback_bounds(lookback: Tensor, excursion: float) -> tuple[Tensor, Tensor]:
    """``(low, high)`` ``[B, 1]``: ``center ± excursion · spread`` of ``lookback`` ``[B, L]`` (:func:`lookback_spread`),
    the safety range of the default model and of the combination."""
    center, spread = lookback_spread(lookback)
    return center - excursion * spread, center + excursion * spread


def clip_to_lookback(forecast: Tensor, lookback: Tensor, excursion: float) -> Tensor:
    """``forecast`` ``[B, H]`` clipped to :func:`lookback_bounds` of ``lookback`` ``[B, L]``; NaN stays NaN."""
    low, high = lookback_bounds(lookback.to(forecast.dtype), excursion)
    return torch.minimum(torch.maximum(forecast, low), high)


def scale_windows(lookback: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
    """``lookback`` ``[B, L]`` and each of ``others`` ``[B, *]`` (e.g. the target) scaled by the lookback's statistics.

    Returns float64 tensors in the order given. A constant lookback is divided by 1.
    """
    center, scale = lookback_statistics(lookback)
    divisor = torch.where(scale > 0, scale, 1.0)
    return tuple((x.double() - center) / divisor for x in (lookback, *others))


def unscale(scaled_forecast: Tensor, lookback: Tensor) -> Tensor:
    """Map a forecast ``[B, H]`` of the scaled window back to the units of ``lookback`` ``[B, L]``, float64.

    A constant lookback forecasts its constant, whatever ``scaled_forecast`` holds (if finite).
    """
    center, scale = lookback_statistics(lookback)
    forecast = scaled_forecast.double() * scale + center
    return torch.where(scale == 0, center.expand_as(forecast), forecast)  # a NaN scale (inf input) stays NaN
