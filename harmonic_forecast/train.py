"""The training loop: one loop over curriculum stages, on Accelerate, reading the pure-function stream.

Micro-batch ``g`` of the run is ``HarmonicStream(stage spec, seed).batch(g)`` with
``g = step * grad_accum + k``: a new stage changes the spec, not the counter, so no signal is drawn
twice and the data of a step depends on the step alone. Every stateful piece (weights, optimiser,
RNG, curriculum, counters, wandb run id) goes into the checkpoint, and the learning rate is a pure
function of that state, so a resumed run computes bit for bit what the uninterrupted one would.

On CUDA the step is compiled (``train.compile``; CUDA graphs on one device) and runs bf16 autocast
over fp32 weights with a fused AdamW; it makes no host sync: the loss is read back only at log intervals.

SIGTERM and SIGUSR1 only set a flag; the ranks agree on it once per step (an all-reduce started
when the step begins and read when it ends), save one checkpoint and the command exits with
:data:`EXIT_PREEMPTED`.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

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
from harmonic_forecast.curriculum import CurriculumState, learning_rate, promotion_due, stage_finished
from harmonic_forecast.errors import ConfigError
from harmonic_forecast.hardware import peak_flops
from harmonic_forecast.losses import loss_function
from harmonic_forecast.model import Forecaster, build_model, flops_per_sample, load_weights, read_model_config
from harmonic_forecast.plots import plot_training_curves
from harmonic_forecast.preemption import PID_FILE, StopRequest
from harmonic_forecast.signals import band_label, set_label
from harmonic_forecast.spectral import dft_forecast
from harmonic_forecast.stream import HarmonicStream
from harmonic_forecast.telemetry import (
    Telemetry,
    comparison_table,
    evaluation_table,
    make_console,
    parameter_table,
    warn,
)

EXIT_PREEMPTED = 3  # stopped by SIGTERM/SIGUSR1 after saving a checkpoint: requeue with --resume auto
EXIT_DIVERGED = 4  # the loss became NaN/inf: nothing was saved from those weights
EXIT_SAVE_FAILED = 5  # a checkpoint could not be written (e.g. no space left on device): older ones are kept
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"
DEEPSPEED_TAG = "deepspeed"  # subdirectory of a checkpoint with DeepSpeed's own model/optimizer shards


class DivergedError(RuntimeError):
    """The loss became non-finite."""


@dataclass
class TrainState:
    """Counters of the run."""

    step: int = 0
    samples_seen: int = 0
    stage_samples: list[int] = field(default_factory=list)


@dataclass
class TrainResult:
    """How the run ended."""

    preempted: bool
    step: int
    final: dict[str, dict[str, float]] | None
    checkpoint: Path | None


class TrainingObjective(torch.nn.Module):
    """The module Accelerate wraps (DDP, autocast): ``forward`` returns the model's training loss."""

    def __init__(self, model: Forecaster, loss: Any) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, lookback: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.model.training_loss(lookback, target, self.loss)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, streams: dict[str, HarmonicStream], accelerator: Accelerator, baselines: bool = False
) -> dict[str, dict[str, list[float]]]:
    """MSE per horizon step, per band, of the model and (if asked) of the naive and DFT forecasts."""
    model.eval()
    results: dict[str, dict[str, list[float]]] = {}
    for band, stream in streams.items():
        errors: dict[str, list[torch.Tensor]] = {"model": []}
        if baselines:
            errors |= {"naive": [], "dft": []}
        for lookback, target in stream:
            forecasts = {"model": model(lookback).float()}
            if baselines:
                forecasts["naive"] = lookback[:, -1:].expand_as(target)
                forecasts["dft"] = dft_forecast(lookback, target.shape[1])
            for name, forecast in forecasts.items():
                errors[name].append(accelerator.gather_for_metrics((forecast - target).square()))
        results[band] = {name: torch.cat(values).mean(dim=0).tolist() for name, values in errors.items()}
    model.train()
    return results


