"""The parts of a training step: Accelerate, the objective it wraps, the optimizer, the compiled step, the train state.

:class:`TrainState` is the run's position (step, samples, curriculum) with ``state_dict`` and
``load_state_dict``, as every stateful part of the trainer has; :func:`any_rank` is the one
collective the components use to agree on a flag. :func:`stream_windows` is the data the models' closed-form
parts are fitted on (models never build streams themselves). Nothing here reads or writes files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs

from harmonic_forecast.config import RunConfig
from harmonic_forecast.curriculum import CurriculumState
from harmonic_forecast.errors import ConfigError
from harmonic_forecast.models import Forecaster, WindowSource
from harmonic_forecast.models.row_threads import torch_threads
from harmonic_forecast.signals import SignalSpec
from harmonic_forecast.stream import HarmonicStream


class DivergedError(RuntimeError):
    """The loss became non-finite."""


@dataclass
class TrainState:
    """Where the run stands: optimizer steps, samples seen (in all and per stage) and the curriculum."""

    step: int = 0
    samples_seen: int = 0
    stage_samples: list[int] = field(default_factory=list)
    curriculum: CurriculumState = field(default_factory=CurriculumState)

    def state_dict(self) -> dict[str, Any]:
        """Plain values for the checkpoint."""
        return {
            "step": self.step,
            "samples_seen": self.samples_seen,
            "stage_samples": self.stage_samples,
            "curriculum": self.curriculum.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from saved values."""
        self.step, self.samples_seen, self.stage_samples = state["step"], state["samples_seen"], state["stage_samples"]
        self.curriculum.load_state_dict(state["curriculum"])

    def advance(self, batch_size: int) -> None:
        """Count one optimizer step of ``batch_size`` samples in the current stage."""
        self.step += 1
        self.samples_seen += batch_size
        self.stage_samples[self.curriculum.stage] += batch_size


class TrainingObjective(torch.nn.Module):
    """The module Accelerate wraps (DDP, autocast): ``forward`` returns the model's training loss."""

    def __init__(self, model: Forecaster, loss: Any) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, lookback: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.model.training_loss(lookback, target, self.loss)


def fit_closed_form(model: Forecaster, config: RunConfig, device: str | torch.device = "cpu") -> None:
    """Fit the model's closed-form parts (``fit_to_data``) on the run's stream, for its last stage's signals.

    On a CPU the fit runs on one thread: its float64 reductions (a Gram matrix over 65k windows) round by how
    MKL splits them among threads, and the noise calibration that follows amplifies that rounding (its knots
    moved by up to 20% between one and two threads), so a run would depend on how many threads a launcher
    gives each process. On one thread every world size fits the same parts. It takes under a second.
    """
    with torch_threads(1):
        model.fit_to_data(stream_windows(config.train.seed, device), config.stage_spec(config.stages[-1]))


def stream_windows(seed: int, device: str | torch.device = "cpu") -> WindowSource:
    """The :class:`~harmonic_forecast.models.WindowSource` of a run's stream, for ``Forecaster.fit_to_data``.

    ``source(spec, batch_size, split, index)`` is batch ``index`` of
    ``HarmonicStream(spec, batch_size, seed, device, split=split, rank=0, world_size=1)``: the whole batch on
    every rank (not a rank's share), so every rank fits the same closed-form parts.
    """

    def source(spec: SignalSpec, batch_size: int, split: str, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        stream = HarmonicStream(spec, batch_size, seed, device, split=split, rank=0, world_size=1)
        lookback, target = stream.batch(index)
        return lookback, target

    return source


def any_rank(accelerator: Accelerator, flag: bool) -> bool:
    """Whether ``flag`` holds on any rank (a collective call: the same answer everywhere)."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor(float(flag), device=accelerator.device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value)


def weights_finite(model: torch.nn.Module, optimizer: Any) -> bool:
    """Whether every floating-point parameter and optimizer state tensor is finite."""
    tensors = [*model.parameters(), *_tensors(optimizer.state_dict())]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def _tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor inside nested dicts, lists and tuples."""
    if torch.is_tensor(value):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [tensor for item in value for tensor in _tensors(item)]
    return []


def _no_gpu_notice(record: logging.LogRecord) -> bool:
    """False for DeepSpeed's notice that it found no GPU. Accelerate imports DeepSpeed, where installed, to
    unwrap a model (at the first checkpoint), and on a CPU DeepSpeed then warns "Setting accelerator to CPU.
    If you have GPU or other accelerator, we were unable to detect it": noise in a run without DeepSpeed."""
    return "Setting accelerator to CPU" not in record.getMessage()


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
    if plugin is None:
        logging.getLogger("DeepSpeed").addFilter(_no_gpu_notice)
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


def train_step(
    accelerator: Accelerator,
    objective: torch.nn.Module,
    step_objective: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    grad_clip: float,
    on_loss: Callable[[torch.Tensor], None],
) -> None:
    """One optimizer step over the accumulation ``micro_batches`` (``lookback`` ``[b, L]``, ``target`` ``[b, H]``).

    ``objective`` is the prepared :class:`TrainingObjective` and ``step_objective`` what
    :func:`compile_objective` made of it. Accelerate's ``accumulate`` holds back DDP's gradient sync
    and DeepSpeed's step until the last micro-batch; ``on_loss`` sees each micro-batch's scalar loss
    as soon as it exists (a CUDA-graph replay reuses its memory). Gradients are clipped to norm
    ``grad_clip`` when it is > 0. The learning rate is whatever the optimizer's groups hold.
    """
    for lookback, target in micro_batches:
        with accelerator.accumulate(objective):
            loss = step_objective(lookback, target)
            accelerator.backward(loss)  # divided by grad_accum (DeepSpeed divides itself)
        on_loss(loss)
    if grad_clip > 0:
        accelerator.clip_grad_norm_(objective.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
