"""The skip paths of the residual models: closed-form forecasters a network learns a residual over.

- :mod:`~harmonic_forecast.models.skips.wiener`: :class:`WienerSkip`, each window's best linear forecast
  at its own noise level.
- :mod:`~harmonic_forecast.models.skips.sparse_fit`: :class:`SparseSkip`, the sparse Bayesian fit of the
  window on the integer period grid (with the Wiener path's noise estimate).
- :mod:`~harmonic_forecast.models.skips.autoregressive`: :class:`BacktestAR`, per-window autoregression with
  its order and error backtested inside the window (an expert of ``expert_gru``).

Both are modules of the :class:`SkipPath` shape, handed to
:class:`~harmonic_forecast.models.residual_gru.ResidualGRUForecaster` by the factory of its kind. They are
fitted from windows handed in (a :class:`~harmonic_forecast.models.windows.WindowSource`) and never build a stream.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from harmonic_forecast.models.skips.autoregressive import BacktestAR
from harmonic_forecast.models.skips.sparse_fit import PeriodSparseFit, SparseSkip
from harmonic_forecast.models.skips.wiener import WienerSkip
from harmonic_forecast.models.windows import WindowSource
from harmonic_forecast.signals import SignalSpec

__all__ = ["BacktestAR", "PeriodSparseFit", "SkipPath", "SparseSkip", "WienerSkip"]


class SkipPath(Protocol):
    """What a residual model needs of its skip path (an ``nn.Module``; all tensors float64).

    ``skip(x [B, L]) -> (forecast [B, H], noise variance s² [B], smoothed window [B, L])``;
    ``expected_error(s² [B]) -> [B]`` its calibrated MSE at that noise level; ``fit(source, spec, scaled)``
    its closed-form fit on signals of ``spec`` from ``source``; ``flops()`` the matrix-multiply FLOPs of one
    window's forward pass.
    """

    def __call__(self, lookback: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...

    def expected_error(self, variance: Tensor) -> Tensor: ...

    def fit(self, source: WindowSource, spec: SignalSpec, scaled: bool = False) -> None: ...

    def flops(self) -> int: ...
