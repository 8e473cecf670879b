"""Score a model against the classical baselines on fixed-seed test sets.

Test sets: bands (3,10), (3,20), (3,45), (40,46), each clean and with noise σ = 0.1, plus (3,45) at
σ = 0.03 and 0.3 (one model has to serve every noise level), drawn from the
stream's ``test`` split with a fixed seed, so every model is scored on the same signals. Every
forecaster sees the same windows; the fitted baselines (linear map, AR order) are fitted on the
``train``/``validation`` splits of the same distribution, never on the test signals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from harmonic_forecast.baselines import fit_baselines
from harmonic_forecast.forecast import HarmonicForecaster
from harmonic_forecast.signals import SignalSpec, set_label
from harmonic_forecast.stream import HarmonicStream

TEST_BANDS = ((3, 10), (3, 20), (3, 45), (40, 46))
NOISE_LEVELS = (0.0, 0.1)
NOISE_SWEEP = ((3, 45), (0.03, 0.3))  # further noise levels, on the widest band
TEST_SEED = 1234


@dataclass(frozen=True)
class EvaluationSettings:
    """Test-set sizes; the defaults are the full evaluation, CI uses smaller ones."""

    signals: int = 4096
    fit_batches: int = 16
    fit_batch_size: int = 4096
    seed: int = TEST_SEED


def evaluation_sets(lookback: int, horizon: int) -> dict[str, SignalSpec]:
    """Name -> spec of every test set, e.g. ``"(3,45) σ=0.1"``."""
    bands = [(band, noise) for band in TEST_BANDS for noise in NOISE_LEVELS]
    bands += [(NOISE_SWEEP[0], noise) for noise in NOISE_SWEEP[1]]
    return {
        set_label(band, noise): SignalSpec(lookback=lookback, horizon=horizon, components=band, noise=noise)
        for band, noise in bands
    }


def score(forecast: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
    """MSE per horizon step and averaged, and MAE."""
    error = forecast.double() - target.double()
    return {
        "mse": float(error.square().mean()),
        "mae": float(error.abs().mean()),
        "mse_per_step": [float(v) for v in error.square().mean(dim=0)],
    }


def evaluate(
    forecaster: HarmonicForecaster,
    settings: EvaluationSettings,
    others: dict[str, HarmonicForecaster] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Test set -> forecaster -> scores (``mse``, ``mae``, ``mse_per_step``, ``vs_naive``).

    ``forecaster`` is scored as ``model``, each of ``others`` under its name, then the baselines.
    """
    results = {}
    models = {"model": forecaster} | (others or {})
    for name, spec in evaluation_sets(forecaster.lookback, forecaster.horizon).items():
        stream = HarmonicStream(spec, settings.signals, seed=settings.seed, split="test", device=forecaster.device)
        lookback, target = stream.batch(0)
        forecasters = {label: model.predict for label, model in models.items()} | fit_baselines(
            spec,
            seed=settings.seed,
            fit_batches=settings.fit_batches,
            batch_size=settings.fit_batch_size,
            device=forecaster.device,
        )
        scores = {label: score(method(lookback), target) for label, method in forecasters.items()}
        for values in scores.values():
            values["vs_naive"] = values["mse"] / scores["naive"]["mse"]
        results[name] = scores
    return results


def _names(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    return list(next(iter(results.values())))


def results_table(results: dict[str, dict[str, dict[str, Any]]], title: str) -> Table:
    """Rich table: one row per test set, MSE of every forecaster (the best in bold)."""
    table = Table(title=title)
    table.add_column("test set")
    for name in _names(results):
        table.add_column(name, justify="right")
    for test_set, scores in results.items():
        best = min(scores, key=lambda label: scores[label]["mse"])
        cells = [f"[bold]{v['mse']:.2e}[/bold]" if k == best else f"{v['mse']:.2e}" for k, v in scores.items()]
        table.add_row(test_set, *cells)
    return table


def results_markdown(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The same table in markdown (MSE; the best of each row in bold), then the model's MAE and ratio to naive."""
    names = _names(results)
    lines = ["| test set | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for test_set, scores in results.items():
        best = min(scores, key=lambda label: scores[label]["mse"])
        cells = [f"**{scores[k]['mse']:.2e}**" if k == best else f"{scores[k]['mse']:.2e}" for k in names]
        lines.append(f"| {test_set} | " + " | ".join(cells) + " |")
    lines += ["", "| test set | model MAE | model MSE / naive MSE |", "|---|---|---|"]
    for test_set, scores in results.items():
        lines.append(f"| {test_set} | {scores['model']['mae']:.3e} | {scores['model']['vs_naive']:.3e} |")
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, dict[str, dict[str, Any]]], directory: Path, source: str) -> list[Path]:
    """``evaluation.json`` and ``evaluation.md`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = directory / "evaluation.json", directory / "evaluation.md"
    json_path.write_text(json.dumps({"model": source, "results": results}, indent=2) + "\n")
    markdown_path.write_text(f"Evaluation of `{source}` (MSE; lower is better)\n\n" + results_markdown(results))
    return [json_path, markdown_path]
