"""The adaptive Wiener skip path: each window's best linear forecast at its own noise level.

Fitted in closed form from clean stream statistics accumulated in float64: ``G = E[x x^T]`` over
windows ``x`` and ``C = E[x y^T]`` with their continuations ``y``. For white noise of variance
``s²`` the least-squares linear map is ``(G + s² I)^-1 C``; with ``G = V diag(e) V^T`` that is
``V diag(1 / (e + s²)) V^T C``, so one eigendecomposition serves every noise level.

Each window's ``s²`` is read off its coordinates on the ``noise_modes`` eigenvectors of smallest
eigenvalue, where clean signals have almost no energy and white noise has ``s²`` per coordinate:
``s² = mean(z_k² - e_k)``, floored at float32 rounding. Clean windows thus get the near-exact map
(errors ~4e-6 on clean signals) and noisy ones the right amount of smoothing, which a single map
fitted at one noise level cannot do.

The skip path also carries a calibration of its own expected MSE as a function of ``log s²``,
measured on validation windows over a grid of noise levels; the model uses it to scale its learned
residual and its loss, so clean and noisy windows weigh alike in training.

The windows of both fits come from outside, through a :class:`~harmonic_forecast.models.windows.WindowSource`
(the trainer's is the run's stream); nothing here builds a stream.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from harmonic_forecast.models.windows import WindowSource
from harmonic_forecast.scaling import scale_windows
from harmonic_forecast.signals import SignalSpec

NOISE_FLOOR = 1e-16  # float32 rounding of unit-peak windows: (2**-24)**2 / 12 is ~3e-16
CALIBRATION_NOISE = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
ERROR_KNOTS = torch.linspace(-37.0, 1.0, 39, dtype=torch.float64)  # log s² grid of the error calibration


class WienerSkip(nn.Module):
    """``forward(x [B, L]) -> (forecast [B, H], noise variance s² [B], smoothed window [B, L])``, float64.

    All state is in buffers (saved with the model); a fresh module forecasts zeros until :meth:`fit`.
    """

    def __init__(self, lookback: int, horizon: int) -> None:
        super().__init__()
        self.noise_modes = max(1, (2 * lookback) // 5)
        self.register_buffer("eigenvalues", torch.ones(lookback, dtype=torch.float64))
        self.register_buffer("eigenvectors", torch.eye(lookback, dtype=torch.float64))
        self.register_buffer("projected_cross", torch.zeros(lookback, horizon, dtype=torch.float64))
        self.register_buffer("error_knots", ERROR_KNOTS.clone(), persistent=False)  # fixed grid: not saved
        self.register_buffer("expected_errors", torch.ones_like(ERROR_KNOTS))

    def noise_variance(self, coordinates: Tensor) -> Tensor:
        """Per-window ``s²`` from the eigen-coordinates ``[B, L]`` (ascending eigenvalues)."""
        low = coordinates[:, : self.noise_modes].square() - self.eigenvalues[: self.noise_modes]
        return low.mean(dim=-1).clamp_min(0.0).add_(NOISE_FLOOR)

    def forward(self, lookback: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Forecast ``[B, H]``, noise variance ``s²`` ``[B]`` and the Wiener-smoothed window ``[B, L]``, float64."""
        coordinates = lookback.double() @ self.eigenvectors  # float64 ops are exempt from autocast
        variance = self.noise_variance(coordinates)
        gain = 1.0 / (self.eigenvalues + variance[:, None])
        denoised = (coordinates * (self.eigenvalues * gain)) @ self.eigenvectors.mT
        return (coordinates * gain) @ self.projected_cross, variance, denoised

    def expected_error(self, variance: Tensor) -> Tensor:
        """The calibrated MSE of the skip forecast at noise variance ``variance``."""
        return interpolate_error(self.error_knots, self.expected_errors, variance)

    def flops(self) -> int:
        """Matrix-multiply FLOPs of one window's forward pass: eigen-coordinates, smoothed window and forecast."""
        lookback, horizon = self.projected_cross.shape
        return 2 * lookback * (2 * lookback + horizon)

    @torch.no_grad()
    def fit(
        self,
        source: WindowSource,
        spec: SignalSpec,
        batches: int = 8,
        batch_size: int = 8192,
        scaled: bool = False,
        calibration_size: int = 2048,
    ) -> None:
        """Fit the maps on ``batches`` clean ``train`` batches of ``spec`` from ``source`` and calibrate the error
        on ``calibration_size`` validation windows per calibration noise level (:func:`calibrate_error`).

        The moments are accumulated in float64 on the module's device (the windows are moved there); the
        result is a pure function of what ``source`` returns, so every rank of a distributed run given the
        same source fits the same skip path. With ``scaled`` the windows are first scaled by their lookback
        (:func:`scale_windows`), as a model with ``input_scaling = "lookback"`` will feed them.
        """
        device = self.eigenvalues.device
        clean = spec.replace(noise=0.0)
        gram = torch.zeros_like(self.eigenvectors)
        cross = torch.zeros_like(self.projected_cross)
        for index in range(batches):
            lookback, target = (values.to(device) for values in source(clean, batch_size, "train", index))
            if scaled:
                lookback, target = scale_windows(lookback, target)
            gram.addmm_(lookback.double().mT, lookback.double())
            cross.addmm_(lookback.double().mT, target.double())
        eigenvalues, eigenvectors = torch.linalg.eigh(gram / (batches * batch_size))
        self.eigenvalues.copy_(eigenvalues.clamp_min(0.0))
        self.eigenvectors.copy_(eigenvectors)
        self.projected_cross.copy_(eigenvectors.mT @ (cross / (batches * batch_size)))
        self.expected_errors.copy_(
            calibrate_error(lambda x: self(x)[:2], self.error_knots, source, spec, calibration_size, scaled=scaled)
        )


