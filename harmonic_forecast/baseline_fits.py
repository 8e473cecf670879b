"""The classical baselines fitted for one signal distribution, from its stream: the evaluation's side of
:mod:`harmonic_forecast.baselines`, which only takes tensors.

:func:`fit_baselines` draws its windows from :class:`~harmonic_forecast.stream.HarmonicStream` (the
``validation`` split to choose the AR order and the dictionary ridge, the ``train`` split to fit the
linear map), never from the ``test`` split the evaluation scores on.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import torch
from torch import Tensor

from harmonic_forecast.baselines import (
    DEFAULT_AR_ORDERS,
    DICTIONARY_RIDGES,
    Forecaster,
    LinearMap,
    PeriodDictionary,
    ScaledLinearMap,
    autoregressive,
    choose_ar_order,
    dft_extrapolation,
    mse,
    naive,
    seasonal_naive,
)
from harmonic_forecast.errors import ConfigError, require_int
from harmonic_forecast.signals import SignalSpec
from harmonic_forecast.stream import HarmonicStream


def _validation_best(candidates: Iterable[Forecaster], lookback: Tensor, target: Tensor) -> Forecaster:
    return min(candidates, key=lambda forecaster: mse(forecaster(lookback), target))


def fit_baselines(
    spec: SignalSpec,
    *,
    seed: int = 0,
    fit_batches: int = 16,
    batch_size: int = 4096,
    validation_size: int = 1024,
    device: str | torch.device = "cpu",
) -> dict[str, Forecaster]:
    """Ready forecasters ``[N, spec.lookback] -> [N, spec.horizon]`` for ``spec``, by name.

    The AR order and the dictionary ridge are chosen on ``validation_size`` validation signals and the
    linear maps (in the stream's units, and on lookback-scaled windows: :class:`ScaledLinearMap`) are fitted
    on ``fit_batches`` train batches of ``batch_size``, all from ``HarmonicStream(spec, seed)``.
    """
    fit_batches = require_int("fit_batches", fit_batches, minimum=1)
    if spec.lookback < 4:
        raise ConfigError(f"signal.lookback: the baselines need at least 4 samples, got {spec.lookback}")
    horizon = spec.horizon
    lookback, target = HarmonicStream(spec, validation_size, seed, device, split="validation").batch(0)
    orders = tuple(order for order in DEFAULT_AR_ORDERS if order < spec.lookback // 2) or (1,)
    periods = (math.floor(spec.periods[0]), math.ceil(spec.periods[1]))
    dictionaries = (PeriodDictionary(spec.lookback, horizon, periods, ridge) for ridge in DICTIONARY_RIDGES)
    train = HarmonicStream(spec, batch_size, seed, device, split="train")
    return {
        "naive": functools.partial(naive, horizon=horizon),
        "seasonal_naive": functools.partial(seasonal_naive, horizon=horizon),
        "dft": functools.partial(dft_extrapolation, horizon=horizon),
        "ar": functools.partial(autoregressive, horizon=horizon, order=choose_ar_order(lookback, target, orders)),
        "linear_map": LinearMap.fit_batches(train.batch(index) for index in range(fit_batches)),
        "scaled_linear_map": ScaledLinearMap.fit_batches(train.batch(index) for index in range(fit_batches)),
        "period_dictionary": _validation_best(dictionaries, lookback, target),
    }
