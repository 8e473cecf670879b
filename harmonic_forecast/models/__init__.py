"""The forecasters, one module per family, and the registry that maps a ``[model]`` table's ``kind`` to one.

- ``expert_gru`` (default, :mod:`~harmonic_forecast.models.expert_gru`): a GRU decoder combining closed-form
  experts (last value, per-window AR with a backtested order, the sparse period-grid fit) by their errors
  backtested inside the window, plus a learned residual; its forecasts are clipped to the lookback's range.
- ``sparse_gru`` and ``wiener_gru`` (:mod:`~harmonic_forecast.models.residual_gru`): one GRU
  network learning a residual over a skip path (:mod:`harmonic_forecast.models.skips`), the sparse
  period-grid fit or the adaptive Wiener filter, handed to it by the kind's factory.
- ``seed_gru`` (:mod:`~harmonic_forecast.models.seed_gru`, the notebook's final model), ``lstm``
  (:mod:`~harmonic_forecast.models.lstm`) and ``seq2seq_gru`` (:mod:`~harmonic_forecast.models.seq2seq_gru`):
  the notebook's three models, kept for comparison.

Every model maps a lookback ``[B, lookback]`` to a forecast ``[B, horizon]`` float32 and is saved as
``config.json`` + ``model.safetensors`` (:mod:`~harmonic_forecast.models.base`). Models take tensors only:
closed-form parts are fitted by :meth:`Forecaster.fit_to_data` from a :class:`WindowSource` that the caller
(the trainer) makes from the stream; nothing under ``models/`` imports :mod:`harmonic_forecast.stream`.

Each family declares its own config fields: :class:`ModelConfig` holds the shared ones (``kind``,
``lookback``, ``horizon``, ``hidden``, ``encoder_width``, ``detach_feedback``, ``input_scaling``) and a
family's config subclasses it; :func:`model_config` (or ``ModelConfig.from_dict``) picks the class by
``kind``, so a key of another family is a one-line :class:`~harmonic_forecast.errors.ConfigError` naming it.

Adding a model family ``my_model``:

1. Write ``harmonic_forecast/models/my_model.py`` with ``class MyModelConfig(ModelConfig)`` setting
   ``kind: Literal["my_model"] = "my_model"`` and the family's own fields; ``class MyModelForecaster(Forecaster)``
   whose ``__init__(config)`` builds the modules and which implements ``forecast_scaled`` (and, if its
   objective differs, ``training_loss_scaled``; if it has closed-form parts, ``fit_to_data(source, spec)``);
   a ``flops_per_sample(config, training)`` staticmethod; and ``FAMILY = Family(MyModelConfig,
   MyModelForecaster, MyModelForecaster.flops_per_sample)``. A residual model over a new skip path is
   instead a skip module under ``skips/`` (of the :class:`~harmonic_forecast.models.skips.SkipPath` shape),
   a factory ``config -> skip`` and ``residual_family(MyModelConfig, factory)`` in ``residual_gru.py``.
2. Import the module here and add its ``FAMILY`` to :data:`FAMILIES`. The kind is then accepted by run
   configs (``[model] kind = "my_model"``), :func:`build_model`, :func:`flops_per_sample` and
   :meth:`Forecaster.from_pretrained`.
3. Add the kind to the kind-parametrised tests (``tests/test_model.py``, ``tests/test_scaling.py``,
   ``tests/test_nonfinite_input.py`` run over :data:`MODEL_KINDS`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict

from harmonic_forecast.errors import ConfigError
from harmonic_forecast.models import expert_gru, lstm, residual_gru, seed_gru, seq2seq_gru
from harmonic_forecast.models.base import (
    CONFIG_FILE,
    INPUT_SCALINGS,
    WEIGHTS_FILE,
    Family,
    Forecaster,
    Loss,
    ModelConfig,
    load_weights,
    nan_where_nonfinite,
)
from harmonic_forecast.models.expert_gru import ExpertGRUConfig, ExpertGRUForecaster
from harmonic_forecast.models.lstm import LSTMConfig, LSTMForecaster
from harmonic_forecast.models.residual_gru import ResidualGRUForecaster, SparseGRUConfig, WienerGRUConfig
from harmonic_forecast.models.seed_gru import SEED_MODEL, SeedGRUConfig, SeedGRUForecaster
from harmonic_forecast.models.seq2seq_gru import Seq2SeqGRUConfig, Seq2SeqGRUForecaster
from harmonic_forecast.models.windows import WindowSource
from harmonic_forecast.tables import Table, validated

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_KIND",
    "FAMILIES",
    "INPUT_SCALINGS",
    "MODEL_KINDS",
    "SEED_MODEL",
    "WEIGHTS_FILE",
    "ExpertGRUConfig",
    "ExpertGRUForecaster",
    "Family",
    "Forecaster",
    "LSTMConfig",
    "LSTMForecaster",
    "Loss",
    "ModelConfig",
    "ResidualGRUForecaster",
    "SeedGRUConfig",
    "SeedGRUForecaster",
    "Seq2SeqGRUConfig",
    "Seq2SeqGRUForecaster",
    "SparseGRUConfig",
    "WienerGRUConfig",
    "WindowSource",
    "build_model",
    "flops_per_sample",
    "load_weights",
    "model_config",
    "nan_where_nonfinite",
    "read_model_config",
]

FAMILIES: dict[str, Family] = {
    family.kind: family
    for family in (
        expert_gru.FAMILY,
        residual_gru.SPARSE_GRU,
        residual_gru.WIENER_GRU,
        seed_gru.FAMILY,
        lstm.FAMILY,
        seq2seq_gru.FAMILY,
    )
}
MODEL_KINDS = tuple(FAMILIES)
DEFAULT_KIND = "expert_gru"
LEGACY_KEYS = ("periods", "sparse_iterations")  # written by every kind before the fields became sparse_gru's own


class _Kind(Table):
    """Only the ``kind`` of a ``[model]`` table (the other keys are the family's to check)."""

    model_config = ConfigDict(extra="ignore")

    kind: Literal[MODEL_KINDS] = DEFAULT_KIND


def model_config(values: dict[str, Any]) -> ModelConfig:
    """The config of the family of ``values["kind"]`` (default :data:`DEFAULT_KIND`) from a ``[model]`` table.

    A bad kind, a bad value or a key the family does not have is a one-line :class:`ConfigError`
    naming ``model.<key>``.
    """
    kind = validated(_Kind, values, "model").kind
    return validated(FAMILIES[kind].config, values, "model")


def build_model(config: ModelConfig) -> Forecaster:
    """A freshly initialised forecaster of ``config.kind`` (``config`` being that family's config)."""
    family = FAMILIES[config.kind]
    if not isinstance(config, family.config):
        wanted, got = family.config.__name__, type(config).__name__
        raise TypeError(f"build_model: a {config.kind} model needs a {wanted}, got a {got}")
    return family.build(config)


def flops_per_sample(config: ModelConfig, training: bool = True) -> float:
    """Matrix-multiply FLOPs per signal of a forward pass, times 3 with the backward pass when ``training``.

    Counted from the config by the family: each linear map of n inputs and m outputs costs 2nm; a GRU
    cell step 2 * 3H(in + H), an LSTM step 2 * 4H(in + H). Element-wise work and the rfft are left out
    (a few %). Skip paths (float64, no gradient) are counted once, forward only.
    """
    return FAMILIES[config.kind].flops(config, training)


def read_model_config(directory: Path) -> ModelConfig:
    """The model config in ``directory/config.json`` (kind under ``model_type``), or a one-line :class:`ConfigError`.

    A config saved before the scaling convention reads as ``input_scaling = "none"``, an ``expert_gru`` one
    saved before its sparse backtest had folds as ``sparse_folds = 1``, before the regime-break rule or the
    noiseless windows' AR refit with them off, before that refit read windows backwards too with a forward
    fit (each as trained and as it forecast); the sparse fit's
    keys, which every kind used to write, are dropped for a kind that does not have them.
    """
    try:
        values = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{directory / CONFIG_FILE}: cannot read model config ({error})") from None
    if not isinstance(values, dict) or values.get("model_type") not in MODEL_KINDS:
        raise ConfigError(f"{directory / CONFIG_FILE}: not a model config of kind {', '.join(MODEL_KINDS)}")
    kind = values.pop("model_type")
    fields = FAMILIES[kind].config.model_fields
    values = {key: value for key, value in values.items() if key in fields or key not in LEGACY_KEYS}
    values.setdefault("input_scaling", "none")  # saved before the scaling convention: read as trained
    if kind == "expert_gru":
        values.setdefault("sparse_folds", 1)  # saved before the sparse expert's folds: one fold, as trained
        values.setdefault("trust_earned", False)  # saved before the gate's cap on losing experts
        values.setdefault("trust_cap", "prior")  # saved before the cap was relative to naive's offset
        values.setdefault("break_ratio", 0.0)  # saved before the regime-break rule: off, as it forecast then
        values.setdefault("clean_ar_order", 0)  # saved before noiseless windows' AR refit: off,
        values.setdefault("clean_noise_variance", 1e-10)  # at the threshold of that time
        values.setdefault("clean_ar_fit", "forward")  # saved before the forward-backward refit: as evaluated
    return model_config({"kind": kind, **values})