def interpolate_error(knots: Tensor, errors: Tensor, variance: Tensor) -> Tensor:
    """``errors`` at ``log(variance)``, piecewise linear between the evenly spaced ``knots`` (clamped at the ends).

    A NaN variance (a window holding a NaN or inf) gives NaN for that entry only, never an index error.
    """
    position = ((variance.log() - knots[0]) / (knots[1] - knots[0])).clamp(0.0, len(knots) - 1.0)
    # NaN survives the clamp and NaN.long() is no index (INT64_MIN on x86): index such entries at knot 0, and
    # ``fraction`` (NaN there) carries the NaN into the result.
    lower = torch.where(position.isnan(), 0.0, position).floor().long().clamp_max(len(knots) - 2)
    fraction = position - lower
    return errors[lower] * (1 - fraction) + errors[lower + 1] * fraction


@torch.no_grad()
def calibrate_error(
    forecast_and_variance: Callable[[Tensor], tuple[Tensor, Tensor]],
    knots: Tensor,
    source: WindowSource,
    spec: SignalSpec,
    per_level: int = 2048,
    scaled: bool = False,
) -> Tensor:
    """Expected MSE of a skip path per ``log s²`` knot, a Gaussian-kernel average over validation windows.

    The windows are batch 0 of the ``validation`` split of ``source``: ``per_level`` signals of ``spec`` at
    each of :data:`CALIBRATION_NOISE` (scaled by their lookback with ``scaled``), moved to the device of
    ``knots``. Knots that no window comes near take the value of the nearest knot that one does.
    """
    device = knots.device
    noisy = spec.replace(noise=CALIBRATION_NOISE)
    batch_size = per_level * len(CALIBRATION_NOISE)
    lookback, target = (values.to(device) for values in source(noisy, batch_size, "validation", 0))
    if scaled:
        lookback, target = (values.float() for values in scale_windows(lookback, target))
    forecast, variance = forecast_and_variance(lookback)
    error = (forecast - target.double()).square().mean(dim=-1)
    spacing = float(knots[1] - knots[0])
    weight = torch.exp(-0.5 * ((variance.log()[None] - knots[:, None]) / spacing).square())
    mass = weight.sum(dim=-1)
    smoothed = (weight @ error) / mass.clamp_min(1e-300)
    known = mass > 1e-3
    nearest = (torch.arange(len(mass), device=device)[:, None] - known.nonzero()[:, 0][None]).abs().argmin(dim=-1)
    return smoothed[known][nearest]
