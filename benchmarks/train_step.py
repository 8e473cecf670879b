"""End-to-end training throughput of the seed model on HarmonicStream against a seed-style loop, in the same run.

Both pipelines run the trainer's own step (:func:`harmonic_forecast.trainer.train_step` on the
objective, optimizer and compiled module the trainer builds: horizon-weighted MSE, fused AdamW at
lr 1e-3, gradient clipping) on the seed's final model (``SEED_MODEL``) on band (3,45).
The seed-style loop draws its batches from a map-style Dataset whose ``__getitem__`` makes
one signal with numpy, as the seed notebook does, through a shuffling DataLoader (no workers);
the stream pipeline iterates a HarmonicStream on the training device. On a CUDA device a third
pipeline, "stream compiled", runs the same step with ``train.compile = true`` (CUDA graphs; bf16
autocast over fp32 weights in every CUDA case, as the trainer does); its ratio to the eager stream
pipeline and its MFU are reported. Each case builds a fresh model (``torch.manual_seed(0)``),
warms up 2 steps (1 when the first already took half the time budget, as the seed-style loop does at
large batches; 3 for the compiled step: compilation, CUDA-graph warm-up and recording), then runs
whole steps until ``--seconds`` have passed and waits for the device once at the end (no host sync
per step). "data %" is the time to draw the same number of batches alone over the timed steps'.

Usage: ``python benchmarks/train_step.py [--quick] [--seconds S] [--output PATH]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
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
from harmonic_forecast.config import RunConfig, parse_run_config
from harmonic_forecast.cpu_allocator import keep_freed_memory
from harmonic_forecast.hardware import peak_flops
from harmonic_forecast.losses import loss_function
from harmonic_forecast.models import SEED_MODEL, ModelConfig, build_model, flops_per_sample
from harmonic_forecast.signals import band_label
from harmonic_forecast.testing import tiny_config
from harmonic_forecast.trainer import (
    TrainingObjective,
    build_accelerator,
    build_optimizer,
    compile_objective,
    fit_closed_form,
    train_step,
)

LOOKBACK, HORIZON = 100, 10
PERIODS = (10, 100)
BAND = (3, 45)
LEARNING_RATE = 1e-3
WARMUP_STEPS = 2
COMPILED_WARMUP_STEPS = 3
BATCHES = (128, 1024, 8192)
QUICK_BATCHES = (1024,)
SEED_STYLE, STREAM, COMPILED = "seed-style", "stream", "stream compiled"
TARGET_RATIO, TARGET_DATA_FRACTION = 2.0, 0.05
TARGET_CUDA_RATE = 1e6  # samples/s of the compiled step on one H200


def _accelerator(config: RunConfig) -> Accelerator:
    """The trainer's Accelerator for ``config``'s device (Accelerate keeps one state per process: reset it)."""
    AcceleratorState._reset_state(reset_partial_state=True)
    return build_accelerator(config)


def _trainer_step(
    device: torch.device, batch: int, compiled: bool, model_config: ModelConfig = SEED_MODEL
) -> tuple[Callable[[Batch], int], Accelerator]:
    """The trainer's own step (:func:`~harmonic_forecast.trainer.train_step`) on a fresh model (the seed's by default).

    The run config is the trainer's (``train.*`` defaults: fused AdamW, gradient clipping 1.0, bf16
    autocast on a GPU) with ``model_config``, ``batch`` and lr 1e-3; ``compiled`` sets ``train.compile``.
    A model with closed-form parts is fitted first, as the trainer does (on clean windows of the band).
    """
    model_table = {key: value for key, value in model_config.model_dump().items() if key not in ("lookback", "horizon")}
    config = parse_run_config(
        tiny_config(
            train={"batch_size": batch, "lr": LEARNING_RATE, "device": device.type, "compile": compiled},
            model=model_table,
            stages=[{"components": list(BAND), "steps": 1}],
        )
    )
    accelerator = _accelerator(config)
    torch.manual_seed(0)
    model = build_model(config.model)
    fit_closed_form(model, config)
    optimizer = build_optimizer(model, config)
    objective, optimizer = accelerator.prepare(TrainingObjective(model, loss_function(config.train.loss)), optimizer)
    step_objective = compile_objective(objective, config, accelerator)

    def step(batch: Batch) -> int:
        lookback, target = (tensor.to(accelerator.device) for tensor in batch)
        train_step(
            accelerator, objective, step_objective, optimizer, [(lookback, target)], config.train.grad_clip, _keep
        )
        return len(lookback)

    return step, accelerator


def _keep(loss: torch.Tensor) -> None:
    """The benchmark reads no loss (reading one would synchronise the device)."""


def train_rate(
    batches: Iterator[Batch],
    device: torch.device,
    batch: int,
    seconds: float,
    compiled: bool = False,
    model_config: ModelConfig = SEED_MODEL,
) -> tuple[float, int, float]:
    """Train a fresh model on ``batches`` with the trainer's step: ``(samples/s, timed steps, timed seconds)``."""
    step, accelerator = _trainer_step(device, batch, compiled, model_config)
    start = time.perf_counter()
    for _ in range(COMPILED_WARMUP_STEPS if compiled else WARMUP_STEPS):
        step(next(batches))
        synchronize(device)
        if not compiled and time.perf_counter() - start >= seconds / 2:
            break
    samples, steps, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        samples += step(next(batches))
        steps += 1
    synchronize(device)
    elapsed = time.perf_counter() - start
    accelerator.free_memory()
    return samples / elapsed, steps, elapsed


