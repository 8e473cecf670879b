"""The run config: pydantic's checks as one-line errors naming the key, budgets in steps, ``--set`` overrides."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest

from harmonic_forecast.cli import main
from harmonic_forecast.config import load_run_config, parse_run_config
from harmonic_forecast.curriculum import Stage
from harmonic_forecast.errors import ConfigError
from harmonic_forecast.models import SEED_MODEL, ModelConfig, SeedGRUConfig

CONFIG = """
[train]
batch_size = 64
lr = 3e-3
[signal]
lookback = 100
horizon = 10
[model]
kind = "seed_gru"
hidden = 32
[[stages]]
components = [3, 5]
steps = 30
[[stages]]
components = [3, 8]
samples = 3000
min_samples = 100
promote_below = 0.01
"""
VALUES = tomllib.loads(CONFIG)


def _edited(*path: str | int, value: object) -> dict:
    values = copy.deepcopy(VALUES)
    *parents, leaf = path
    table = values
    for part in parents:
        table = table[part]
    table[leaf] = value
    return values


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(CONFIG)
    return path


def test_samples_become_steps_of_the_batch_and_stages_default_to_train_lr() -> None:
    config = parse_run_config(VALUES)
    assert config.stages == (
        Stage(components=(3, 5), steps=30, lr=3e-3),
        Stage(components=(3, 8), steps=47, lr=3e-3, promote_below=0.01, min_steps=2),  # ceil(3000 / 64), ceil(100 / 64)
    )
    assert config.total_steps == 77 and config.model.lookback == 100 and config.model.hidden == 32
    assert config.to_dict()["stages"][1]["steps"] == 47 and config.to_dict()["train"]["batch_size"] == 64


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("train", "batch_size"), 0, "train.batch_size: Input should be greater than or equal to 1, got 0"),
        (("train", "batch_size"), True, "train.batch_size: Input should be a valid integer, got True"),
        (("train", "bach_size"), 8, "train.bach_size: unknown key (known: seed, batch_size, lr,"),
        (("train", "lr"), float("nan"), "train.lr: Input should be a finite number, got nan"),
        (("train", "loss"), "l1", "train.loss: Input should be 'weighted_mse' or 'mse', got 'l1'"),
        (("train", "compile"), 1, "train.compile: Input should be 'auto' or a valid boolean, got 1"),
        (("train", "min_lr_ratio"), 1.5, "train.min_lr_ratio: Input should be less than or equal to 1, got 1.5"),
        (("train", "grad_accum"), 3, "train.grad_accum: 3 does not divide train.batch_size 64"),
        (("evaluation",), {}, "config.evaluation: unknown key (known: train, eval, signal, model, stages, wandb)"),
        (("signal",), 3, "signal: expected a table, got 3"),
        (("signal", "lookback"), 1, "model.lookback: Input should be greater than or equal to 2, got 1"),
        (("model", "hidden"), 2, "model.hidden: Input should be greater than or equal to 4, got 2"),
        (("model",), {"kind": "sparse_gru", "periods": [50, 10]}, "model.periods: need 2 <= low < high (half-open)"),
        (("model", "periods"), [50, 10], "model.periods: unknown key (known: kind, lookback,"),  # seed_gru has none
        (("model", "width"), 3, "model.width: unknown key (known: kind, lookback, horizon, hidden,"),
        (("model", "kind"), "gpt", "model.kind: Input should be 'expert_gru', 'sparse_gru', 'wiener_gru', 'seed_gru',"),
        (("model", "horizon"), 5, "model.horizon: set it in [signal]; the model follows the signal"),
        (("stages",), [], "stages: List should have at least 1 item"),
        (("stages", 1, "lr"), 0.0, "stages[1].lr: Input should be greater than 0, got 0.0"),
        (("stages", 0, "samples"), 10, "stages[0]: give steps or samples, not both"),
        (("stages", 1, "min_steps"), 10, "stages[1]: give min_steps or min_samples, not both"),
        (("stages", 0, "noise"), [0.1, -1], "stages[0].noise[1]: Input should be greater than or equal to 0, got -1"),
        (("stages", 0, "drift"), "quadratic", "stages[0].drift: Input should be 'linear' or a valid boolean"),
        (("stages", 0, "families"), [{"weight": 1}], "stages[0].families: need none or at least two families"),
        (  # the keys a family may set: not the stream's lookback, horizon or families
            ("stages", 0, "families"),
            [{"weight": 1}, {"weight": 1, "noize": 0.1}],
            "stages[0].families[1].noize: unknown key (known: weight, components, periods, integer_periods, "
            "amplitudes, noise, drift, drift_range, normalize, level, trend, level_shift, random_walk, noise_kind, "
            "noise_df, noise_phi)",
        ),
        (("stages", 1, "components"), [46, 3], "stages[1].components: need 1 <= low < high"),
        (("stages", 0, "noise"), [0.1, 1e9], "stages[0].noise"),
        # the default model's default experts, checked against a lookback too short for them
        (("model",), {"kind": "expert_gru"}, None),
    ],
)
def test_bad_values_give_one_line_naming_the_key(path: tuple, value: object, message: str | None) -> None:
    values = _edited(*path, value=value)
    if message is None:  # valid as written: made invalid by a short lookback
        values["signal"]["lookback"] = 30
        message = "model.sparse_folds: 3 folds leave 0 samples (lookback 30 - 3 x horizon 10)"
    with pytest.raises(ConfigError) as error:
        parse_run_config(values)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.parametrize("lookback", [30, 60, 88])
def test_the_default_models_defaults_are_checked_against_the_lookback(lookback: int) -> None:
    """Defaults are validated too: before, a lookback too short for them crashed while the experts were built."""
    with pytest.raises(ConfigError) as error:
        ModelConfig.from_dict({"kind": "expert_gru", "lookback": lookback, "horizon": 10})
    message = str(error.value)
    assert re.match(r"model\.(sparse_folds|ar_orders|clean_ar_order): ", message) and f"lookback {lookback}" in message
    assert "\n" not in message
    fitting = {"clean_ar_order": 0, "sparse_folds": 1, "ar_folds": 1, "ar_orders": [1, 2, 4]}
    assert ModelConfig.from_dict({"kind": "expert_gru", "lookback": lookback, **fitting}).lookback == lookback


def test_model_config_from_a_table_names_the_model_key() -> None:
    assert ModelConfig.from_dict(SEED_MODEL.model_dump()) == SEED_MODEL
    with pytest.raises(ConfigError, match=r"^model\.kind: Input should be 'expert_gru', .* got 'gpt'$"):
        ModelConfig.from_dict({"kind": "gpt"})


def test_set_overrides_index_into_the_stages(tmp_path: Path) -> None:
    overrides = ["stages.0.steps=5", "stages.1.lr=1e-3", "stages.1.noise=[0.0, 0.1]", "train.seed=7"]
    config = load_run_config(_write(tmp_path), overrides)
    assert config.stages[0].steps == 5 and config.stages[0].lr == 3e-3
    assert config.stages[1].lr == 1e-3 and config.stages[1].noise == (0.0, 0.1) and config.train.seed == 7


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stages.2.steps=5", "--set stages.2.steps: stages has 2 entries (0 to 1), not '2'"),
        ("stages.first.steps=5", "--set stages.first.steps: stages has 2 entries (0 to 1), not 'first'"),
        ("stages.0.stepz=5", "stages[0].stepz: unknown key (known: components, steps, samples,"),
        ("stages.0.steps=many", "stages[0].steps: Input should be a valid integer, got 'many'"),
        ("stages.1.lr=-1e-3", "stages[1].lr: Input should be greater than 0, got -0.001"),
        ("train.lr.peak=1", "--set train.lr.peak: train.lr is not a table, it is 0.003"),
        ("train.lr", "--set train.lr: expected key=value"),
    ],
)
def test_bad_overrides_give_one_line(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_run_config(_write(tmp_path), [override])
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_bad_stage_override_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, output = str(_write(tmp_path)), str(tmp_path / "out")
    status = main(["train", "--config", config, "--output-dir", output, "--set", "stages.3.steps=5"])
    error = capsys.readouterr().err
    assert status == 2 and "stages.3.steps" in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_model_table_takes_the_fields_of_its_kind() -> None:
    assert parse_run_config(VALUES).model == SeedGRUConfig(hidden=32)
    sparse = parse_run_config(_edited("model", value={"kind": "sparse_gru", "periods": [10, 50]}))
    assert sparse.model.periods == (10, 50) and sparse.to_dict()["model"]["periods"] == (10, 50)
    assert parse_run_config(_edited("model", value={})).model.kind == "expert_gru"
