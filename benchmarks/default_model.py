"""Speed of the default model: ``predict`` windows/s against per-window AR, training samples/s against ``seed_gru``.

- predict: the shipped model (``load_forecaster()``, the default kind) through ``HarmonicForecaster.predict``
  on the same ``--windows`` windows of (3,45) at σ = 0.1 in raw units, against
  :func:`harmonic_forecast.baselines.backtest_autoregressive` (per-window AR, its order backtested inside
  the window: the classical method the model must beat on real series), each repeated until ``--seconds``.
- predict on noiseless (3,45) windows, where the sparse expert takes more EM updates outside training
  (``clean_fold_iterations``, ``clean_refine_iterations``), against the same model with them off.
- training: the trainer's own step (``benchmarks/train_step.py``'s :func:`train_rate`: fused AdamW,
  clipping, on the stream) at one batch size on a fresh default model with the shipped model's config
  and on the seed's final model (``SEED_MODEL``), same batch, same band (3,45).

Ratios are taken within the run, so they hold on a loaded machine where absolute rates do not.

Usage: ``python benchmarks/default_model.py [--quick] [--seconds S] [--output PATH]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from common import format_ratio, parse_arguments, run_identity, sci, write_report
from rich.console import Console
from rich.table import Table
from train_step import train_rate

from harmonic_forecast import HarmonicStream, SignalSpec
from harmonic_forecast.baselines import backtest_autoregressive
from harmonic_forecast.forecast import load_forecaster
from harmonic_forecast.models import SEED_MODEL

LOOKBACK, HORIZON = 100, 10
BAND = (3, 45)
TRAIN_BATCH, QUICK_TRAIN_BATCH = 512, 64
WINDOWS, QUICK_WINDOWS = 4096, 256
TARGET_PREDICT_RATE = 2000.0  # windows/s on two CPU cores
TARGET_TRAIN_RATIO = 2.0  # the default model's training samples/s over today's (the issue's target), not seed_gru's


def _rate(run: Callable[[], object], count: int, seconds: float) -> float:
    """Items per second of ``run`` (``count`` items per call), after one warm-up call, over at least ``seconds``."""
    run()
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        run()
        calls += 1
    return calls * count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both comparisons, print the table, write the JSON and return it."""
    args = parse_arguments(
        argv, "Default model: predict vs per-window AR, training vs seed_gru.", 5.0, 0.5, "0.5 s per case, small sizes"
    )
    today, host, output = run_identity("default_model", args.output)
    windows, batch = (QUICK_WINDOWS, QUICK_TRAIN_BATCH) if args.quick else (WINDOWS, TRAIN_BATCH)
    spec = SignalSpec(lookback=LOOKBACK, horizon=HORIZON, components=BAND, noise=0.1)
    lookback, _ = HarmonicStream(spec, windows, seed=1234, device="cpu", split="test").batch(0)
    raw = (lookback * 3.0 + 20.0).numpy()  # users' units

    forecaster = load_forecaster()
    kind = forecaster.model.config.kind
    predict = {
        kind: _rate(lambda: forecaster.predict(raw), windows, args.seconds),
        "ar_backtest": _rate(lambda: backtest_autoregressive(torch.from_numpy(raw), HORIZON), windows, args.seconds),
    }
    # noiseless windows take the sparse expert's extra EM updates (clean_*_iterations): their cost, same run
    clean = HarmonicStream(spec.replace(noise=0.0), windows, seed=1234, device="cpu", split="test").batch(0)[0]
    clean_raw = (clean * 3.0 + 20.0).numpy()
    model, noiseless = forecaster.model, {}
    for label, config in (
        ("clean_iterations_off", model.config.model_copy(update={"clean_noise_variance": 0.0})),
        (kind, model.config),
    ):
        model.config = config
        noiseless[label] = _rate(lambda: forecaster.predict(clean_raw), windows, args.seconds)
    stream = HarmonicStream(spec.replace(noise=0.0), batch_size=batch, seed=0, device="cpu")
    train = {
        name: train_rate(iter(stream), torch.device("cpu"), batch, args.seconds, model_config=config)[0]
        for name, config in (
            (kind, forecaster.model.config.model_copy(update={"input_scaling": "lookback"})),
            ("seed_gru", SEED_MODEL),
        )
    }

    threads = torch.get_num_threads()
    table = Table(title=f"Default model ({kind}) speed, {threads} CPU threads, {args.seconds:g} s per case")
    for column in ("measure", "default model", "baseline", "baseline rate", "ratio"):
        table.add_column(column, justify="left" if column in ("measure", "baseline") else "right")
    predict_ratio = predict[kind] / predict["ar_backtest"]
    train_ratio = train[kind] / train["seed_gru"]
    rows = (
        (f"predict windows/s ({windows})", predict[kind], "per-window AR", predict["ar_backtest"], predict_ratio),
        (
            f"predict windows/s, noiseless ({windows})",
            noiseless[kind],
            "clean iterations off",
            noiseless["clean_iterations_off"],
            noiseless[kind] / noiseless["clean_iterations_off"],
        ),
        (f"training samples/s (batch {batch})", train[kind], "seed_gru", train["seed_gru"], train_ratio),
    )
    for measure, rate, baseline, baseline_rate, ratio in rows:
        table.add_row(measure, sci(rate), baseline, sci(baseline_rate), format_ratio(ratio))
    console = Console(highlight=False, soft_wrap=True)
    console.print(table)
    verdict = "met" if predict[kind] >= TARGET_PREDICT_RATE else "NOT met"
    console.print(
        f"predict: {sci(predict[kind])} windows/s; target >= {sci(TARGET_PREDICT_RATE)} on 2 cores: {verdict}"
    )
    report = {
        "benchmark": "default_model",
        "date": today,
        "host": host,
        "torch": torch.__version__,
        "threads": threads,
        "model": kind,
        "predict_windows_per_s": predict,
        "predict_noiseless_windows_per_s": noiseless,
        "train_samples_per_s": train,
        "train_batch": batch,
        "predict_vs_ar": predict_ratio,
        "train_vs_seed_gru": train_ratio,
    }
    return write_report(report, output, console)


if __name__ == "__main__":
    main()
