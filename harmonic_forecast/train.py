"""The training loop: one loop over curriculum stages, on Accelerate, reading the pure-function stream.

Batch ``g`` of the run is ``HarmonicStream(stage spec, seed).batch(g)``: a new stage changes the
spec, not the batch counter, so no signal is ever drawn twice.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from harmonic_forecast.losses import loss_function
from harmonic_forecast.model import SeedGRUForecaster
from harmonic_forecast.run_config import RunConfig
from harmonic_forecast.signals import SignalSpec, band_label
from harmonic_forecast.spectral import dft_forecast
from harmonic_forecast.stream import HarmonicStream
from harmonic_forecast.telemetry import MetricsLog, comparison_table, make_console, parameter_table


def _lr_factor(step: int, warmup: int, total: int, floor: float) -> float:
    """Linear warmup to 1, then cosine decay to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _validation_streams(config: RunConfig, device: torch.device) -> dict[str, HarmonicStream]:
    bands = dict.fromkeys(stage.components for stage in config.stages)
    return {
        band_label(band): HarmonicStream(
            config.signal.replace(components=band),
            config.eval.batch_size,
            seed=config.train.seed,
            device=device,
            split="validation",
            num_batches=config.eval.batches,
        )
        for band in bands
    }


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


def train(config: RunConfig, output_dir: Path, max_steps: int | None = None) -> dict[str, dict[str, float]]:
    """Train through the curriculum, evaluate, save the model; returns the final evaluation."""
    use_cpu = config.train.device == "cpu" or (config.train.device == "auto" and not torch.cuda.is_available())
    accelerator = Accelerator(cpu=use_cpu, mixed_precision="no" if use_cpu else "bf16")
    console = make_console()
    torch.manual_seed(config.train.seed)
    model = SeedGRUForecaster(config.model)
    if accelerator.is_main_process:
        console.print(parameter_table(model))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    total = config.total_steps if max_steps is None else min(config.total_steps, max_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: _lr_factor(step, config.train.warmup_steps, config.total_steps, config.train.min_lr_ratio),
    )
    model, optimizer, schedule = accelerator.prepare(model, optimizer, schedule)
    compute_loss = loss_function(config.train.loss)
    validation = _validation_streams(config, accelerator.device)
    metrics = MetricsLog(output_dir / "metrics.jsonl") if accelerator.is_main_process else None

    step, window_start, window_samples = 0, time.perf_counter(), 0
    progress = Progress(
        TextColumn("{task.fields[stage]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} samples/s  loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not accelerator.is_main_process,
    )
    with progress:
        task = progress.add_task("train", total=total, stage="", rate="-", loss="-")
        for stage_index, stage in enumerate(config.stages):
            if step >= total:
                break
            spec: SignalSpec = config.stage_spec(stage)
            stream = HarmonicStream(spec, config.train.batch_size, seed=config.train.seed, device=accelerator.device)
            stream.load_state_dict({"position": step})
            label = f"stage {stage_index + 1}/{len(config.stages)} {band_label(stage.components)}"
            stage_end = min(total, step + stage.steps)
            for lookback, target in stream:
                loss = compute_loss(model(lookback).float(), target)
                accelerator.backward(loss)
                if config.train.grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), config.train.grad_clip)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                window_samples += config.train.batch_size
                if step % config.train.log_every == 0 or step == stage_end:
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise FloatingPointError(f"loss became {value} at step {step}; lower train.lr")
                    rate = window_samples / (time.perf_counter() - window_start)
                    window_start, window_samples = time.perf_counter(), 0
                    progress.update(task, completed=step, stage=label, rate=f"{rate:,.0f}", loss=f"{value:.3e}")
                    if metrics:
                        lr = schedule.get_last_lr()[0]
                        metrics.write("train", step=step, stage=stage_index, loss=value, lr=lr, samples_per_s=rate)
                if step % config.eval.every == 0 and step < total:
                    result = mean_over_steps(evaluate(model, validation, accelerator))
                    if metrics:
                        metrics.write("eval", step=step, mse={band: r["model"] for band, r in result.items()})
                if step >= stage_end:
                    break

    per_step = evaluate(model, validation, accelerator, baselines=True)
    final = mean_over_steps(per_step)
    if accelerator.is_main_process:
        assert metrics is not None
        metrics.write("final", step=step, results=final, per_step=per_step)
        metrics.close()
        console.print(comparison_table(f"Validation after {step} steps (lower is better)", final))
        accelerator.unwrap_model(model).save_pretrained(output_dir / "model")
        console.print(f"saved {output_dir / 'model'} and {output_dir / 'metrics.jsonl'}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final
