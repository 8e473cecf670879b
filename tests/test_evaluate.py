"""``evaluate`` on the shipped pretrained model, on reduced test sets, with every output written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harmonic_forecast import load_forecaster
from harmonic_forecast.cli import main
from harmonic_forecast.errors import ConfigError
from harmonic_forecast.evaluate import EvaluationSettings, evaluate, evaluation_sets, robustness, score
from harmonic_forecast.suites import SHIFT_FAMILIES, shift_sets

BASELINES = {"naive", "seasonal_naive", "dft", "ar", "linear_map", "scaled_linear_map", "period_dictionary"}


def test_evaluation_sets_cover_the_bands_clean_and_noisy() -> None:
    sets = evaluation_sets(100, 10)
    assert list(sets) == [
        f"{band} {kind}" for band in ("(3,10)", "(3,20)", "(3,45)", "(40,46)") for kind in ("clean", "σ=0.1")
    ] + ["(3,45) σ=0.03", "(3,45) σ=0.3"]
    assert sets["(40,46) σ=0.1"].components == (40, 46) and sets["(40,46) σ=0.1"].noise == 0.1


def test_score() -> None:
    forecast, target = torch.zeros(2, 3), torch.tensor([[1.0, 2.0, 0.0], [-1.0, 0.0, 0.0]])
    result = score(forecast, target)
    assert result["mse"] == pytest.approx(1.0) and result["mae"] == pytest.approx(4 / 6)
    assert result["mse_per_step"] == pytest.approx([1.0, 2.0, 0.0])


def test_robustness() -> None:
    lookback = torch.tensor([[0.0, 2.0], [1.0, 1.0], [0.0, 1.0]])  # means 1, 1, 0.5; spreads 1, 0 (-> 1), 0.5
    target = torch.zeros(3, 2)
    naive_forecast = lookback[:, -1:].expand(3, 2)
    forecast = torch.tensor([[4.0, 0.0], [1.0, 1.0], [float("nan"), 0.0]])
    result = robustness(forecast, lookback, target, naive_forecast)
    assert result["worse_than_naive"] == pytest.approx(2 / 3)  # row 0: 8 > 4; row 1: a tie; row 2: non-finite
    assert result["max_excursion"] == pytest.approx(3.0)  # |4 - 1| / 1
    assert result["non_finite"] == 1


def test_unknown_suite_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="suite"):
        evaluate(load_forecaster(), EvaluationSettings(signals=8, fit_batches=1), suite="drift")


def test_same_signals_for_every_forecaster_and_every_run() -> None:
    settings = EvaluationSettings(signals=128, fit_batches=1)
    first = evaluate(load_forecaster(), settings)
    again = evaluate(load_forecaster(), settings)
    assert first["(3,45) clean"]["naive"]["mse"] == again["(3,45) clean"]["naive"]["mse"]
    assert first["(3,45) clean"]["model"]["mse"] == again["(3,45) clean"]["model"]["mse"]


def test_evaluate_command_on_the_pretrained_model(tmp_path: Path) -> None:
    status = main(["evaluate", "--signals", "256", "--fit-batches", "1", "--output-dir", str(tmp_path)])
    assert status == 0
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert report["model"] == "the shipped pretrained model"
    results = report["results"]
    assert len(results) == 10
    for scores in results.values():
        assert set(scores) == {"model", *BASELINES}
        assert scores["naive"]["vs_naive"] == 1.0
        assert all(len(s["mse_per_step"]) == 10 and s["mae"] > 0 for s in scores.values())
        assert scores["naive"]["worse_than_naive"] == 0.0  # the robustness columns, for every forecaster
        for values in scores.values():
            assert 0.0 <= values["worse_than_naive"] <= 1.0 and values["max_excursion"] >= 0
            assert isinstance(values["non_finite"], int)
        assert scores["model"]["non_finite"] == 0
    clean = results["(3,10) clean"]
    assert clean["model"]["mse"] < 0.5 * clean["naive"]["mse"]  # the shipped model has learnt something
    assert clean["linear_map"]["mse"] < 1e-4  # and the linear baselines are reported, strong as they are
    markdown = (tmp_path / "evaluation.md").read_text()
    assert "| (40,46) σ=0.1 |" in markdown and "linear_map" in markdown
    assert "Robustness per forecaster" in markdown and "% · " in markdown
    for picture in ("error_by_step.png", "forecasts.png"):
        assert (tmp_path / picture).read_bytes()[:4] == b"\x89PNG"


def test_shift_sets_cover_every_family_clean_and_noisy() -> None:
    sets = shift_sets(100, 10)
    for family in SHIFT_FAMILIES:
        assert {f"{family} clean", f"{family} σ=0.1"} <= set(sets), family
    assert sets["pure tone clean"].components == (1, 2) and not sets["pure tone clean"].integer_periods
    assert sets["level + trend σ=0.1"].level == (-2.0, 2.0) and sets["level + trend σ=0.1"].noise == 0.1
    assert sets["periods 2..10 clean"].periods == (2, 10)
    assert {spec.noise_kind for spec in sets.values()} == {"gaussian", "laplace", "student_t", "ar1"}


def test_evaluate_command_on_the_shift_suite(tmp_path: Path) -> None:
    args = ["evaluate", "--suite", "shift", "--signals", "64", "--fit-batches", "1", "--output-dir", str(tmp_path)]
    assert main(args) == 0
    results = json.loads((tmp_path / "evaluation.json").read_text())["results"]
    assert list(results) == list(shift_sets(100, 10))
    for scores in results.values():
        assert set(scores) == {"model", *BASELINES}
        assert all({"worse_than_naive", "max_excursion", "non_finite"} <= set(s) for s in scores.values())
        assert scores["model"]["non_finite"] == 0
