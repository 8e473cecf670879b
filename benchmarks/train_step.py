"""End-to-end training throughput of the seed model on HarmonicStream against a seed-style loop, in the same run.

Both pipelines train the seed's final model (``SeedGRUForecaster(ModelConfig())``) with the
horizon-weighted MSE and AdamW (lr 1e-3) on band (3,45): data -> forward -> loss -> backward ->
step. The seed-style loop draws its batches from a map-style Dataset whose ``__getitem__`` makes
one signal with numpy, as the seed notebook does, through a shuffling DataLoader (no workers);
the stream pipeline iterates a HarmonicStream on the training device. Each case builds a fresh
model (``torch.manual_seed(0)``), warms up 2 steps (1 when the first already took half the time
budget, as the seed-style loop does at large batches), then times whole steps until ``--seconds``
have passed. "data %" is the time to draw the same number of batches alone over the timed steps'.

Usage: ``python benchmarks/train_step.py [--quick] [--seconds S] [--output PATH]``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from common import (
    Batch,
    SeedStyleSignals,
    forever,
    format_ratio,
    parse_arguments,
    run_identity,
    sci,
    synchronize,
    write_report,
)
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader

from harmonic_forecast import HarmonicStream, SignalSpec
from harmonic_forecast.cpu_allocator import keep_freed_memory
from harmonic_forecast.losses import weighted_mse
from harmonic_forecast.model import ModelConfig, SeedGRUForecaster
from harmonic_forecast.signals import band_label

LOOKBACK, HORIZON = 100, 10
PERIODS = (10, 100)
BAND = (3, 45)
LEARNING_RATE = 1e-3
WARMUP_STEPS = 2
BATCHES = (128, 1024, 8192)
QUICK_BATCHES = (128, 1024)
SEED_STYLE, STREAM = "seed-style", "stream"
TARGET_RATIO, TARGET_DATA_FRACTION = 2.0, 0.05


def _train_rate(batches: Iterator[Batch], device: torch.device, seconds: float) -> tuple[float, int, float]:
    """Train a fresh seed model on ``batches``: ``(samples/s, timed steps, timed seconds)``."""
    torch.manual_seed(0)
    model = SeedGRUForecaster(ModelConfig()).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)

    def step() -> int:
        lookback, target = (tensor.to(device) for tensor in next(batches))
        loss = weighted_mse(model(lookback), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)
        return len(lookback)

    start = time.perf_counter()
    for _ in range(WARMUP_STEPS):
        step()
        if time.perf_counter() - start >= seconds / 2:
            break
    samples, steps, start = 0, 0, time.perf_counter()
    while True:
        samples += step()
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return samples / elapsed, steps, elapsed


def _data_seconds(batches: Iterator[Batch], count: int, device: torch.device) -> float:
    """Seconds to draw ``count`` batches alone."""
    start = time.perf_counter()
    for _ in range(count):
        next(batches)
    synchronize(device)
    return time.perf_counter() - start


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table and verdicts, write the JSON and return it."""
    allocator_tuned = keep_freed_memory()
    args = parse_arguments(
        argv,
        "End-to-end training throughput: HarmonicStream vs a seed-style loop, same model and batch.",
        3.0,
        1.0,
        "1.0 s per case, batch sizes 128 and 1024 only",
    )
    today, host, output = run_identity("train_step", args.output)
    batch_sizes = QUICK_BATCHES if args.quick else BATCHES
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    spec = SignalSpec(lookback=LOOKBACK, horizon=HORIZON, components=BAND, periods=PERIODS, noise=0.0)

    np.random.seed(0)
    results: list[dict[str, Any]] = []
    ratios: dict[str, dict[str, float]] = {}
    for device in devices:
        for batch in batch_sizes:
            loader = DataLoader(SeedStyleSignals(BAND), batch_size=batch, shuffle=True, num_workers=0)
            seed_batches = forever(loader)
            seed_rate, steps, elapsed = _train_rate(seed_batches, device, args.seconds)
            seed_data = _data_seconds(seed_batches, steps, device)
            results.append(
                {
                    "pipeline": SEED_STYLE,
                    "device": device.type,
                    "batch": batch,
                    "samples_per_s": seed_rate,
                    "data_fraction": seed_data / elapsed,
                    "steps": steps,
                }
            )
            stream = HarmonicStream(spec, batch_size=batch, seed=0, device=device)
            rate, steps, elapsed = _train_rate(iter(stream), device, args.seconds)
            data = _data_seconds((stream.batch(index) for index in range(steps)), steps, device)
            results.append(
                {
                    "pipeline": STREAM,
                    "device": device.type,
                    "batch": batch,
                    "samples_per_s": rate,
                    "data_fraction": data / elapsed,
                    "steps": steps,
                }
            )
            ratios.setdefault(device.type, {})[str(batch)] = rate / seed_rate

    threads = torch.get_num_threads()
    table = Table(title=f"Training step on {band_label(BAND)} ({args.seconds:g} s per case, {threads} CPU threads)")
    for column in ("pipeline", "device", "batch", "samples/s", "data %", "× seed-style"):
        table.add_column(column, justify="left" if column in ("pipeline", "device") else "right")
    for row in results:
        ratio = ratios[row["device"]][str(row["batch"])] if row["pipeline"] == STREAM else 1.0
        table.add_row(
            row["pipeline"],
            row["device"],
            str(row["batch"]),
            sci(row["samples_per_s"]),
            _percent(row["data_fraction"]),
            format_ratio(ratio),
        )
    console = Console(highlight=False, soft_wrap=True)
    console.print(table)

    rows = {(row["pipeline"], row["device"], row["batch"]): row for row in results}
    for device in devices:
        for batch in batch_sizes:
            seed_row, stream_row = rows[SEED_STYLE, device.type, batch], rows[STREAM, device.type, batch]
            ratio = ratios[device.type][str(batch)]
            line = (
                f"batch {batch} {device.type}: stream {sci(stream_row['samples_per_s'])} samples/s = "
                f"{format_ratio(ratio)} "
                f"the seed-style loop ({sci(seed_row['samples_per_s'])}); "
                f"data {_percent(stream_row['data_fraction'])} of the step "
                f"(seed-style {_percent(seed_row['data_fraction'])})"
            )
            if device.type == "cpu":
                speed = "met" if ratio >= TARGET_RATIO else "NOT met"
                data = "met" if stream_row["data_fraction"] <= TARGET_DATA_FRACTION else "NOT met"
                line += (
                    f"; target >= {TARGET_RATIO:g}x: {speed}, "
                    f"data <= {_percent(TARGET_DATA_FRACTION)} of the step: {data}"
                )
            console.print(line)

    best = max(ratios["cpu"].values())
    console.print(
        f"train_vs_seed: best CPU ratio {format_ratio(best)} (the targets assume a 2-core CPU; "
        f"this run used {threads} threads)"
    )

    report: dict[str, Any] = {
        "benchmark": "train_step",
        "date": today,
        "host": host,
        "torch": torch.__version__,
        "threads": threads,
        "allocator_tuned": allocator_tuned,
        "results": results,
        "ratio": ratios["cpu"],
        "train_vs_seed": best,
    }
    if "cuda" in ratios:
        report["cuda_ratio"] = ratios["cuda"]
    return write_report(report, output, console)


if __name__ == "__main__":
    main()
