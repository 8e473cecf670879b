"""Score a model against the classical baselines on fixed-seed test sets.

The sets of a suite (:mod:`harmonic_forecast.suites`: ``synthetic``, the training distribution, and
``shift``, one step outside it) are drawn from the stream's ``test`` split with a fixed seed, so every
model is scored on the same signals. Every forecaster sees the same windows; the fitted baselines
(linear map, AR order) are fitted on the ``train``/``validation`` splits of the same distribution,
never on the test signals. The ``real`` suite, on series that ship with statsmodels, is
:mod:`harmonic_forecast.real_suite`.

Beside the errors, every forecaster gets robustness columns (:func:`robustness`): the share of windows
where it is worse than naive, its largest excursion from the lookback's mean relative to the lookback's
largest deviation from it, and its count of windows with a non-finite forecast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from harmonic_forecast.baseline_fits import fit_baselines
from harmonic_forecast.baselines import naive
from harmonic_forecast.errors import ConfigError
from harmonic_forecast.forecast import HarmonicForecaster
from harmonic_forecast.scaling import lookback_spread
from harmonic_forecast.stream import HarmonicStream
from harmonic_forecast.suites import SUITES, synthetic_sets

TEST_SEED = 1234


@dataclass(frozen=True)
class EvaluationSettings:
    """Test-set sizes; the defaults are the full evaluation, CI uses smaller ones."""

    signals: int = 4096
    fit_batches: int = 16
    fit_batch_size: int = 4096
    seed: int = TEST_SEED


evaluation_sets = synthetic_sets  # the default suite's sets, by their historical name
ROBUSTNESS = ("worse_than_naive", "max_excursion", "non_finite")


def score(forecast: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
    """MSE per horizon step and averaged, and MAE."""
    error = forecast.double() - target.double()
    return {
        "mse": float(error.square().mean()),
        "mae": float(error.abs().mean()),
        "mse_per_step": [float(v) for v in error.square().mean(dim=0)],
    }


def robustness(
    forecast: torch.Tensor, lookback: torch.Tensor, target: torch.Tensor, naive_forecast: torch.Tensor
) -> dict[str, Any]:
    """The robustness columns of one forecaster on ``N`` windows (tensors ``[N, H]``, lookback ``[N, L]``).

    ``worse_than_naive``: share of windows whose MSE exceeds ``naive_forecast``'s (a non-finite forecast
    counts as worse); ``max_excursion``: the largest ``|forecast - mean(lookback)| / max|lookback - mean(lookback)|``
    over the finite forecasts (a constant lookback divides by 1; a forecast within the lookback's range
    stays under 2); ``non_finite``: the number of windows whose forecast holds a NaN or inf.
    """
    forecast, lookback, target, naive_forecast = (
        x.detach().double().cpu() for x in (forecast, lookback, target, naive_forecast)
    )
    window_mse = (forecast - target).square().mean(dim=1)
    naive_mse = (naive_forecast - target).square().mean(dim=1)
    center, spread = lookback_spread(lookback)
    excursion = ((forecast - center).abs() / torch.where(spread > 0, spread, 1.0))[forecast.isfinite()]
    return {
        "worse_than_naive": float((~(window_mse <= naive_mse)).double().mean()) if len(forecast) else 0.0,
        "max_excursion": float(excursion.max()) if excursion.numel() else 0.0,
        "non_finite": int((~forecast.isfinite()).any(dim=1).sum()),
    }


def evaluate(
    forecaster: HarmonicForecaster,
    settings: EvaluationSettings,
    others: dict[str, HarmonicForecaster] | None = None,
    suite: str = "synthetic",
) -> dict[str, dict[str, dict[str, Any]]]:
    """Test set -> forecaster -> scores (``mse``, ``mae``, ``mse_per_step``, ``vs_naive`` and :data:`ROBUSTNESS`).

    ``forecaster`` is scored as ``model``, each of ``others`` under its name, then the baselines, on the test
    sets of ``suite`` (a key of :data:`SUITES`; anything else raises :class:`ConfigError`).
    """
    if suite not in SUITES:
        raise ConfigError(f"suite: expected one of {', '.join(SUITES)}, got {suite!r}")
    results = {}
    models = {"model": forecaster} | (others or {})
    for name, spec in SUITES[suite](forecaster.lookback, forecaster.horizon).items():
        stream = HarmonicStream(spec, settings.signals, seed=settings.seed, split="test", device=forecaster.device)
        lookback, target = stream.batch(0)
        forecasters = {label: model.predict for label, model in models.items()} | fit_baselines(
            spec,
            seed=settings.seed,
            fit_batches=settings.fit_batches,
            batch_size=settings.fit_batch_size,
            device=forecaster.device,
        )
        forecasts = {label: method(lookback) for label, method in forecasters.items()}
        last_value = naive(lookback, spec.horizon)
        scores = {
            label: score(forecast, target) | robustness(forecast, lookback, target, last_value)
            for label, forecast in forecasts.items()
        }
        for values in scores.values():
            values["vs_naive"] = values["mse"] / scores["naive"]["mse"]
        results[name] = scores
    return results


def _names(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    return list(next(iter(results.values())))


def _robustness_cell(values: dict[str, Any]) -> str:
    return f"{values['worse_than_naive']:.0%} · {values['max_excursion']:.2g} · {values['non_finite']}"


ROBUSTNESS_LEGEND = (
    "Robustness per forecaster: share of windows worse than naive (per-window MSE) · largest "
    "|forecast − lookback mean| / max |lookback − its mean| · windows with a non-finite forecast"
)


def results_table(
    results: dict[str, dict[str, dict[str, Any]]], title: str, metric: str = "mse", row_label: str = "test set"
) -> Table:
    """Rich table: one row per test set, ``metric`` of every forecaster (the best in bold)."""
    table = Table(title=title)
    table.add_column(row_label)
    for name in _names(results):
        table.add_column(name, justify="right")
    for test_set, scores in results.items():
        best = min(scores, key=lambda label: scores[label][metric])
        cells = [f"[bold]{v[metric]:.2e}[/bold]" if k == best else f"{v[metric]:.2e}" for k, v in scores.items()]
        table.add_row(test_set, *cells)
    return table


def robustness_table(results: dict[str, dict[str, dict[str, Any]]], row_label: str = "test set") -> Table:
    """Rich table of the robustness columns: one row per test set, one cell per forecaster."""
    table = Table(title=ROBUSTNESS_LEGEND)
    table.add_column(row_label)
    for name in _names(results):
        table.add_column(name, justify="right")
    for test_set, scores in results.items():
        table.add_row(test_set, *(_robustness_cell(values) for values in scores.values()))
    return table


def metric_markdown(
    results: dict[str, dict[str, dict[str, Any]]], metric: str = "mse", row_label: str = "test set"
) -> list[str]:
    """Markdown lines: one row per test set, ``metric`` of every forecaster, the best of each row in bold."""
    names = _names(results)
    lines = [f"| {row_label} | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for test_set, scores in results.items():
        best = min(scores, key=lambda label: scores[label][metric])
        cells = [f"**{scores[k][metric]:.2e}**" if k == best else f"{scores[k][metric]:.2e}" for k in names]
        lines.append(f"| {test_set} | " + " | ".join(cells) + " |")
    return lines


def robustness_markdown(results: dict[str, dict[str, dict[str, Any]]], row_label: str = "test set") -> list[str]:
    """Markdown lines: the legend, then the robustness cells of every forecaster per test set."""
    names = _names(results)
    lines = [ROBUSTNESS_LEGEND, "", f"| {row_label} | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for test_set, scores in results.items():
        lines.append(f"| {test_set} | " + " | ".join(_robustness_cell(scores[k]) for k in names) + " |")
    return lines


def results_markdown(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """MSE per test set (the best of each row in bold), the model's MAE and ratio to naive, then robustness."""
    lines = metric_markdown(results)
    lines += ["", "| test set | model MAE | model MSE / naive MSE |", "|---|---|---|"]
    for test_set, scores in results.items():
        lines.append(f"| {test_set} | {scores['model']['mae']:.3e} | {scores['model']['vs_naive']:.3e} |")
    lines += ["", *robustness_markdown(results)]
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, dict[str, dict[str, Any]]], directory: Path, source: str) -> list[Path]:
    """``evaluation.json`` and ``evaluation.md`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = directory / "evaluation.json", directory / "evaluation.md"
    json_path.write_text(json.dumps({"model": source, "results": results}, indent=2) + "\n")
    markdown_path.write_text(f"Evaluation of `{source}` (MSE; lower is better)\n\n" + results_markdown(results))
    return [json_path, markdown_path]
