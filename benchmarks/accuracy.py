"""Forecast accuracy under a fixed training budget: the default model and the seed's, against the baselines.

Both models are trained by the real trainer on the same curriculum (``--config``, each stage's budget
scaled so the whole run sees ``--samples`` signals), then scored on the fixed-seed test sets of
``harmonic-forecast evaluate`` (four bands clean and at σ = 0.1, and (3,45) at σ = 0.03 and 0.3) next
to the classical baselines, each fitted at its test set's own noise level. The report gives, per test
set, each model's MSE, the best linear map's (``linear_map`` or ``period_dictionary``) and the ratio;
samples and wall time of each training run are printed and saved.

    python benchmarks/accuracy.py                      # the CPU curriculum at full budget (~30 min)
    python benchmarks/accuracy.py --samples 960000     # half the budget (~15 min)
    python benchmarks/accuracy.py --quick              # seconds: checks the pipeline (CI)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from common import run_identity, sci, write_report
from rich.console import Console
from rich.table import Table

from harmonic_forecast.config import RunConfig, load_run_config
from harmonic_forecast.cpu_allocator import keep_freed_memory
from harmonic_forecast.evaluate import EvaluationSettings, evaluate
from harmonic_forecast.forecast import load_forecaster
from harmonic_forecast.models import SEED_MODEL
from harmonic_forecast.train import train

ROOT = Path(__file__).resolve().parents[1]
LINEAR = ("linear_map", "period_dictionary")
QUICK_OVERRIDES = ["train.batch_size=48", "train.log_every=10", "eval.every=1000", "eval.batch_size=96"]


def with_budget(config: RunConfig, samples: int) -> RunConfig:
    """``config`` with every stage's steps scaled so the run trains on about ``samples`` signals."""
    scale = samples / (config.total_steps * config.train.batch_size)
    stages = tuple(
        dataclasses.replace(stage, steps=max(1, math.ceil(stage.steps * scale)), min_steps=0) for stage in config.stages
    )
    return config.model_copy(update={"stages": stages})


def train_model(config: RunConfig, directory: Path, console: Console) -> dict[str, Any]:
    """Train ``config`` into ``directory``; samples seen and wall time."""
    start = time.perf_counter()
    result = train(config, directory)
    seconds = time.perf_counter() - start
    samples = result.step * config.train.batch_size
    console.print(f"{config.model.kind}: {result.step} steps, {samples:,} samples in {seconds:.0f} s")
    return {"steps": result.step, "samples": samples, "seconds": seconds, "samples_per_s": samples / seconds}


def summary_table(results: dict[str, dict[str, dict[str, Any]]], models: list[str]) -> tuple[Table, dict]:
    """Per test set: each model's MSE, the best linear map's, and the ratios (< 1: the model wins)."""
    table = Table(title="Test MSE after the same training budget (ratio < 1: better than every linear map)")
    table.add_column("test set")
    for name in models:
        table.add_column(name, justify="right")
    table.add_column("best linear", justify="right")
    table.add_column("ar", justify="right")
    for name in models:
        table.add_column(f"{name} / linear", justify="right")
    rows = {}
    for test_set, scores in results.items():
        linear = min(scores[label]["mse"] for label in LINEAR)
        ratios = {name: scores[name]["mse"] / linear for name in models}
        rows[test_set] = {"best_linear": linear, "ar": scores["ar"]["mse"]} | {
            name: {"mse": scores[name]["mse"], "vs_best_linear": ratios[name]} for name in models
        }
        cells = [sci(scores[name]["mse"]) for name in models] + [sci(linear), sci(scores["ar"]["mse"])]
        table.add_row(test_set, *cells, *(f"{ratios[name]:.3g}" for name in models))
    return table, rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "forecast_cpu.toml")
    parser.add_argument("--samples", type=int, default=None, help="training signals per model (default: the config's)")
    parser.add_argument("--signals", type=int, default=None, help="signals per test set (default 4096, quick 256)")
    parser.add_argument("--quick", action="store_true", help="a tiny budget and small test sets (checks the pipeline)")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    for option in ("samples", "signals"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            parser.error(f"--{option}: must be >= 1, got {getattr(args, option)}")
    keep_freed_memory()
    console = Console(width=160)
    today, host, output = run_identity("accuracy", args.output)

    config = load_run_config(args.config, QUICK_OVERRIDES if args.quick else [])
    samples = 960 if args.quick else args.samples or config.total_steps * config.train.batch_size
    if args.quick:
        settings = EvaluationSettings(signals=args.signals or 256, fit_batches=1, fit_batch_size=1024)
    else:
        settings = EvaluationSettings(signals=args.signals or 4096)
    runs = {"default": with_budget(config, samples)}
    runs["seed_gru"] = runs["default"].model_copy(update={"model": SEED_MODEL})
    training, forecasters = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, run in runs.items():
            training[name] = train_model(run, Path(scratch) / name, console)
            forecasters[name] = load_forecaster(Path(scratch) / name / "model")
    results = evaluate(forecasters["default"], settings, others={"seed_gru": forecasters["seed_gru"]})
    results = {
        test_set: {("default" if k == "model" else k): v for k, v in s.items()} for test_set, s in results.items()
    }
    table, rows = summary_table(results, list(runs))
    console.print(table)
    report = {
        "benchmark": "accuracy",
        "date": today,
        "host": host,
        "config": str(args.config),
        "model": config.model.model_dump(),
        "quick": args.quick,
        "test_signals": settings.signals,
        "training": training,
        "summary": rows,
        "results": results,
    }
    return write_report(report, output, console)


if __name__ == "__main__":
    main()
