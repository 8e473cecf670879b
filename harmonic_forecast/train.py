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

The loop only calls the components, each owning its state (``state_dict`` / ``load_state_dict``) and
its output: :class:`~harmonic_forecast.trainer.TrainState` (step, samples, curriculum),
:class:`~harmonic_forecast.checkpointer.Checkpointer` (what a checkpoint holds; resume, save, rotate),
:class:`~harmonic_forecast.validation.Validator`, :class:`~harmonic_forecast.metrics.Metrics` (progress,
throughput, MFU, telemetry) and :class:`~harmonic_forecast.preemption.StopVote`.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator

from harmonic_forecast.checkpointer import (
    DEEPSPEED_TAG,
    OPTIMIZER_FILE,
    RNG_FILE,
    STATE_FILE,
    Checkpointer,
    resolve_resume,
)
from harmonic_forecast.config import RunConfig
from harmonic_forecast.curriculum import learning_rate, promotion_due, stage_finished
from harmonic_forecast.losses import loss_function
from harmonic_forecast.metrics import Metrics
from harmonic_forecast.models import build_model
from harmonic_forecast.preemption import PID_FILE, StopRequest, StopVote
from harmonic_forecast.signals import band_label
from harmonic_forecast.stream import HarmonicStream
from harmonic_forecast.telemetry import METRICS_FILE, make_console, parameter_table
from harmonic_forecast.trainer import (
    DivergedError,
    TrainingObjective,
    TrainState,
    build_accelerator,
    build_optimizer,
    check_batch_division,
    compile_objective,
    fit_closed_form,
    train_step,
    uses_cuda_graphs,
)
from harmonic_forecast.validation import Validator, evaluate, mean_over_steps

__all__ = [
    "DEEPSPEED_TAG",
    "EXIT_DIVERGED",
    "EXIT_PREEMPTED",
    "EXIT_SAVE_FAILED",
    "OPTIMIZER_FILE",
    "RNG_FILE",
    "STATE_FILE",
    "DivergedError",
    "TrainResult",
    "TrainState",
    "TrainingObjective",
    "build_accelerator",
    "build_optimizer",
    "check_batch_division",
    "compile_objective",
    "evaluate",
    "mean_over_steps",
    "resolve_resume",
    "train",
    "uses_cuda_graphs",
]

EXIT_PREEMPTED = 3  # stopped by SIGTERM/SIGUSR1 after saving a checkpoint: requeue with --resume auto
EXIT_DIVERGED = 4  # the loss became NaN/inf: nothing was saved from those weights
EXIT_SAVE_FAILED = 5  # a checkpoint could not be written (e.g. no space left on device): older ones are kept


@dataclass
class TrainResult:
    """How the run ended."""

    preempted: bool
    step: int
    final: dict[str, dict[str, float]] | None
    checkpoint: Path | None


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
    console, main = make_console(), accelerator.is_main_process

    def say(message: object) -> None:
        if main:
            console.print(message)

    checkpointer = Checkpointer(config, output_dir, accelerator, say)
    checkpointer.resolve(resume)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model)
    optimizer = build_optimizer(model, config)
    state = TrainState(stage_samples=[0] * len(config.stages))
    if not checkpointer.load(model, optimizer, state):
        device = next(model.parameters()).device  # still where build_model made it: the fit's windows go there
        fit_closed_form(model, config, device)
    say(parameter_table(model))
    objective, optimizer = accelerator.prepare(TrainingObjective(model, loss_function(config.train.loss)), optimizer)
    step_objective = compile_objective(objective, config, accelerator)
    if step_objective is not objective:
        say(f"training step compiled ({'CUDA graphs' if uses_cuda_graphs(accelerator) else 'no CUDA graphs'})")
    checkpointer.attach(model, objective, optimizer)
    validator = Validator(config, accelerator)
    checkpointer.supersede(state.step)
    limit = config.total_steps if max_steps is None else min(config.total_steps, max_steps)
    metrics = Metrics(
        config, output_dir, accelerator, console, limit=limit, start_step=state.step,
        run_id=checkpointer.wandb_run_id, resumed_from=checkpointer.resumed_from,
    )  # fmt: skip
    accumulation, curriculum = config.train.grad_accum, state.curriculum
    micro_batch = config.train.batch_size // accumulation
    streams: dict[int, HarmonicStream] = {}

    with StopRequest(output_dir / PID_FILE if main else None) as stop, metrics:
        vote = StopVote(stop, accelerator)
        if state.step == 0:  # the starting point (the experts' inverse-MSE combination), for what training adds
            per_step = validator(model)
            metrics.evaluation(0, per_step, mean_over_steps(per_step))
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
            vote.start()
            rate = learning_rate(stage, curriculum, state.step, config.train.warmup_steps, config.train.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = rate
            micro_batches = (stream.batch(state.step * accumulation + micro) for micro in range(accumulation))
            train_step(
                accelerator,
                objective,
                step_objective,
                optimizer,
                micro_batches,
                config.train.grad_clip,
                metrics.micro_batch,
            )
            state.advance(config.train.batch_size)
            metrics.step(state, stage, rate)

            if validator.due(state.step, limit):
                per_step = validator(model)
                means = mean_over_steps(per_step)
                metrics.evaluation(state.step, per_step, means)
                band = band_label(stage.components)
                if promotion_due(stage, curriculum, state.step, means[band]["model"]):
                    say(f"step {state.step}: promoted past stage {curriculum.stage + 1} {band}")
                    curriculum.advance(state.step)
            if vote.agreed():
                saved = checkpointer.save(state, metrics)
                say(f"stop signal: saved {saved}; exit status {EXIT_PREEMPTED} (resume with --resume auto)")
                metrics.close()
                return TrainResult(True, state.step, None, saved)
            if state.step % config.train.checkpoint_every == 0:
                checkpointer.save(state, metrics)

    last_saved = checkpointer.save(state, metrics)
    weights = checkpointer.gathered_weights()
    per_step = validator(model, baselines=True)
    final = mean_over_steps(per_step)
    metrics.final(state.step, per_step, final)
    if main:
        checkpointer.export(output_dir / "model", weights)
        metrics.plot()
        written = [output_dir / "model", last_saved, output_dir / METRICS_FILE, output_dir / "training_curves.png"]
        written = [str(path) for path in written if path.exists()]  # the plot is skipped with a warning if it fails
        say(f"saved {', '.join(written[:-1])} and {written[-1]}")
    return TrainResult(False, state.step, final, last_saved)
