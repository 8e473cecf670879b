"""The ``real`` suite on the shipped model: statsmodels' series, the user path, MASE, the aggregate, the outputs."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harmonic_forecast import load_forecaster
from harmonic_forecast.cli import main
from harmonic_forecast.forecast import PRETRAINED
from harmonic_forecast.real_series import load_real_series
from harmonic_forecast.real_suite import RealSuiteSettings, fit_linear_map, mase, real_forecasts, real_windows

FORECASTERS = {"model", "model_alone", "naive", "seasonal_naive", "ar_backtest", "drift", "linear_map"}
STRIDE = 40  # a few windows per series: the full suite (stride 1) is `harmonic-forecast evaluate --suite real`


@pytest.fixture(scope="module")
def cli_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """The shipped model, with the default output directory: ``evaluation-real`` in the working directory
    (never inside the installed package)."""
    working = tmp_path_factory.mktemp("real")
    before = sorted(p.name for p in PRETRAINED.iterdir())
    with contextlib.chdir(working):
        status = main(["evaluate", "--suite", "real", "--stride", str(STRIDE), "--fit-batches", "1"])
    assert sorted(p.name for p in PRETRAINED.iterdir()) == before
    return status, working / "evaluation-real"


def test_series_ship_with_statsmodels_and_are_long_enough() -> None:
    series = load_real_series()
    assert len(series) >= 8
    assert {name: len(s.values) for name, s in series.items()}["co2"] == 526  # weekly -> monthly, gaps filled
    for s in series.values():
        assert len(s.values) >= 110 + 2 * STRIDE and np.isfinite(s.values).all() and s.season in (1, 4, 12)


def test_mase_follows_hyndman_koehler() -> None:
    lookback = np.arange(100.0)[None]  # a ramp: the in-lookback naive one-step error is 1
    target = np.arange(100.0, 110.0)[None]
    naive = np.full((1, 10), 99.0)
    assert mase(naive, target, lookback, season=1) == pytest.approx(np.mean(np.arange(1, 11)))
    assert mase(naive, target, lookback, season=4) == pytest.approx(np.mean(np.arange(1, 11)) / 4)


def test_cli_writes_every_output(cli_report: tuple[int, Path]) -> None:
    status, directory = cli_report
    assert status == 0
    report = json.loads((directory / "evaluation.json").read_text())
    assert report["suite"] == "real" and len(report["series"]) >= 8
    for name, scores in report["results"].items():
        assert set(scores) == FORECASTERS
        assert report["series"][name]["windows"] >= 3
        for values in scores.values():
            assert {"mse", "mase", "mae", "worse_than_naive", "max_excursion", "non_finite"} <= set(values)
        assert scores["naive"]["worse_than_naive"] == 0.0
    aggregate = report["aggregate"]
    assert set(aggregate) == FORECASTERS and aggregate["seasonal_naive"]["gmean_relative_mse"] == pytest.approx(1.0)
    assert aggregate["ar_backtest"]["gmean_mse_vs_ar"] == pytest.approx(1.0)
    assert aggregate["naive"]["better_than_naive"] == 0.0 and aggregate["naive"]["worst_mse_vs_naive"] == 1.0
    markdown = (directory / "evaluation.md").read_text()
    assert "| sunspots |" in markdown and "Geometric mean" in markdown and "Robustness" in markdown
    assert (directory / "forecasts.png").read_bytes()[:4] == b"\x89PNG"


def test_model_is_scored_through_the_user_path() -> None:
    forecaster = load_forecaster()
    series = load_real_series()["sunspots"]
    windows = real_windows(series, forecaster.lookback, forecaster.horizon, stride=1)  # one rolling call
    linear_map = fit_linear_map(forecaster.lookback, forecaster.horizon, RealSuiteSettings(fit_batches=1))
    forecasts = real_forecasts(forecaster, series, windows, linear_map)
    assert set(forecasts) == FORECASTERS and all(f.shape == (len(windows.starts), 10) for f in forecasts.values())
    for row in (0, 57, len(windows.starts) - 1):
        start = windows.starts[row]
        expected = forecaster.forecast(series.values[: start + forecaster.lookback])  # the series up to the window
        raw = forecasts["model"][row] * windows.scale[row] + windows.center[row]
        # float32 inside the model: batches of different sizes round differently in the last bits
        np.testing.assert_allclose(raw, expected, rtol=0, atol=1e-5 * windows.scale[row, 0])
        alone = forecaster.forecast(series.values[start : start + forecaster.lookback], combine=False)
        raw = forecasts["model_alone"][row] * windows.scale[row] + windows.center[row]
        np.testing.assert_allclose(raw, alone, rtol=0, atol=1e-5 * windows.scale[row, 0])
        np.testing.assert_allclose(forecasts["naive"][row], windows.lookback[row, -1], atol=1e-6)
    strided = real_windows(series, forecaster.lookback, forecaster.horizon, stride=57)  # one call per window
    rows = real_forecasts(forecaster, series, strided, linear_map)
    for label in ("model", "model_alone"):
        np.testing.assert_allclose(rows[label], forecasts[label][::57], rtol=0, atol=1e-5)


@pytest.mark.parametrize("arguments", [["--suite", "real", "--stride", "0"], ["--suite", "drift"]])
def test_bad_options_are_one_line(arguments: list[str], capsys: Any) -> None:
    assert main(["evaluate", *arguments]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
