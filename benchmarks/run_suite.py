"""The benchmark suite behind ``make bench`` (``--quick``: ``make bench-quick``, run in CI).

Runs each benchmark as its own process (so its peak memory is its own), then writes
``benchmarks/results/<date>-<host>.json`` with the four headline ratios at the top level
(``generator_vs_seed``, ``train_vs_seed``, ``ddp_2proc_vs_1proc``, ``predict_vs_ar``) and every benchmark's full report,
plus the same summary as a markdown table beside it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import format_ratio, sci

from harmonic_forecast.errors import ConfigError
from harmonic_forecast.series_io import writable_directory

HERE = Path(__file__).resolve().parent
# benchmark -> (headline key, what it measures, the baseline it is compared with)
BENCHMARKS = {
    "generator": ("generator_vs_seed", "signals/s generated, (3,45), best batch", "seed-style Dataset + DataLoader"),
    "train_step": ("train_vs_seed", "training samples/s end to end, best batch", "seed-style loop, same model"),
    "ddp_scaling": ("ddp_2proc_vs_1proc", "training samples/s with 2 processes", "1 process, same batch"),
    "default_model": ("predict_vs_ar", "predict windows/s of the shipped model", "per-window AR, same windows"),
}


def _run(name: str, quick: bool, output: Path) -> tuple[dict[str, Any], float]:
    """Run one benchmark script; its JSON report and its peak resident memory in MB."""
    command = [sys.executable, str(HERE / f"{name}.py"), "--output", str(output), *(["--quick"] if quick else [])]
    process = subprocess.Popen(command, cwd=HERE.parent)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"benchmark {name} failed with exit status {process.returncode}")
    return json.loads(output.read_text()), usage.ru_maxrss / 1024


def markdown(summary: dict[str, Any]) -> str:
    """The suite's headline table."""
    lines = [
        f"Benchmarks on {summary['host']}, {summary['date']}{' (quick)' if summary['quick'] else ''}",
        "",
        "| benchmark | measures | against | ratio | peak memory |",
        "|---|---|---|---|---|",
    ]
    for name, (key, measures, baseline) in BENCHMARKS.items():
        report = summary["benchmarks"][name]
        lines.append(
            f"| {name} | {measures} | {baseline} | {format_ratio(summary[key])} | {report['peak_rss_mb']:.0f} MB |"
        )
    ddp = summary["benchmarks"]["ddp_scaling"]["samples_per_s"]
    lines += ["", f"DDP samples/s: 1 process {sci(ddp['1'])}, 2 processes {sci(ddp['2'])}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every benchmark and write the suite's JSON and markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (CI)")
    parser.add_argument("--output-dir", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    try:  # before the benchmarks run, not when their reports are written
        writable_directory(args.output_dir, "--output-dir")
    except ConfigError as error:
        parser.error(str(error))
    today, host = datetime.date.today().isoformat(), socket.gethostname()
    summary: dict[str, Any] = {"date": today, "host": host, "quick": args.quick, "benchmarks": {}}
    for name, (key, _, _) in BENCHMARKS.items():
        report, peak = _run(name, args.quick, args.output_dir / f"{name}-{today}-{host}.json")
        summary["benchmarks"][name] = {**report, "peak_rss_mb": peak}
        summary[key] = float(report[key])
    json_path, markdown_path = (args.output_dir / f"{today}-{host}.{suffix}" for suffix in ("json", "md"))
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    markdown_path.write_text(markdown(summary))
    print(markdown(summary))
    print(f"wrote {json_path} and {markdown_path}")
    return summary


if __name__ == "__main__":
    main()
