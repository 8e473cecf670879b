"""Validation during training: one finite stream per stage band (and noise level), and the MSE of the model on them."""

from __future__ import annotations

import torch
from accelerate import Accelerator

from harmonic_forecast.config import RunConfig
from harmonic_forecast.signals import band_label, set_label
from harmonic_forecast.spectral import dft_forecast
from harmonic_forecast.stream import HarmonicStream


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


def validation_streams(config: RunConfig, device: torch.device) -> dict[str, HarmonicStream]:
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


class Validator:
    """Evaluates the model every ``eval.every`` steps (and once at the end) on the validation streams."""

    def __init__(self, config: RunConfig, accelerator: Accelerator) -> None:
        self.every = config.eval.every
        self.accelerator = accelerator
        self.streams = validation_streams(config, accelerator.device)

    def due(self, step: int, limit: int) -> bool:
        """Whether the run evaluates after ``step`` (not after the last one: the final evaluation follows)."""
        return step % self.every == 0 and step < limit

    def __call__(self, model: torch.nn.Module, baselines: bool = False) -> dict[str, dict[str, list[float]]]:
        """MSE per horizon step, per stream (a collective call: every rank evaluates its share)."""
        return evaluate(model, self.streams, self.accelerator, baselines)
