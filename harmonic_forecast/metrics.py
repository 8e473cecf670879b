"""What the run reports while it trains: loss, throughput, FLOP/s and MFU, on a bar or in lines, and telemetry.

The loss of every micro-batch is kept on the device (no host sync) together with a flag of whether any
was non-finite; both are read, and the ranks agree on divergence, only every ``train.log_every`` steps.
On a terminal the main process shows a rich progress bar; into a log file (SLURM's output) it prints one
plain line per report instead. Records go to :class:`~harmonic_forecast.telemetry.Telemetry` (the main
process's JSONL file and wandb), whose run id is this component's state in a checkpoint.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from harmonic_forecast.checkpoint import write_failure
from harmonic_forecast.config import RunConfig
from harmonic_forecast.curriculum import Stage
from harmonic_forecast.hardware import peak_flops
from harmonic_forecast.models import flops_per_sample
from harmonic_forecast.plots import plot_training_curves
from harmonic_forecast.signals import band_label
from harmonic_forecast.telemetry import METRICS_FILE, Telemetry, comparison_table, evaluation_table, warn
from harmonic_forecast.trainer import DivergedError, TrainState, any_rank


def duration(seconds: float) -> str:
    """``H:MM:SS``, as rich's progress bar shows time remaining."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class Metrics(contextlib.AbstractContextManager):
    """The run's loss, throughput and telemetry; a context manager that shows the progress bar meanwhile."""

    def __init__(
        self,
        config: RunConfig,
        output_dir: Path,
        accelerator: Accelerator,
        console: Console,
        *,
        limit: int,
        start_step: int,
        run_id: str | None,
        resumed_from: Path | None,
    ) -> None:
        self.config, self.output_dir, self.accelerator, self.console = config, output_dir, accelerator, console
        self.limit, self.start_step = limit, start_step
        self.telemetry = None
        if accelerator.is_main_process:
            self.telemetry = Telemetry(
                output_dir,
                wandb_enabled=config.wandb.enabled,
                wandb_mode=config.wandb.mode,
                wandb_project=config.wandb.project,
                wandb_name=config.wandb.name,
                run_id=run_id,
                config=config.to_dict(),
            )
            if resumed_from:
                self.telemetry.log("resume", start_step, checkpoint=str(resumed_from))
        self.flops = flops_per_sample(config.model, training=True)
        self.peak = peak_flops(accelerator.device, bf16=accelerator.mixed_precision == "bf16")
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=accelerator.device)
        self.loss: torch.Tensor | None = None
        self._window_start, self._window_samples = time.perf_counter(), 0
        self.progress = Progress(
            TextColumn("{task.fields[stage]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} samples/s  {task.fields[flops]}  loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            console=console,
            disable=not accelerator.is_main_process or not console.is_terminal,  # logs get plain lines instead
        )
        self._task: Any = None

    def __enter__(self) -> Metrics:
        self.progress.__enter__()
        self._task = self.progress.add_task(
            "train", total=self.limit, completed=self.start_step, stage="", rate="-", loss="-", flops="-"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the metrics: the wandb run id, so that a resumed run continues it."""
        return {"wandb_run_id": self.telemetry.run_id if self.telemetry else None}

    def say(self, message: Any) -> None:
        """Print on the main process."""
        if self.accelerator.is_main_process:
            self.console.print(message)

    def log(self, kind: str, step: int, **values: Any) -> None:
        """A telemetry record (on the main process)."""
        if self.telemetry:
            self.telemetry.log(kind, step, **values)

    def micro_batch(self, loss: torch.Tensor) -> None:
        """Keep a micro-batch's loss, on the device."""
        self.nonfinite |= ~torch.isfinite(loss.detach())
        self.loss = loss

    def step(self, state: TrainState, stage: Stage, lr: float) -> None:
        """Count the step just taken; every ``train.log_every`` steps (and at the last) report it.

        A report is a collective call: the ranks agree on divergence (raising :class:`DivergedError`
        together, so none is left waiting) and average the global batch's loss.
        """
        self._window_samples += self.config.train.batch_size
        if state.step % self.config.train.log_every and state.step != self.limit:
            return
        if any_rank(self.accelerator, bool(self.nonfinite)):
            raise DivergedError(f"loss became non-finite by step {state.step}; lower train.lr (nothing saved)")
        # the global batch's loss, read before the next step (CUDA graphs reuse its memory)
        value = float(self.accelerator.reduce(self.loss.detach(), reduction="mean"))
        speed = self._window_samples / (time.perf_counter() - self._window_start)
        self._window_start, self._window_samples = time.perf_counter(), 0
        label = f"stage {state.curriculum.stage + 1}/{len(self.config.stages)} {band_label(stage.components)}"
        achieved = speed * self.flops
        utilisation = f"  MFU {achieved / self.peak:.1%}" if self.peak else ""
        self.progress.update(
            self._task, completed=state.step, stage=label, rate=f"{speed:,.0f}", loss=f"{value:.3e}",
            flops=f"{achieved / 1e9:,.1f} GFLOP/s{utilisation}",
        )  # fmt: skip
        if not self.console.is_terminal:  # a log file (SLURM's output): no live bar there, so one plain line
            eta = (self.limit - state.step) * self.config.train.batch_size / speed
            self.say(
                f"step {state.step}/{self.limit}  {label}  {speed:,.0f} samples/s  loss {value:.3e}  "
                f"{achieved / 1e9:,.1f} GFLOP/s{utilisation}  ETA {duration(eta)}"
            )
        self.log(
            "train", state.step, stage=state.curriculum.stage, loss=value, lr=lr, samples_per_s=speed,
            flops_per_s=achieved, mfu=achieved / self.peak if self.peak else None,
        )  # fmt: skip

    def evaluation(self, step: int, per_step: dict[str, dict[str, list[float]]], means: dict[str, Any]) -> None:
        """Show and record an evaluation during training."""
        if self.telemetry:
            self.console.print(evaluation_table(step, per_step))
            self.telemetry.log(
                "eval",
                step,
                mse={band: r["model"] for band, r in means.items()},
                per_step={band: r["model"] for band, r in per_step.items()},
            )

    def final(self, step: int, per_step: dict[str, dict[str, list[float]]], final: dict[str, Any]) -> None:
        """Record the final evaluation, close telemetry and show the comparison with the baselines."""
        if self.telemetry:
            self.telemetry.log("final", step, results=final, per_step=per_step)
            self.close()
            self.console.print(comparison_table(f"Validation after {step} steps (lower is better)", final))

    def plot(self) -> None:
        """Draw the training curves of ``metrics.jsonl`` (a picture is telemetry: never fatal)."""
        try:
            plot_training_curves(self.output_dir / METRICS_FILE, self.output_dir / "training_curves.png")
        except Exception as error:
            warn(f"cannot draw {self.output_dir / 'training_curves.png'} ({write_failure(error, self.output_dir)})")

    def close(self) -> None:
        """Flush and close telemetry."""
        if self.telemetry:
            self.telemetry.close()
