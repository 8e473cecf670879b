"""SignalSpec validates every field with a one-line error naming it."""

from __future__ import annotations

import pickle

import pytest

from harmonic_forecast import ConfigError, SignalSpec


def test_seed_defaults_and_public_keywords() -> None:
    spec = SignalSpec(lookback=100, horizon=10, components=(3, 45), periods=(10, 100), noise=0.0)
    assert spec.length == 110 and spec.max_components == 44
    assert spec == SignalSpec()


def test_lists_from_config_files_become_tuples_and_round_trip() -> None:
    spec = SignalSpec.from_dict({"components": [3, 10], "periods": [10, 100], "noise": 0.1})
    assert spec.components == (3, 10) and spec.noise == 0.1
    assert SignalSpec.from_dict(spec.to_dict()) == spec
    assert spec.replace(components=(3, 20)).components == (3, 20)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lookback": 0}, "signal.lookback"),
        ({"lookback": 2.5}, "signal.lookback"),
        ({"horizon": True}, "signal.horizon"),
        ({"lookback": 5000}, "signal.lookback + signal.horizon"),
        ({"components": (10, 3)}, "signal.components"),
        ({"components": (3, 3)}, "signal.components"),
        ({"components": (0, 3)}, "signal.components"),
        ({"components": (3, 2000)}, "signal.components"),
        ({"components": 5}, "signal.components"),
        ({"components": (3, "x")}, "signal.components[1]"),
        ({"periods": (1, 100)}, "signal.periods"),
        ({"periods": (10.5, 100)}, "signal.periods[0]"),
        ({"periods": (100, 10)}, "signal.periods"),
        ({"periods": (2, 10**7)}, "signal.periods"),
        ({"noise": -0.1}, "signal.noise"),
        ({"noise": float("nan")}, "signal.noise"),
        ({"noise": "0.1"}, "signal.noise"),
        ({"noise": []}, "signal.noise"),
        ({"noise": [0.0, -0.1]}, "signal.noise[1]"),
        ({"amplitudes": "gaussian"}, "signal.amplitudes"),
        ({"drift": 1}, "signal.drift"),
        ({"drift_range": (0.0, 2.0)}, "signal.drift_range"),
        ({"drift_range": (2.0, 1.0)}, "signal.drift_range"),
        ({"normalize": "yes"}, "signal.normalize"),
        ({"integer_periods": None}, "signal.integer_periods"),
    ],
)
def test_invalid_values_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        SignalSpec(**changes)
    message = str(error.value)
    assert message.startswith(field + ":") and "\n" not in message


def test_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^signal\.noize: unknown key"):
        SignalSpec.from_dict({"noize": 0.1})


def test_continuous_periods_accept_floats() -> None:
    spec = SignalSpec(periods=(2.5, 99.5), integer_periods=False)
    assert spec.periods == (2.5, 99.5)


def test_value_semantics_survive_pickling_and_replace_validates() -> None:
    spec = SignalSpec(noise=[0.0, 0.1], families=[{"weight": 2}, {"weight": 1, "drift": True}])
    assert spec.noise == (0.0, 0.1) and {spec: 1}[SignalSpec(**spec.to_dict())] == 1
    copy = pickle.loads(pickle.dumps(spec))
    assert copy == spec and hash(copy) == hash(spec) and copy.members[1][2].drift is True
    assert SignalSpec() != SignalSpec(noise=0.1) and SignalSpec().members == ((0, 1, SignalSpec()),)
    with pytest.raises(ConfigError, match=r"^signal\.noise_df: "):
        spec.replace(noise_df=1.0)