def _data_seconds(batches: Iterator[Batch], count: int, device: torch.device) -> float:
    """Seconds to draw ``count`` batches alone."""
    start = time.perf_counter()
    for _ in range(count):
        next(batches)
    synchronize(device)
    return time.perf_counter() - start


def _row(pipeline: str, device: torch.device, batch: int, rate: float, steps: int, data: float) -> dict[str, Any]:
    """One result: throughput, the data's share of the step and, on a GPU of known peak, the MFU."""
    peak = peak_flops(device, bf16=pipeline == COMPILED)
    mfu = rate * flops_per_sample(SEED_MODEL) / peak if peak else None
    return {
        "pipeline": pipeline,
        "device": device.type,
        "batch": batch,
        "samples_per_s": rate,
        "data_fraction": data,
        "steps": steps,
        "mfu": mfu,
    }


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
        "1.0 s per case, batch size 1024 only",
    )
    today, host, output = run_identity("train_step", args.output)
    batch_sizes = QUICK_BATCHES if args.quick else BATCHES
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    spec = SignalSpec(lookback=LOOKBACK, horizon=HORIZON, components=BAND, periods=PERIODS, noise=0.0)

    np.random.seed(0)
    results: list[dict[str, Any]] = []
    for device in devices:
        for batch in batch_sizes:
            loader = DataLoader(SeedStyleSignals(BAND), batch_size=batch, shuffle=True, num_workers=0)
            seed_batches = forever(loader)
            rate, steps, elapsed = train_rate(seed_batches, device, batch, args.seconds)
            data = _data_seconds(seed_batches, steps, device)
            results.append(_row(SEED_STYLE, device, batch, rate, steps, data / elapsed))
            stream = HarmonicStream(spec, batch_size=batch, seed=0, device=device)
            for pipeline in (STREAM, COMPILED) if device.type == "cuda" else (STREAM,):
                rate, steps, elapsed = train_rate(
                    iter(stream), device, batch, args.seconds, compiled=pipeline == COMPILED
                )
                data = _data_seconds((stream.batch(index) for index in range(steps)), steps, device)
                results.append(_row(pipeline, device, batch, rate, steps, data / elapsed))

    rows = {(row["pipeline"], row["device"], row["batch"]): row for row in results}

    def ratio(pipeline: str, baseline: str, device: str, batch: int) -> float:
        return rows[pipeline, device, batch]["samples_per_s"] / rows[baseline, device, batch]["samples_per_s"]

    ratios = {
        device.type: {str(batch): ratio(STREAM, SEED_STYLE, device.type, batch) for batch in batch_sizes}
        for device in devices
    }
    threads = torch.get_num_threads()
    table = Table(title=f"Training step on {band_label(BAND)} ({args.seconds:g} s per case, {threads} CPU threads)")
    for column in ("pipeline", "device", "batch", "samples/s", "data %", "× seed-style", "MFU"):
        table.add_column(column, justify="left" if column in ("pipeline", "device") else "right")
    for row in results:
        table.add_row(
            row["pipeline"],
            row["device"],
            str(row["batch"]),
            sci(row["samples_per_s"]),
            _percent(row["data_fraction"]),
            format_ratio(ratio(row["pipeline"], SEED_STYLE, row["device"], row["batch"])),
            "-" if row["mfu"] is None else _percent(row["mfu"]),
        )
    console = Console(highlight=False, soft_wrap=True)
    console.print(table)

    for device in devices:
        for batch in batch_sizes:
            seed_row, stream_row = rows[SEED_STYLE, device.type, batch], rows[STREAM, device.type, batch]
            speedup = ratios[device.type][str(batch)]
            line = (
                f"batch {batch} {device.type}: stream {sci(stream_row['samples_per_s'])} samples/s = "
                f"{format_ratio(speedup)} "
                f"the seed-style loop ({sci(seed_row['samples_per_s'])}); "
                f"data {_percent(stream_row['data_fraction'])} of the step "
                f"(seed-style {_percent(seed_row['data_fraction'])})"
            )
            if device.type == "cpu":
                speed = "met" if speedup >= TARGET_RATIO else "NOT met"
                data = "met" if stream_row["data_fraction"] <= TARGET_DATA_FRACTION else "NOT met"
                line += (
                    f"; target >= {TARGET_RATIO:g}x: {speed}, "
                    f"data <= {_percent(TARGET_DATA_FRACTION)} of the step: {data}"
                )
            else:
                compiled = rows[COMPILED, device.type, batch]["samples_per_s"]
                speedup = ratio(COMPILED, STREAM, device.type, batch)
                line += f"; compiled {sci(compiled)} samples/s = {format_ratio(speedup)} eager"
            console.print(line)

    best = max(ratios["cpu"].values())
    console.print(
        f"train_vs_seed: best CPU ratio {format_ratio(best)} (the targets assume a 2-core CPU; "
        f"this run used {threads} threads)"
    )
    if "cuda" in ratios:
        fastest = max(rows[COMPILED, "cuda", batch]["samples_per_s"] for batch in batch_sizes)
        verdict = "met" if fastest >= TARGET_CUDA_RATE else "NOT met"
        console.print(f"cuda: best compiled {sci(fastest)} samples/s; target >= {sci(TARGET_CUDA_RATE)}: {verdict}")

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
        report["cuda_compiled_vs_eager"] = {str(b): ratio(COMPILED, STREAM, "cuda", b) for b in batch_sizes}
        report["cuda_compiled_samples_per_s"] = fastest
    return write_report(report, output, console)


if __name__ == "__main__":
    main()
