"""Pieces the benchmark scripts share: timing helpers, number formats, and the seed-style pipeline
(re-exported from :mod:`harmonic_forecast.testing`, where the tests' oracle lives too)."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from harmonic_forecast.errors import ConfigError
from harmonic_forecast.series_io import writable_directory
from harmonic_forecast.testing import SeedStyleSignals

Batch = tuple[torch.Tensor, ...]
__all__ = ["SeedStyleSignals"]  # re-exported (the scripts import the helpers below by name)


def forever(batches: Iterable[Batch]) -> Iterator[Batch]:
    """Iterate ``batches`` again and again (a DataLoader epoch ends, a benchmark does not)."""
    while True:
        yield from batches


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so the clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sci(value: float) -> str:
    """Three significant digits in compact scientific notation, e.g. ``1.02e6``."""
    exponent = math.floor(math.log10(value)) if value > 0 else 0
    mantissa = f"{value / 10**exponent:.2f}".rstrip("0").rstrip(".")
    if mantissa == "10":  # rounding carried into the next decade
        mantissa, exponent = "1", exponent + 1
    return f"{mantissa}e{exponent}"


def format_ratio(value: float) -> str:
    """A speed ratio such as ``260x`` or ``2.3x``."""
    return f"{value:.0f}x" if value >= 10 else f"{value:.2g}x"


def parse_arguments(
    argv: list[str] | None, description: str, seconds: float, quick_seconds: float, quick_help: str
) -> argparse.Namespace:
    """``--quick``, ``--seconds`` (per case) and ``--output`` (JSON path), shared by every benchmark."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        "--seconds", type=float, default=None, help=f"time per case (default {seconds:g}, quick {quick_seconds:g})"
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = quick_seconds if args.quick else seconds
    if not math.isfinite(args.seconds) or args.seconds <= 0:  # NaN would never end a timing loop
        parser.error(f"--seconds: must be a number > 0, got {args.seconds}")
    if args.output is not None:  # checked before the benchmark runs, not when its report is written
        try:
            if args.output.is_dir():
                raise ConfigError(f"--output {args.output}: is a directory")
            writable_directory(args.output.parent, "--output")
        except ConfigError as error:
            parser.error(str(error))
    return args


def run_identity(name: str, output: Path | None) -> tuple[str, str, Path]:
    """Today's date, this host, and the JSON path (``benchmarks/results/<name>-<date>-<host>.json`` by default)."""
    today, host = datetime.date.today().isoformat(), socket.gethostname()
    return today, host, output or Path(__file__).resolve().parent / "results" / f"{name}-{today}-{host}.json"


def write_report(report: dict[str, Any], output: Path, console: Console) -> dict[str, Any]:
    """Write a benchmark's JSON report, say where, and return it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {output}")
    return report
