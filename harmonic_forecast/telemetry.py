"""Console tables and the JSONL metrics file (one JSON object per line, always written)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from torch import nn


class MetricsLog:
    """Appends records to ``path`` as JSON lines, each stamped with wall time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle = path.open("a", buffering=1)

    def write(self, kind: str, **values: Any) -> None:
        """Write one record of type ``kind``."""
        self._handle.write(json.dumps({"kind": kind, "time": round(time.time(), 3), **values}) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


def parameter_table(model: nn.Module) -> Table:
    """Trainable parameters per tensor, with the total in the caption (the seed's PrettyTable)."""
    table = Table(title="Trainable parameters")
    table.add_column("Module")
    table.add_column("Parameters", justify="right")
    total = 0
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            table.add_row(name, f"{parameter.numel():,}")
            total += parameter.numel()
    table.caption = f"Total trainable parameters: {total:,}"
    return table


def comparison_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    """Rows of band -> {forecaster: MSE}, one column per forecaster."""
    table = Table(title=title)
    table.add_column("band")
    names = list(next(iter(rows.values())))
    for name in names:
        table.add_column(f"{name} MSE", justify="right")
    for band, values in rows.items():
        table.add_row(band, *(f"{values[name]:.3e}" for name in names))
    return table


def make_console() -> Console:
    """The console every component prints to."""
    return Console(highlight=False)
