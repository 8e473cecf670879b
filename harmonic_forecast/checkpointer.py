"""The trainer's checkpoints: what one holds, and how it is found, checked, loaded, written and rotated.

A checkpoint ``checkpoints/step_<N>`` (made complete-or-absent by :mod:`harmonic_forecast.checkpoint`) holds:

- ``config.json`` and ``model.safetensors``: the full model (gathered from every rank under DeepSpeed);
- ``optimizer.pt`` (:data:`OPTIMIZER_FILE`), or under DeepSpeed its own shards in ``deepspeed/``
  (:data:`DEEPSPEED_TAG`), which resume only on as many processes as wrote them;
- ``rng.pt`` (:data:`RNG_FILE`): the CPU generator and every CUDA device's;
- ``trainer_state.json`` (:data:`STATE_FILE`): the :class:`~harmonic_forecast.trainer.TrainState`, the
  stream position (``step * grad_accum``, checked on load), the metrics' wandb run id, the world size and
  the run settings a resume must share (seed, batch size, accumulation).

Saving is a collective call: every rank checks the weights are finite and writes its part, and when the
write failed on any rank, every rank raises :class:`CheckpointWriteError` together, the staging directory
removed and the older checkpoints kept.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from harmonic_forecast.checkpoint import (
    CheckpointWriteError,
    begin_checkpoint,
    clean_leftovers,
    commit_checkpoint,
    latest_checkpoint,
    staging_directory,
    supersede,
    verify_checkpoint,
    write_failure,
)
from harmonic_forecast.config import RunConfig
from harmonic_forecast.errors import ConfigError
from harmonic_forecast.models import Forecaster, load_weights, read_model_config
from harmonic_forecast.telemetry import METRICS_FILE
from harmonic_forecast.trainer import DivergedError, TrainState, any_rank, weights_finite

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"
DEEPSPEED_TAG = "deepspeed"  # subdirectory of a checkpoint with DeepSpeed's own model/optimizer shards
FORMAT = 1


def resolve_resume(resume: str | None, checkpoints: Path, say: Any) -> Path | None:
    """The checkpoint to resume from: ``auto`` = newest complete one (or none), else a verified path."""
    if resume is None:
        return None
    if resume == "auto":
        found = latest_checkpoint(checkpoints, warn=say)
        say(f"resuming from {found}" if found else f"no checkpoint in {checkpoints}: starting fresh")
        return found
    path = Path(resume)
    if not path.is_dir():
        raise ConfigError(f"--resume {resume}: no such checkpoint directory")
    verify_checkpoint(path)
    return path


def read_state(directory: Path, config: RunConfig) -> dict[str, Any]:
    """The trainer state of a checkpoint, after checking that it belongs to a compatible run."""
    saved_model = read_model_config(directory)
    if saved_model != config.model:
        raise ConfigError(
            f"{directory}: checkpoint of another architecture ({saved_model.kind}, hidden {saved_model.hidden}) "
            f"than the config's ({config.model.kind}, hidden {config.model.hidden})"
        )
    try:
        state = json.loads((directory / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{directory / STATE_FILE}: cannot read trainer state ({error})") from None
    for key in ("seed", "batch_size", "grad_accum"):
        saved, wanted = state["run"][key], getattr(config.train, key)
        if saved != wanted:
            raise ConfigError(f"{directory}: saved with train.{key} = {saved}, the config has {wanted}")
    position = state["stream"]["position"]  # the next micro-batch: the stream is indexed by step alone
    if position != state["step"] * config.train.grad_accum:
        raise ConfigError(
            f"{directory}: stream position {position} is not step {state['step']} x train.grad_accum "
            f"{config.train.grad_accum}"
        )
    return state


def _write_files(
    directory: Path, model: Forecaster, weights: dict[str, torch.Tensor], optimizer: Any, state: dict[str, Any]
) -> None:
    """Weights, optimizer (unless DeepSpeed wrote its own shards), RNG and trainer state."""
    model.save_pretrained(directory, weights)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), directory / OPTIMIZER_FILE)
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    torch.save(rng, directory / RNG_FILE)
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


class Checkpointer:
    """The checkpoints under ``output_dir/checkpoints`` of one run, on every rank.

    In a run's order: :meth:`resolve` (``--resume``), :meth:`load` (before ``accelerator.prepare``),
    :meth:`attach` (after it), :meth:`supersede` (before the first save), then :meth:`save` as often as
    the loop asks, and :meth:`export` for the final model.
    """

    def __init__(self, config: RunConfig, output_dir: Path, accelerator: Accelerator, say: Callable[[str], Any]):
        self.config = config
        self.root = output_dir / "checkpoints"
        self.accelerator = accelerator
        self.say = say
        self.main = accelerator.is_main_process
        self.deepspeed = accelerator.state.deepspeed_plugin is not None
        self.resumed_from: Path | None = None
        self.saved: dict[str, Any] | None = None  # the trainer state of resumed_from
        self.written: int | None = None  # the step whose checkpoint under root already holds this run's state
        self.last: Path | None = None
        self._model: Forecaster | None = None
        self._objective: Any = None
        self._optimizer: Any = None

    @property
    def wandb_run_id(self) -> str | None:
        """The wandb run the resumed checkpoint's run logged to."""
        return self.saved["wandb_run_id"] if self.saved else None

    def resolve(self, resume: str | None) -> None:
        """Find and check the checkpoint ``--resume`` names (on every rank); the main process clears leftovers."""
        self.resumed_from = resolve_resume(resume, self.root, self.say)
        self.saved = read_state(self.resumed_from, self.config) if self.resumed_from else None
        if self.main:
            clean_leftovers(self.root)

    def load(self, model: Forecaster, optimizer: torch.optim.Optimizer, state: TrainState) -> bool:
        """Weights, optimizer, RNG and train state of the resumed checkpoint; False when the run starts fresh.

        Called before ``accelerator.prepare``: everything is read onto the CPU, and ``prepare`` moves it to
        this run's device. DeepSpeed's shards are read by :meth:`attach`.
        """
        directory, saved = self.resumed_from, self.saved
        if not (saved and directory):
            return False
        load_weights(model, directory)
        if (directory / DEEPSPEED_TAG).is_dir() != self.deepspeed:
            written = "with" if not self.deepspeed else "without"
            raise ConfigError(f"{directory}: written {written} DeepSpeed; resume it the way it was trained")
        if self.deepspeed and saved["world_size"] != self.accelerator.num_processes:
            raise ConfigError(
                f"{directory}: DeepSpeed checkpoints resume on the same number of processes "
                f"({saved['world_size']}), not {self.accelerator.num_processes}"
            )
        if not self.deepspeed:
            optimizer.load_state_dict(torch.load(directory / OPTIMIZER_FILE, map_location="cpu", weights_only=True))
        rng = torch.load(directory / RNG_FILE, map_location="cpu", weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(rng["cuda"]))
        state.load_state_dict(saved)
        return True

    def attach(self, model: Forecaster, objective: Any, optimizer: Any) -> None:
        """The prepared modules and optimizer that :meth:`save` writes; reads DeepSpeed's shards when resuming."""
        self._model, self._objective, self._optimizer = model, objective, optimizer
        if self.deepspeed and self.resumed_from:
            objective.load_checkpoint(str(self.resumed_from), tag=DEEPSPEED_TAG, load_lr_scheduler_states=False)

    def supersede(self, step: int) -> None:
        """Move aside the checkpoints and metrics records of another trajectory than this run's, which starts at
        ``step`` (:func:`~harmonic_forecast.checkpoint.supersede`)."""
        self.accelerator.wait_for_everyone()  # every rank has resolved its checkpoint before any is moved
        if self.main:
            folder, moved, history = supersede(self.root, step, self.resumed_from, self.root.parent / METRICS_FILE)
            if folder:
                what = [f"checkpoints {', '.join(f'step_{n}' for n in moved)}"] if moved else []
                if history:
                    what.append(METRICS_FILE + (f" (its records after step {step})" if self.resumed_from else ""))
                self.say(f"moved {' and '.join(what)} (another trajectory) to {folder}")
        self.accelerator.wait_for_everyone()
        self.written = step if (self.root / f"step_{step}").is_dir() else None

    def gathered_weights(self) -> dict[str, torch.Tensor]:
        """The full model weights on the main process (a collective call: DeepSpeed may shard them)."""
        weights = self.accelerator.get_state_dict(self._objective) or {}  # ZeRO-3 returns None on other ranks
        return {name.removeprefix("model."): tensor for name, tensor in weights.items()}

    def save(self, state: TrainState, metrics: Any) -> Path:
        """Write the checkpoint of ``state.step`` (unless it exists) on every rank; returns its directory.

        ``metrics`` (:class:`~harmonic_forecast.metrics.Metrics`) says whether a loss was non-finite,
        gives its state (the wandb run id) and records the checkpoint. Raises :class:`DivergedError`,
        writing nothing, when the loss or the weights are not finite on any rank.
        """
        model, optimizer, accelerator, main = self._model, self._optimizer, self.accelerator, self.main
        if any_rank(accelerator, bool(metrics.nonfinite) or not weights_finite(model, optimizer)):
            raise DivergedError(
                f"loss became non-finite by step {state.step}; no checkpoint written from these weights"
            )
        final = self.root / f"step_{state.step}"
        if state.step == self.written:
            self.last = final
            return final
        staging = staging_directory(self.root, state.step)

        def attempt(write: Callable[[], Any]) -> None:
            """Run ``write`` on this rank; if it failed on any rank, drop the staging directory and raise."""
            failure = None
            try:
                write()
            except Exception as error:  # OSError, torch.save's RuntimeError, SafetensorError: any failed write
                failure = write_failure(error, self.root)
            if any_rank(accelerator, failure is not None):
                if main:
                    shutil.rmtree(staging, ignore_errors=True)
                raise CheckpointWriteError(
                    f"cannot write checkpoint {final}: {failure or 'failed on another rank'}; older checkpoints kept"
                )

        attempt(lambda: begin_checkpoint(self.root, state.step) if main else None)
        if self.deepspeed:  # every rank writes its shards
            attempt(lambda: self._objective.save_checkpoint(str(staging), tag=DEEPSPEED_TAG))
        weights = self.gathered_weights()

        def write_main() -> None:
            if not main:
                return
            payload = {
                "format": FORMAT,
                **state.state_dict(),
                "stream": {"position": state.step * self.config.train.grad_accum},
                **metrics.state_dict(),
                "world_size": accelerator.num_processes,
                "run": {
                    "seed": self.config.train.seed,
                    "batch_size": self.config.train.batch_size,
                    "grad_accum": self.config.train.grad_accum,
                },
            }
            _write_files(staging, model, weights, None if self.deepspeed else optimizer, payload)
            commit_checkpoint(self.root, state.step, self.config.train.keep_last)

        attempt(write_main)
        metrics.log("checkpoint", state.step, path=str(final))
        self.written = state.step
        self.last = final
        return final

    def export(self, directory: Path, weights: dict[str, torch.Tensor]) -> None:
        """Write the final model (``weights`` from :meth:`gathered_weights`) to ``directory``, on the main process."""
        try:
            self._model.save_pretrained(directory, weights)
        except Exception as error:  # as in save(): any failed write
            reason = write_failure(error, directory.parent)
            raise CheckpointWriteError(f"cannot write {directory}: {reason}; {self.last} holds it") from None
