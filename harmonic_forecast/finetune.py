"""Fine-tune a trained model on one real series (the seed's finetune.py as a feature).

The series is cut in time: training windows have their targets before the cut, validation windows
after it, so validation never sees a value the model was trained to predict. Windows are
normalised like :meth:`HarmonicForecaster.forecast` (centre and scale from the lookback alone).
Training uses a small learning rate and stops early when the validation MSE has not improved for
``patience`` epochs; the best weights are saved. Validation MSE is reported in the series' units,
before and after, next to the classical baselines on the same windows. It is the model's alone (``predict``
without the combination ``forecast`` applies), and the epoch after is chosen on these windows, so its figure
is optimistic: early stopping has no separate test split on one short series.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from harmonic_forecast import baselines
from harmonic_forecast.errors import ConfigError
from harmonic_forecast.forecast import HarmonicForecaster, check_series, series_windows
from harmonic_forecast.losses import weighted_mse
from harmonic_forecast.scaling import lookback_statistics, scale_windows

REPORT_FILE = "finetune_report.json"


@dataclass(frozen=True)
class FinetuneSettings:
    """How to fine-tune."""

    validation_fraction: float = 0.2
    lr: float = 1e-4
    batch_size: int = 64
    max_epochs: int = 50
    patience: int = 5
    seed: int = 0


@dataclass
class Windows:
    """Normalised lookback/target pairs and the scale that maps them back to series units."""

    lookback: torch.Tensor
    target: torch.Tensor
    center: torch.Tensor
    scale: torch.Tensor

    def to_units(self, forecast: torch.Tensor) -> torch.Tensor:
        """A normalised forecast in the series' units."""
        return forecast * self.scale + self.center

    def mse(self, forecast: torch.Tensor) -> float:
        """MSE in series units against the true targets."""
        return float((self.to_units(forecast) - self.to_units(self.target)).square().mean())


def split_windows(
    series: np.ndarray, lookback: int, horizon: int, validation_fraction: float
) -> tuple[Windows, Windows]:
    """Training windows whose targets end before the cut, validation windows whose targets start after it."""
    if not 0 < validation_fraction < 1:
        raise ConfigError(f"--validation-fraction: must be in (0, 1), got {validation_fraction}")
    cut = round(len(series) * (1 - validation_fraction))
    windows = series_windows(series, lookback + horizon)
    starts = np.arange(len(windows))
    train, validation = windows[starts + lookback + horizon <= cut], windows[starts + lookback >= cut]
    if len(train) == 0 or len(validation) == 0:
        raise ConfigError(
            f"--input: {len(series)} samples leave no training or validation window at --validation-fraction "
            f"{validation_fraction:g}; need at least {_shortest(lookback, horizon, validation_fraction)}"
        )
    return _windows(train, lookback), _windows(validation, lookback)


def _shortest(lookback: int, horizon: int, validation_fraction: float) -> int:
    """The fewest samples that :func:`split_windows` cuts into a training and a validation window: the cut
    leaves a whole window before it, and a window whose target starts at the cut fits after it."""
    length = lookback + horizon
    while not lookback + horizon <= round(length * (1 - validation_fraction)) <= length - horizon:
        length += 1
    return length


def _windows(windows: np.ndarray, lookback: int) -> Windows:
    values = torch.as_tensor(np.ascontiguousarray(windows), dtype=torch.float64)
    scaled_lookback, target = scale_windows(values[:, :lookback], values[:, lookback:])
    center, scale = lookback_statistics(values[:, :lookback])
    scale = torch.where(scale > 0, scale, 1.0)
    return Windows(*(tensor.float() for tensor in (scaled_lookback, target, center, scale)))


def baseline_mse(train: Windows, validation: Windows) -> dict[str, float]:
    """Validation MSE (series units) of the classical forecasters that need no synthetic data."""
    horizon = validation.target.shape[1]
    order = baselines.choose_ar_order(train.lookback, train.target)
    forecasts = {
        "naive": baselines.naive(validation.lookback, horizon),
        "seasonal_naive": baselines.seasonal_naive(validation.lookback, horizon),
        "dft": baselines.dft_extrapolation(validation.lookback, horizon),
        f"ar({order})": baselines.autoregressive(validation.lookback, horizon, order),
    }
    return {name: validation.mse(forecast) for name, forecast in forecasts.items()}


def finetune(forecaster: HarmonicForecaster, series: np.ndarray, output_dir: Path, settings: FinetuneSettings) -> dict:
    """Fine-tune ``forecaster.model`` in place on ``series``; save the best model and a report."""
    shortest = _shortest(forecaster.lookback, forecaster.horizon, settings.validation_fraction)
    values = check_series(series, shortest, name="--input")  # the split's own minimum: one number for the user
    train, validation = split_windows(values, forecaster.lookback, forecaster.horizon, settings.validation_fraction)
    model = forecaster.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)

    def validation_mse() -> float:
        model.eval()
        result = validation.mse(forecaster.predict(validation.lookback))
        model.train()
        return result

    before = best = validation_mse()
    best_state, best_epoch, history = copy.deepcopy(model.state_dict()), 0, []
    for epoch in range(1, settings.max_epochs + 1):
        for batch in torch.randperm(len(train.lookback), generator=generator).split(settings.batch_size):
            lookback, target = train.lookback[batch].to(forecaster.device), train.target[batch].to(forecaster.device)
            loss = model.training_loss(lookback, target, weighted_mse)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        history.append(validation_mse())
        if history[-1] < best:
            best, best_epoch, best_state = history[-1], epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= settings.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    report = {
        "train_windows": len(train.lookback),
        "validation_windows": len(validation.lookback),
        "validation_mse_before": before,
        "validation_mse_after": best,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "validation_mse_per_epoch": history,
        "baselines": baseline_mse(train, validation),
        "settings": asdict(settings),
    }
    model.save_pretrained(output_dir)
    (output_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report
