"""Where a model's closed-form parts get their data: a :class:`WindowSource`, handed in by the caller.

Models and their skip paths never build a stream (the layering is config → stream → model → trainer →
checkpoint); the trainer makes a source from the run's stream
(:func:`harmonic_forecast.trainer.stream_windows`) and passes it to
:meth:`~harmonic_forecast.models.base.Forecaster.fit_to_data`. A test can pass any function of the same shape.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from harmonic_forecast.signals import SignalSpec

SPLITS = ("train", "validation", "test")  # the splits a source is asked for (the stream's)


class WindowSource(Protocol):
    """``source(spec, batch_size, split, index) -> (lookback [batch_size, L], target [batch_size, H])``.

    Batch ``index`` of ``batch_size`` signals of ``spec`` from ``split`` (one of :data:`SPLITS`), float32,
    with ``L = spec.lookback`` and ``H = spec.horizon``, on any device (the caller moves them to its own).
    It must be a pure function of its arguments (and of whatever seed the source was made with), so that
    a fit from it is reproducible and the same on every rank.
    """

    def __call__(self, spec: SignalSpec, batch_size: int, split: str, index: int) -> tuple[Tensor, Tensor]: ...
