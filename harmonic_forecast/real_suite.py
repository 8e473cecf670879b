"""The ``real`` evaluation suite: a model and the baselines on the real series of :mod:`.real_series`.

Every window of ``lookback + horizon`` samples at a fixed ``stride`` (starts ``0, stride, ...``) of every
series is forecast. The model goes through the user path, ``HarmonicForecaster.forecast(series, rolling=True)``
in the series' raw units, one row per window (at a stride above 1, ``forecast`` of the series up to the
window's end), so it is combined with naive, per-window AR and drift by their errors on the series' earlier
windows (:mod:`harmonic_forecast.combination`), as a user's forecast of a series is; ``model_alone`` is
the model's forecast of each window alone (``combine=False``).
The baselines see the same lookbacks scaled as the model scales them (:mod:`harmonic_forecast.scaling`:
centred on their mean, divided by their standard deviation) and their forecasts are mapped back:
naive, seasonal naive with the series' seasonal period, per-window AR with its order chosen by a backtest
inside the lookback (:func:`~harmonic_forecast.baselines.backtest_autoregressive`), the drift method
(:func:`~harmonic_forecast.baselines.drift`) and the linear map fitted on the synthetic stream (components
(3,45), noise σ = 0.1).

Per series and forecaster:

- ``mse``: MSE of the windows scaled by their lookback (``(x - mean(lookback)) / std(lookback)``, a
  constant lookback scaled by 1), over windows and horizon steps; ``mae``, ``mse_per_step`` likewise.
- ``mase``: the mean absolute scaled error of Hyndman & Koehler (2006), "Another look at measures of forecast
  accuracy", Int. J. Forecasting 22(4): per window, the forecast's MAE over the horizon divided by the
  in-lookback MAE of the seasonal naive one-step forecast, ``mean_{t=m..L-1} |x_t - x_{t-m}|`` with ``m``
  the series' seasonal period (``m = 1``: the naive forecast); averaged over windows. A window whose
  denominator is 0 is divided by 1 instead (in the scaled units).
- the robustness columns of :func:`harmonic_forecast.evaluate.robustness`.

The aggregate per forecaster is the geometric mean over series of its MSE (and MASE) relative to seasonal
naive's (and of its MSE relative to per-window AR's), the share of series where it beats naive and its
worst MSE relative to naive's. The first is the convention of Chronos's zero-shot benchmark (Ansari et
al. 2024, "Chronos: Learning the Language of Time Series", TMLR).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harmonic_forecast.baselines import LinearMap, backtest_autoregressive, drift, naive, seasonal_naive
from harmonic_forecast.errors import require_int
from harmonic_forecast.evaluate import (
    TEST_SEED,
    metric_markdown,
    robustness,
    robustness_markdown,
    score,
)
from harmonic_forecast.forecast import HarmonicForecaster, series_windows
from harmonic_forecast.real_series import RealSeries, load_real_series
from harmonic_forecast.scaling import lookback_statistics, scale_windows
from harmonic_forecast.signals import SignalSpec
from harmonic_forecast.stream import HarmonicStream

LINEAR_MAP_SPEC = {"components": (3, 45), "noise": 0.1}
MIN_WINDOWS = 3


@dataclass(frozen=True)
class RealSuiteSettings:
    """Window stride (1: every window), and the synthetic batches that fit the linear map."""

    stride: int = 1
    fit_batches: int = 16
    fit_batch_size: int = 4096
    seed: int = TEST_SEED


@dataclass(frozen=True)
class RealWindows:
    """One series' windows scaled by their lookback, float64: lookback ``[N, L]``, target ``[N, H]``,
    the lookback's mean ``center`` and max |deviation| ``scale`` ``[N, 1]``, and each window's first index ``[N]``."""

    lookback: np.ndarray
    target: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    starts: np.ndarray


def real_windows(series: RealSeries, lookback: int, horizon: int, stride: int) -> RealWindows:
    """Every window of ``series`` at ``stride``, scaled by its lookback (float64)."""
    windows = series_windows(series.values, lookback + horizon)[::stride]
    values = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float64))
    scaled, target = (x.numpy() for x in scale_windows(values[:, :lookback], values[:, lookback:]))
    center, scale = (x.numpy() for x in lookback_statistics(values[:, :lookback]))
    scale = np.where(scale > 0, scale, 1.0)
    return RealWindows(
        scaled, target, center, scale, np.arange(0, len(series.values) - lookback - horizon + 1)[::stride]
    )


def mase(forecast: np.ndarray, target: np.ndarray, lookback: np.ndarray, season: int) -> float:
    """Mean over windows of MAE(forecast) / in-lookback MAE of the seasonal naive one-step forecast (module doc)."""
    denominator = np.abs(lookback[:, season:] - lookback[:, :-season]).mean(axis=1)
    denominator[denominator == 0] = 1.0
    return float((np.abs(forecast - target).mean(axis=1) / denominator).mean())


def fit_linear_map(lookback: int, horizon: int, settings: RealSuiteSettings) -> LinearMap:
    """The linear map fitted on ``fit_batches`` train batches of the synthetic stream (:data:`LINEAR_MAP_SPEC`)."""
    spec = SignalSpec(lookback=lookback, horizon=horizon, **LINEAR_MAP_SPEC)
    stream = HarmonicStream(spec, settings.fit_batch_size, settings.seed, split="train")
    return LinearMap.fit_batches(stream.batch(index) for index in range(settings.fit_batches))


def real_forecasts(
    forecaster: HarmonicForecaster, series: RealSeries, windows: RealWindows, linear_map: LinearMap
) -> dict[str, np.ndarray]:
    """Forecaster name -> scaled forecasts ``[N, H]`` float64 of ``windows`` of ``series``.

    The model through the user path: ``forecast(series, rolling=True)`` at stride 1, ``forecast`` of the series
    up to each window's end at a larger stride (the same rows, row for row, combined with naive, AR and drift); and
    ``model_alone``, the model's forecast of each window alone (``combine=False``).
    """
    horizon, length = forecaster.horizon, forecaster.lookback
    raw = {}
    for label, combine in (("model", True), ("model_alone", False)):
        if len(windows.starts) > 1 and windows.starts[1] == 1:  # stride 1: every window, one rolling call
            raw[label] = forecaster.forecast(series.values[:-horizon], rolling=True, combine=combine)
        else:  # the same rows, without forecasting the windows in between
            seen = [series.values[(0 if combine else start) : start + length] for start in windows.starts]
            raw[label] = np.stack([forecaster.forecast(values, combine=combine) for values in seen])
    lookback = torch.from_numpy(windows.lookback)
    baselines = {
        "naive": functools.partial(naive, horizon=horizon),
        "seasonal_naive": functools.partial(seasonal_naive, horizon=horizon, period=series.season),
        "ar_backtest": functools.partial(backtest_autoregressive, horizon=horizon),
        "drift": functools.partial(drift, horizon=horizon),
        "linear_map": linear_map,
    }
    forecasts = {label: (values - windows.center) / windows.scale for label, values in raw.items()}
    for name, method in baselines.items():
        forecasts[name] = method(lookback).double().numpy()
    return forecasts


Examples = dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]


def evaluate_real(
    forecaster: HarmonicForecaster, settings: RealSuiteSettings | None = None, examples: int = 3
) -> tuple[dict[str, dict[str, Any]], Examples]:
    """Score ``forecaster`` and the baselines on every real series; see the module docstring.

    Returns the report ``{"series": {name: {length, season, windows, description}}, "results": {name:
    {forecaster: scores}}, "aggregate": {forecaster: {"gmean_relative_mse", "gmean_relative_mase"}}}`` and,
    for the plot, per series ``examples`` evenly spaced windows in raw units: (lookback ``[n, L]``, target
    ``[n, H]``, {forecaster: forecast ``[n, H]``}), float64. Raises :class:`ConfigError` on a bad stride
    or without statsmodels.
    """
    settings = settings or RealSuiteSettings()
    stride = require_int("stride", settings.stride, minimum=1)
    examples = require_int("examples", examples, minimum=1)
    lookback, horizon = forecaster.lookback, forecaster.horizon
    linear_map = fit_linear_map(lookback, horizon, settings)
    info, results, shown = {}, {}, {}
    for name, series in load_real_series(lookback + horizon + MIN_WINDOWS - 1).items():
        windows = real_windows(series, lookback, horizon, stride)
        forecasts = real_forecasts(forecaster, series, windows, linear_map)
        target, scaled = torch.from_numpy(windows.target), torch.from_numpy(windows.lookback)
        last_value = torch.from_numpy(forecasts["naive"])
        results[name] = {
            label: score(torch.from_numpy(forecast), target)
            | {"mase": mase(forecast, windows.target, windows.lookback, series.season)}
            | robustness(torch.from_numpy(forecast), scaled, target, last_value)
            for label, forecast in forecasts.items()
        }
        info[name] = {
            "length": len(series.values),
            "season": series.season,
            "windows": len(windows.starts),
            "description": series.description,
        }
        pick = np.unique(np.linspace(0, len(windows.starts) - 1, examples).round().astype(int))
        center, scale = windows.center[pick], windows.scale[pick]
        shown[name] = (
            windows.lookback[pick] * scale + center,
            windows.target[pick] * scale + center,
            {label: forecast[pick] * scale + center for label, forecast in forecasts.items()},
        )
    return {"series": info, "results": results, "aggregate": aggregate(results)}, shown


def aggregate(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per forecaster, over series: the geometric mean of its MSE and MASE relative to seasonal naive's,
    of its MSE relative to per-window AR's (``gmean_mse_vs_ar``), the share of series where its MSE is below
    naive's (``better_than_naive``) and its largest MSE over naive's (``worst_mse_vs_naive``)."""
    names = list(next(iter(results.values())))
    summary = {}

    def gmean(ratios: list[float]) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.exp(np.mean(np.log(ratios))))

    for name in names:
        summary[name] = {}
        for metric in ("mse", "mase"):
            ratios = [scores[name][metric] / scores["seasonal_naive"][metric] for scores in results.values()]
            summary[name][f"gmean_relative_{metric}"] = gmean(ratios)
        summary[name]["gmean_mse_vs_ar"] = gmean([s[name]["mse"] / s["ar_backtest"]["mse"] for s in results.values()])
        vs_naive = [scores[name]["mse"] / scores["naive"]["mse"] for scores in results.values()]
        summary[name]["better_than_naive"] = float(np.mean([ratio < 1 for ratio in vs_naive]))
        summary[name]["worst_mse_vs_naive"] = float(np.max(vs_naive))
    return summary


