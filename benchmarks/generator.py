"""Signal-generation throughput of HarmonicStream against a seed-style pipeline, measured in the same run.

The baseline is the public notebook's way of making data: a map-style Dataset whose ``__getitem__``
draws one signal with numpy, batched by a shuffling DataLoader (batch 128, no workers). Each case
runs one warm-up batch, then whole batches until ``--seconds`` have passed; throughput is signals
per second, and the ratio is against the baseline of the same component band. The ``mixture`` case
draws (3,45) signals from a mixture of every family (pure tones, level/trend/level shift/linear drift, random
walk on long continuous periods, peak drift, Laplace, Student-t and AR(1) noise) and is compared
with the (3,45) baseline; its target is the same 100x.

Usage: ``python benchmarks/generator.py [--quick] [--seconds S] [--output PATH]``.
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
from harmonic_forecast.signals import band_label

LOOKBACK, HORIZON = 100, 10
PERIODS = (10, 100)
BANDS = ((3, 10), (3, 45))
SEED_BATCH = 128
BATCHES = (1024, 4096, 16384, 65536)
QUICK_BATCHES = (1024, 16384)
CUDA_EXTRA_BATCH = 262144
TARGET_BAND, TARGET_RATIO = (3, 45), 100.0
MIXTURE_LABEL = "mixture (3,45)"
MIXTURE_FAMILIES = (
    {"weight": 3},
    {"weight": 1, "components": (1, 2), "periods": (2, 11)},
    {"weight": 1, "level": (-2.0, 2.0), "trend": (-0.02, 0.02), "level_shift": (-2.0, 2.0), "drift": "linear"},
    {"weight": 1, "random_walk": 0.02, "periods": (100.0, 1000.0), "integer_periods": False},
    {"weight": 1, "drift": True, "noise": 0.05, "noise_kind": "laplace"},
    {"weight": 1, "noise": 0.05, "noise_kind": "student_t", "noise_df": 3.0},
    {"weight": 1, "noise": 0.1, "noise_kind": "ar1", "noise_phi": (0.0, 0.9)},
)


def _specs() -> list[tuple[str, SignalSpec, str]]:
    """(label, spec, label of the baseline it is compared with) for every case."""
    specs = [
        (band_label(b), SignalSpec(lookback=LOOKBACK, horizon=HORIZON, components=b, periods=PERIODS), band_label(b))
        for b in BANDS
    ]
    mixture = SignalSpec(
        lookback=LOOKBACK, horizon=HORIZON, components=TARGET_BAND, periods=PERIODS, families=list(MIXTURE_FAMILIES)
    )
    return [*specs, (MIXTURE_LABEL, mixture, band_label(TARGET_BAND))]


def _throughput(batches: Iterator[Batch], seconds: float, device: torch.device) -> float:
    """Signals per second over whole batches after one warm-up batch, for at least ``seconds``."""
    next(batches)
    synchronize(device)
    signals, start = 0, time.perf_counter()
    while True:
        signals += len(next(batches)[0])
        synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return signals / elapsed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table and verdict, write the JSON and return it."""
    allocator_tuned = keep_freed_memory()
    args = parse_arguments(
        argv,
        "Signal-generation throughput: HarmonicStream vs a seed-style pipeline.",
        2.0,
        0.5,
        "0.5 s per case, batch sizes 1024 and 16384 only",
    )
    today, host, output = run_identity("generator", args.output)
    batch_sizes = QUICK_BATCHES if args.quick else BATCHES
    cpu = torch.device("cpu")
    cases = [(cpu, batch) for batch in batch_sizes]
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        cases += [(cuda, batch) for batch in batch_sizes]
        if not args.quick:
            cases.append((cuda, CUDA_EXTRA_BATCH))

    np.random.seed(0)
    baseline: dict[str, float] = {}
    for components in BANDS:
        loader = DataLoader(SeedStyleSignals(components), batch_size=SEED_BATCH, shuffle=True, num_workers=0)
        baseline[band_label(components)] = _throughput(forever(loader), args.seconds, cpu)

    results: list[dict[str, Any]] = []
    for device, batch in cases:
        for band, spec, baseline_band in _specs():
            stream = HarmonicStream(spec, batch_size=batch, seed=0, device=device)
            rate = _throughput(iter(stream), args.seconds, device)
            results.append(
                {
                    "device": device.type,
                    "band": band,
                    "batch": batch,
                    "signals_per_s": rate,
                    "ratio_vs_seed": rate / baseline[baseline_band],
                }
            )

    table = Table(title=f"Signal generation ({args.seconds:g} s per case, {torch.get_num_threads()} CPU threads)")
    for column in ("device", "band", "batch", "signals/s", "× seed-style"):
        table.add_column(column, justify="left" if column in ("device", "band") else "right")
    for band, rate in baseline.items():
        table.add_row("cpu (seed-style)", band, str(SEED_BATCH), sci(rate), "1x")
    for row in sorted(results, key=lambda r: (r["device"], r["band"], r["batch"])):
        table.add_row(
            row["device"], row["band"], str(row["batch"]), sci(row["signals_per_s"]), format_ratio(row["ratio_vs_seed"])
        )
    console = Console(highlight=False, soft_wrap=True)
    console.print(table)

    best_ratio: dict[str, float] = {}
    for band, _, baseline_band in _specs():
        best = max((r for r in results if r["device"] == "cpu" and r["band"] == band), key=lambda r: r["signals_per_s"])
        best_ratio[band] = best["ratio_vs_seed"]
        console.print(
            f"{band} cpu: best {sci(best['signals_per_s'])} signals/s at batch {best['batch']} = "
            f"{format_ratio(best['ratio_vs_seed'])} the seed-style pipeline ({sci(baseline[baseline_band])} signals/s)"
        )
    target = best_ratio[band_label(TARGET_BAND)]
    for label, ratio in ((band_label(TARGET_BAND), target), (MIXTURE_LABEL, best_ratio[MIXTURE_LABEL])):
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        console.print(
            f"target: {label} on CPU >= {TARGET_RATIO:.0f}x the seed-style pipeline: {verdict} "
            f"({format_ratio(ratio)} with {torch.get_num_threads()} threads; the target assumes a 2-core CPU)"
        )

    report: dict[str, Any] = {
        "benchmark": "generator",
        "date": today,
        "host": host,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "allocator_tuned": allocator_tuned,
        "baseline": baseline,
        "results": results,
        "best_ratio": best_ratio,
        "generator_vs_seed": target,
        "mixture_vs_seed": best_ratio[MIXTURE_LABEL],
    }
    return write_report(report, output, console)


if __name__ == "__main__":
    main()
