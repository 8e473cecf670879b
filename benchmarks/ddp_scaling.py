"""1 -> 2 process DDP scaling on CPU: the real trainer under ``accelerate launch``, gloo, one thread each.

Both runs train the seed model on (3,45) with the same per-process batch (the 2-process run has twice
the global batch) for the same number of steps. A run's throughput is the median of the trainer's
own samples/s records after the first (warm-up) one; the full mode alternates three pairs of runs and
takes medians. The ratio 2-process / 1-process is the scaling (ideal 2, target >= 1.6).

Usage: ``python benchmarks/ddp_scaling.py [--quick] [--seconds S] [--output PATH]`` (``--seconds`` is
ignored: the runs are sized by steps).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import format_ratio, parse_arguments, run_identity, sci, write_report
from rich.console import Console

from harmonic_forecast.testing import tiny_config, write_config

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_CONFIGS = {1: None, 2: ROOT / "launch" / "accelerate" / "cpu_2proc.yaml"}
TARGET_RATIO = 1.6


def _config(batch: int, steps: int, log_every: int) -> dict[str, Any]:
    """The seed model at the seed's size on (3,45), no evaluation or checkpoints inside the timed run."""
    return tiny_config(
        train={"batch_size": batch, "lr": 1e-3, "warmup_steps": 10, "log_every": log_every, "checkpoint_every": 10**6},
        eval={"every": 10**6, "batches": 1, "batch_size": 256},
        model={"kind": "seed_gru", "hidden": 140, "encoder_width": 100},
        stages=[{"components": [3, 45], "steps": steps}],
    )


def _run(processes: int, per_process_batch: int, steps: int, directory: Path) -> float:
    """Median samples/s of one training run with ``processes`` processes."""
    log_every = max(1, steps // 6)
    config = write_config(directory, _config(per_process_batch * processes, steps, log_every), f"ddp{processes}.toml")
    run = directory / f"run{processes}"
    train = ["-m", "harmonic_forecast", "train", "--config", str(config), "--output-dir", str(run)]
    launcher = LAUNCH_CONFIGS[processes]
    command = [sys.executable, *train]
    if launcher is not None:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launcher), *train]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run(command, check=True, capture_output=True, env=env, timeout=1200)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    rates = [record["samples_per_s"] for record in map(json.loads, lines) if record["kind"] == "train"]
    return statistics.median(rates[1:] or rates)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both trainings, print the scaling, write the JSON and return it."""
    description = "1 -> 2 process DDP scaling on CPU (gloo, one thread each); runs are sized by steps, not --seconds."
    args = parse_arguments(argv, description, 1.0, 1.0, "short runs")
    today, host, output = run_identity("ddp_scaling", args.output)
    per_process_batch, steps, repeats = (256, 30, 1) if args.quick else (1024, 120, 3)
    runs: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(repeats):  # alternate, so a slow stretch of a shared machine hits both
            for processes in (1, 2):
                runs[processes].append(_run(processes, per_process_batch, steps, Path(scratch)))
    rates = {processes: statistics.median(values) for processes, values in runs.items()}
    ratio = rates[2] / rates[1]
    console = Console(highlight=False, soft_wrap=True)
    console.print(
        f"DDP on CPU, {per_process_batch} signals per process, {steps} steps, median of {repeats}: "
        f"1 process {sci(rates[1])} samples/s, "
        f"2 processes {sci(rates[2])} samples/s = {format_ratio(ratio)} (efficiency {ratio / 2:.0%}); "
        f"target >= {TARGET_RATIO}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'}"
    )
    report = {
        "benchmark": "ddp_scaling",
        "date": today,
        "host": host,
        "per_process_batch": per_process_batch,
        "steps": steps,
        "samples_per_s": {"1": rates[1], "2": rates[2]},
        "runs": {"1": runs[1], "2": runs[2]},
        "ddp_2proc_vs_1proc": ratio,
        "peak_rss_mb_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    return write_report(report, output, console)


if __name__ == "__main__":
    main()