def real_markdown(report: dict[str, dict[str, Any]], source: str) -> str:
    """The report in markdown: series, MSE and MASE per series, the aggregate, then robustness."""
    results = report["results"]
    lines = [f"Real-series evaluation of `{source}` (statsmodels data sets; lower is better)", ""]
    lines += ["| series | length | season | windows | description |", "|---|---|---|---|---|"]
    for name, info in report["series"].items():
        lines.append(f"| {name} | {info['length']} | {info['season']} | {info['windows']} | {info['description']} |")
    lines += ["", "MSE of the windows scaled by their lookback", "", *metric_markdown(results, "mse", "series")]
    lines += ["", "MASE (Hyndman & Koehler 2006)", "", *metric_markdown(results, "mase", "series")]
    names = list(report["aggregate"])
    lines += ["", "Geometric mean over series of MSE and MASE relative to seasonal naive (Chronos's convention)", ""]
    lines += ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for metric in ("mse", "mase"):
        values = [report["aggregate"][name][f"gmean_relative_{metric}"] for name in names]
        lines.append(f"| relative {metric.upper()} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    rows = (
        ("MSE / per-window AR (gmean)", "gmean_mse_vs_ar", "{:.3f}"),
        ("series better than naive", "better_than_naive", "{:.0%}"),
        ("worst MSE / naive", "worst_mse_vs_naive", "{:.2f}"),
    )
    for label, key, form in rows:
        lines.append(f"| {label} | " + " | ".join(form.format(report["aggregate"][name][key]) for name in names) + " |")
    lines += ["", *robustness_markdown(results, "series")]
    return "\n".join(lines) + "\n"


def write_real(report: dict[str, dict[str, Any]], directory: Path, source: str) -> list[Path]:
    """``evaluation.json`` and ``evaluation.md`` of the real suite in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = directory / "evaluation.json", directory / "evaluation.md"
    json_path.write_text(json.dumps({"model": source, "suite": "real"} | report, indent=2, allow_nan=True) + "\n")
    markdown_path.write_text(real_markdown(report, source))
    return [json_path, markdown_path]
