"""One telemetry path: rich tables on the console, a JSONL metrics file always, wandb when enabled.

wandb runs offline by default (nothing needs a network or an account); a resumed training run
passes the saved run id, so wandb continues the same run.

Telemetry is never fatal once training runs: when wandb fails (its service process killed by a job-wide
SIGTERM, a full disk, a lost connection) or the metrics file cannot be written, the failure is reported
once, in one line on stderr, and that sink is dropped for the rest of the run; training, checkpoints
and the exit status are unaffected.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from torch import nn

from harmonic_forecast.errors import report

METRICS_FILE = "metrics.jsonl"  # in the run directory: every record, one JSON object per line


class Telemetry:
    """Sends every record to the JSONL file and, when enabled, its numbers to wandb under the same step (a nested
    value as ``kind/key/subkey``, e.g. ``eval/mse/(3,10) σ=0.1``)."""

    def __init__(
        self,
        output_dir: Path,
        *,
        wandb_enabled: bool = False,
        wandb_mode: str = "offline",
        wandb_project: str = "harmonic-forecast",
        wandb_name: str = "",
        run_id: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.metrics = MetricsLog(output_dir / METRICS_FILE)
        self._wandb = None
        self.run_id = run_id
        if wandb_enabled:
            import wandb

            self._wandb = wandb.init(
                project=wandb_project,
                name=wandb_name or None,
                id=run_id,
                resume="allow" if run_id else None,
                mode=wandb_mode,
                dir=str(output_dir),
                config=config,
            )
            self.run_id = self._wandb.id

    def log(self, kind: str, step: int, **values: Any) -> None:
        """Record ``values`` of type ``kind`` at ``step``."""
        self.metrics.write(kind, step=step, **values)
        if self._wandb is not None:
            flat = dict(_scalars(kind, values))
            self._call_wandb("log", lambda run: run.log(flat, step=step))

    def close(self) -> None:
        """Flush and close the file and the wandb run."""
        self.metrics.close()
        self._call_wandb("finish", lambda run: run.finish())
        self._wandb = None

    def _call_wandb(self, what: str, call: Callable[[Any], Any]) -> None:
        """Run ``call(wandb_run)``; on any failure report it in one line and stop using wandb."""
        if self._wandb is None:
            return
        try:
            call(self._wandb)
        except Exception as error:  # wandb raises many kinds (ConnectionResetError, wandb.Error, OSError)
            self._wandb = None
            _silence_wandb_teardown()
            warn(f"wandb {what} failed ({_one_line(error)}); wandb logging stops, {self.metrics.path} continues")


def _scalars(prefix: str, value: Any) -> Iterator[tuple[str, float]]:
    """The numbers in ``value`` under slash-joined keys: ``{"mse": {"(3,10)": 0.1}}`` gives ``prefix/mse/(3,10)``.

    Nested dicts are walked (an evaluation's MSE per band and noise level); lists (a curve per horizon step),
    None and strings are left to the JSONL file.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _scalars(f"{prefix}/{key}", item)
    elif isinstance(value, int | float):
        yield prefix, value


def warn(message: str) -> None:
    """One line on stderr, prefixed like every message of the command line."""
    report(f"warning: {message}")


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _silence_wandb_teardown() -> None:
    """Tear wandb down now, errors swallowed, so its exit hook finds nothing left to raise about."""
    with contextlib.suppress(Exception):
        import wandb

        wandb.teardown()


class MetricsLog:
    """Appends records to ``path`` as JSON lines, each stamped with wall time.

    A write that fails (e.g. no space left on device) is reported once by :func:`warn`; later records are
    dropped rather than stopping the run.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle = path.open("a", buffering=1)
        self._failed = False

    def write(self, kind: str, **values: Any) -> None:
        """Write one record of type ``kind``."""
        if self._failed:
            return
        try:
            self._handle.write(json.dumps({"kind": kind, "time": round(time.time(), 3), **values}) + "\n")
        except OSError as error:
            self._failed = True
            warn(f"cannot write {self.path} ({_one_line(error)}); further metrics records are dropped")

    def close(self) -> None:
        """Close the file."""
        with contextlib.suppress(OSError):
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


def evaluation_table(step: int, per_step: dict[str, dict[str, list[float]]]) -> Table:
    """Validation MSE of the model per band: averaged, at the first and at the last horizon step."""
    table = Table(title=f"Validation at step {step}")
    for column in ("band", "MSE", "MSE step 1", "MSE last step"):
        table.add_column(column, justify="left" if column == "band" else "right")
    for band, values in per_step.items():
        model = values["model"]
        table.add_row(band, f"{sum(model) / len(model):.3e}", f"{model[0]:.3e}", f"{model[-1]:.3e}")
    return table


def make_console() -> Console:
    """The console every component prints to (160 columns when not a terminal, so tables fit in logs)."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)