def mean_over_steps(per_step: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Band -> forecaster -> MSE averaged over the horizon."""
    return {band: {name: sum(v) / len(v) for name, v in values.items()} for band, values in per_step.items()}


def _validation_streams(config: RunConfig, device: torch.device) -> dict[str, HarmonicStream]:
    """One stream per stage band (the promotion rule reads these), and per noise level when the signal mixes several."""
    specs = {}
    for band in dict.fromkeys(stage.components for stage in config.stages):
        spec = config.signal.replace(components=band)
        specs[band_label(band)] = spec
        if len(spec.noise_levels) > 1:
            specs |= {set_label(band, level): spec.replace(noise=level) for level in spec.noise_levels}
    return {
        name: HarmonicStream(
            spec,
            config.eval.batch_size,
            seed=config.train.seed,
            device=device,
            split="validation",
            num_batches=config.eval.batches,
        )
        for name, spec in specs.items()
    }


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


def _read_state(directory: Path, config: RunConfig) -> dict[str, Any]:
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


def _weights_finite(model: torch.nn.Module, optimizer: Any) -> bool:
    tensors = [*model.parameters(), *_tensors(optimizer.state_dict())]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def build_accelerator(config: RunConfig) -> Accelerator:
    """Accelerate for this run: bf16 on GPUs, fp32 and gloo on CPUs, DeepSpeed when launched with it.

    Without GPUs Accelerate's DeepSpeed path picks no process-group backend and quietly runs every
    rank alone, so gloo is named explicitly. DeepSpeed's clipping and micro-batch come from our config.
    """
    has_cuda = torch.cuda.is_available()
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    cpu = config.train.device == "cpu" or (config.train.device == "auto" and not has_cuda and not deepspeed)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    handlers = [InitProcessGroupKwargs(backend="gloo")] if distributed and not has_cuda else []
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision="bf16" if has_cuda and not cpu else "no",
        gradient_accumulation_steps=config.train.grad_accum,
        kwargs_handlers=handlers,
    )
    check_batch_division(config, accelerator.num_processes)
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:
        plugin.deepspeed_config["gradient_clipping"] = config.train.grad_clip
        plugin.deepspeed_config["gradient_accumulation_steps"] = config.train.grad_accum
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = (
            config.train.batch_size // config.train.grad_accum // accelerator.num_processes
        )
        plugin.deepspeed_config["train_batch_size"] = config.train.batch_size
        zero = plugin.deepspeed_config.setdefault("zero_optimization", {})
        if zero.get("stage") == 3:  # every checkpoint holds the gathered model.safetensors: ZeRO-3 must gather it
            zero["stage3_gather_16bit_weights_on_model_save"] = True
            plugin.zero3_save_16bit_model = True
    return accelerator


def check_batch_division(config: RunConfig, world_size: int) -> None:
    """Raise a one-line :class:`ConfigError` unless every process gets whole, equal micro-batches.

    ``train.batch_size`` is the global batch of one optimizer step: ``grad_accum`` micro-batches, each
    split over ``world_size`` processes; ``eval.batch_size`` is split over the processes too.
    """
    train, accumulation = config.train, config.train.grad_accum
    if train.batch_size % (accumulation * world_size):
        raise ConfigError(
            f"train.batch_size {train.batch_size} is not divisible by train.grad_accum {accumulation} x world size "
            f"{world_size} = {accumulation * world_size}; each process needs whole, equal micro-batches"
        )
    if config.eval.batch_size % world_size:
        raise ConfigError(f"eval.batch_size {config.eval.batch_size} is not divisible by the world size {world_size}")


def build_optimizer(model: torch.nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    """AdamW with the fused kernel (one launch for all parameters; CPU and CUDA both have it)."""
    return torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay, fused=True)


def uses_cuda_graphs(accelerator: Accelerator) -> bool:
    """Whether a compiled step is replayed as CUDA graphs: on one CUDA device, where every step has the same shapes.

    With several processes DDP's all-reduce runs between the compiled pieces; they compile without graphs.
    """
    return accelerator.device.type == "cuda" and accelerator.num_processes == 1


def compile_objective(objective: torch.nn.Module, config: RunConfig, accelerator: Accelerator) -> torch.nn.Module:
    """The module the training steps call: ``objective``, or ``torch.compile`` of it as ``train.compile`` asks.

    Compiled after ``accelerator.prepare``, as Accelerate's own dynamo plugin does: DDP sits inside the
    compiled module (its DDPOptimizer splits the graph at gradient buckets) and Accelerate's bf16 autocast
    is traced with the forward. Only the training step is compiled: evaluation (other shapes), saving and
    ``no_sync`` use the eager modules, which share the parameters, so state dicts keep their plain names.
    """
    setting, deepspeed = config.train.compile, accelerator.state.deepspeed_plugin is not None
    if setting is True and deepspeed:
        raise ConfigError("train.compile: not supported with DeepSpeed; set it to false or auto")
    if setting is False or (setting == "auto" and (accelerator.device.type != "cuda" or deepspeed)):
        return objective
    return torch.compile(objective, mode="reduce-overhead" if uses_cuda_graphs(accelerator) else None, dynamic=False)


def _duration(seconds: float) -> str:
    """``H:MM:SS``, as rich's progress bar shows time remaining."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor inside nested dicts, lists and tuples."""
    if torch.is_tensor(value):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [tensor for item in value for tensor in _tensors(item)]
    return []


def train(config: RunConfig, output_dir: Path, max_steps: int | None = None, resume: str | None = None) -> TrainResult:
    """Train through the curriculum with checkpoints; returns how the run ended.

    Shutdown frees the wrapped model (which holds the process group) while Python is fully alive,
    then destroys the process group on every rank together: a gloo group torn down during
    interpreter finalisation aborts the process (SIGABRT at exit under ``accelerate launch``).
    """
    accelerator = build_accelerator(config)
    result = _run(config, output_dir, max_steps, resume, accelerator)
    accelerator.free_memory()
    gc.collect()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result


def _run(
    config: RunConfig, output_dir: Path, max_steps: int | None, resume: str | None, accelerator: Accelerator
) -> TrainResult:
    """The body of :func:`train`."""
    deepspeed = accelerator.state.deepspeed_plugin is not None
    console = make_console()
    main = accelerator.is_main_process

    def say(message: str) -> None:
        if main:
            console.print(message)

    checkpoints = output_dir / "checkpoints"
    start_from = resolve_resume(resume, checkpoints, say)
    saved = _read_state(start_from, config) if start_from else None
    if main:
        clean_leftovers(checkpoints)

    torch.manual_seed(config.train.seed)
    model = build_model(config.model)
    optimizer = build_optimizer(model, config)
    state, curriculum = TrainState(stage_samples=[0] * len(config.stages)), CurriculumState()
    if saved and start_from:
        load_weights(model, start_from)
        if (start_from / DEEPSPEED_TAG).is_dir() != deepspeed:
            written = "with" if not deepspeed else "without"
            raise ConfigError(f"{start_from}: written {written} DeepSpeed; resume it the way it was trained")
        if deepspeed and saved["world_size"] != accelerator.num_processes:
            raise ConfigError(
                f"{start_from}: DeepSpeed checkpoints resume on the same number of processes "
                f"({saved['world_size']}), not {accelerator.num_processes}"
            )
        if not deepspeed:
            optimizer.load_state_dict(torch.load(start_from / OPTIMIZER_FILE, weights_only=True))
        rng = torch.load(start_from / RNG_FILE, weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(rng["cuda"]))
        state = TrainState(saved["step"], saved["samples_seen"], saved["stage_samples"])
        curriculum.load_state_dict(saved["curriculum"])
    else:
        model.fit_to_data(config.stage_spec(config.stages[-1]), config.train.seed)
    if main:
        console.print(parameter_table(model))
    objective, optimizer = accelerator.prepare(TrainingObjective(model, loss_function(config.train.loss)), optimizer)
    step_objective = compile_objective(objective, config, accelerator)
    if step_objective is not objective:
        say(f"training step compiled ({'CUDA graphs' if uses_cuda_graphs(accelerator) else 'no CUDA graphs'})")
    if deepspeed and start_from:
        objective.load_checkpoint(str(start_from), tag=DEEPSPEED_TAG, load_lr_scheduler_states=False)
    validation = _validation_streams(config, accelerator.device)
    start_step = state.step
    accelerator.wait_for_everyone()  # every rank has resolved its checkpoint before any is moved
    if main:
        folder, moved = supersede(checkpoints, start_step, start_from)
        if folder:
            say(f"moved checkpoints {', '.join(f'step_{n}' for n in moved)} (another trajectory) to {folder}")
    accelerator.wait_for_everyone()
    telemetry = None
    if main:
        telemetry = Telemetry(
            output_dir,
            wandb_enabled=config.wandb.enabled,
            wandb_mode=config.wandb.mode,
            wandb_project=config.wandb.project,
            wandb_name=config.wandb.name,
            run_id=saved["wandb_run_id"] if saved else None,
            config=config.to_dict(),
        )
        if start_from:
            telemetry.log("resume", state.step, checkpoint=str(start_from))

    flops = flops_per_sample(config.model, training=True)
    peak = peak_flops(accelerator.device, bf16=accelerator.mixed_precision == "bf16")
    accumulation = config.train.grad_accum
    micro_batch = config.train.batch_size // accumulation
    limit = config.total_steps if max_steps is None else min(config.total_steps, max_steps)
    nonfinite = torch.zeros((), dtype=torch.bool, device=accelerator.device)
    streams: dict[int, HarmonicStream] = {}
    last_saved: Path | None = None
    # the step whose checkpoint under `checkpoints` already holds this run's state
    written = start_step if (checkpoints / f"step_{start_step}").is_dir() else None
    window_start, window_samples = time.perf_counter(), 0

    def any_rank(flag: bool) -> bool:
        """Whether ``flag`` holds on any rank (a collective call: the same answer everywhere)."""
        if accelerator.num_processes == 1:
            return flag
        value = torch.tensor(float(flag), device=accelerator.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value)

    def gathered_weights() -> dict[str, torch.Tensor]:
        """The full model weights on the main process (a collective call: DeepSpeed may shard them)."""
        weights = accelerator.get_state_dict(objective) or {}  # ZeRO-3 returns None on other ranks
        return {name.removeprefix("model."): tensor for name, tensor in weights.items()}

    def save() -> Path | None:
        if any_rank(bool(nonfinite) or not _weights_finite(model, optimizer)):
            raise DivergedError(
                f"loss became non-finite by step {state.step}; no checkpoint written from these weights"
            )
        nonlocal written
        final = checkpoints / f"step_{state.step}"
        if state.step == written:
            return final
        staging = staging_directory(checkpoints, state.step)

        def attempt(write: Any) -> None:
            """Run ``write`` on this rank; if it failed on any rank, drop the staging directory and raise."""
            failure = None
            try:
                write()
            except Exception as error:  # OSError, torch.save's RuntimeError, SafetensorError: any failed write
                failure = write_failure(error, checkpoints)
            if any_rank(failure is not None):
                if main:
                    shutil.rmtree(staging, ignore_errors=True)
                raise CheckpointWriteError(
                    f"cannot write checkpoint {final}: {failure or 'failed on another rank'}; older checkpoints kept"
                )

        attempt(lambda: begin_checkpoint(checkpoints, state.step) if main else None)
        if deepspeed:  # every rank writes its shards
            attempt(lambda: objective.save_checkpoint(str(staging), tag=DEEPSPEED_TAG))
        weights = gathered_weights()

        def write_main() -> None:
            if not main:
                return
            payload = {
                "format": 1,
                "step": state.step,
                "samples_seen": state.samples_seen,
                "stage_samples": state.stage_samples,
                "curriculum": curriculum.state_dict(),
                "stream": {"position": state.step * accumulation},
                "wandb_run_id": telemetry.run_id if telemetry else None,
                "world_size": accelerator.num_processes,
                "run": {
                    "seed": config.train.seed,
                    "batch_size": config.train.batch_size,
                    "grad_accum": accumulation,
                },
            }
            _write_files(staging, model, weights, None if deepspeed else optimizer, payload)
            commit_checkpoint(checkpoints, state.step, config.train.keep_last)

        attempt(write_main)
        if telemetry:
            telemetry.log("checkpoint", state.step, path=str(final))
        written = state.step
        return final

    def start_stop_vote(stop: StopRequest) -> tuple[torch.Tensor, Any] | None:
        """Start an asynchronous all-reduce of this rank's stop flag; it overlaps the step's compute."""
        if accelerator.num_processes == 1:
            return None
        flag = torch.tensor(float(stop.requested), device=accelerator.device)
        return flag, torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, async_op=True)

    def stop_agreed(stop: StopRequest, vote: tuple[torch.Tensor, Any] | None) -> bool:
        """Whether any rank had been asked to stop when the step began (the same answer on every rank)."""
        if vote is None:
            return stop.requested
        flag, work = vote
        work.wait()
        return bool(flag)

    progress = Progress(
        TextColumn("{task.fields[stage]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} samples/s  {task.fields[flops]}  loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not main or not console.is_terminal,  # logs get plain lines instead (below)
    )
    with StopRequest(output_dir / PID_FILE if main else None) as stop, progress:
        task = progress.add_task("train", total=limit, completed=state.step, stage="", rate="-", loss="-", flops="-")
        while curriculum.stage < len(config.stages) and state.step < limit:
            stage = config.stages[curriculum.stage]
            if stage_finished(stage, curriculum, state.step):
                curriculum.advance(state.step)
                continue
            if curriculum.stage not in streams:
                spec = config.stage_spec(stage)
                streams[curriculum.stage] = HarmonicStream(
                    spec, micro_batch, seed=config.train.seed, device=accelerator.device
                )
            stream = streams[curriculum.stage]
            vote = start_stop_vote(stop)
            rate = learning_rate(stage, curriculum, state.step, config.train.warmup_steps, config.train.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = rate
            for micro in range(accumulation):
                lookback, target = stream.batch(state.step * accumulation + micro)
                # Accelerate's accumulation: no gradient sync (DDP) and no DeepSpeed step until the last micro-batch
                with accelerator.accumulate(objective):
                    loss = step_objective(lookback, target)
                    accelerator.backward(loss)  # divided by grad_accum (DeepSpeed divides itself)
                nonfinite |= ~torch.isfinite(loss.detach())
            if config.train.grad_clip > 0:
                accelerator.clip_grad_norm_(objective.parameters(), config.train.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.samples_seen += config.train.batch_size
            state.stage_samples[curriculum.stage] += config.train.batch_size
            window_samples += config.train.batch_size

            if state.step % config.train.log_every == 0 or state.step == limit:
                if any_rank(bool(nonfinite)):  # every rank raises together: none is left waiting in a collective
                    raise DivergedError(f"loss became non-finite by step {state.step}; lower train.lr (nothing saved)")
                # the global batch's loss, read before the next step (CUDA graphs reuse its memory)
                value = float(accelerator.reduce(loss.detach(), reduction="mean"))
                speed = window_samples / (time.perf_counter() - window_start)
                window_start, window_samples = time.perf_counter(), 0
                label = f"stage {curriculum.stage + 1}/{len(config.stages)} {band_label(stage.components)}"
                achieved = speed * flops
                utilisation = f"  MFU {achieved / peak:.1%}" if peak else ""
                progress.update(
                    task, completed=state.step, stage=label, rate=f"{speed:,.0f}", loss=f"{value:.3e}",
                    flops=f"{achieved / 1e9:,.1f} GFLOP/s{utilisation}",
                )  # fmt: skip
                if not console.is_terminal:  # a log file (SLURM's output): no live bar there, so one plain line
                    eta = (limit - state.step) * config.train.batch_size / speed
                    say(
                        f"step {state.step}/{limit}  {label}  {speed:,.0f} samples/s  loss {value:.3e}  "
                        f"{achieved / 1e9:,.1f} GFLOP/s{utilisation}  ETA {_duration(eta)}"
                    )
                if telemetry:
                    telemetry.log(
                        "train", state.step, stage=curriculum.stage, loss=value, lr=rate, samples_per_s=speed,
                        flops_per_s=achieved, mfu=achieved / peak if peak else None,
                    )  # fmt: skip
            if state.step % config.eval.every == 0 and state.step < limit:
                per_step = evaluate(model, validation, accelerator)
                means = mean_over_steps(per_step)
                if telemetry:
                    console.print(evaluation_table(state.step, per_step))
                    telemetry.log(
                        "eval",
                        state.step,
                        mse={band: r["model"] for band, r in means.items()},
                        per_step={band: r["model"] for band, r in per_step.items()},
                    )
                band = band_label(stage.components)
                if promotion_due(stage, curriculum, state.step, means[band]["model"]):
                    say(f"step {state.step}: promoted past stage {curriculum.stage + 1} {band}")
                    curriculum.advance(state.step)
            if stop_agreed(stop, vote):
                last_saved = save()
                say(f"stop signal: saved {last_saved}; exit status {EXIT_PREEMPTED} (resume with --resume auto)")
                if telemetry:
                    telemetry.close()
                return TrainResult(True, state.step, None, last_saved)
            if state.step % config.train.checkpoint_every == 0:
                last_saved = save()

    last_saved = save()
    weights = gathered_weights()
    per_step = evaluate(model, validation, accelerator, baselines=True)
    final = mean_over_steps(per_step)
    if telemetry:
        telemetry.log("final", state.step, results=final, per_step=per_step)
        telemetry.close()
        console.print(comparison_table(f"Validation after {state.step} steps (lower is better)", final))
        try:
            model.save_pretrained(output_dir / "model", weights)
        except Exception as error:  # as in save(): any failed write
            reason = write_failure(error, output_dir)
            raise CheckpointWriteError(
                f"cannot write {output_dir / 'model'}: {reason}; {last_saved} holds it"
            ) from None
        try:
            plot_training_curves(output_dir / "metrics.jsonl", output_dir / "training_curves.png")
        except Exception as error:  # a picture is telemetry: never fatal
            warn(f"cannot draw {output_dir / 'training_curves.png'} ({write_failure(error, output_dir)})")
        console.print(f"saved {output_dir / 'model'}, {last_saved} and {output_dir / 'metrics.jsonl'}")
    return TrainResult(False, state.step, final, last_saved)
