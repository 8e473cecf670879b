"""``lstm``: the notebook's next-step LSTM predictor, kept for comparison.

Trained on every step of the signal (lookback and target) and forecasting autoregressively, fed its own
predictions (detached unless ``detach_feedback`` is false); ``hidden`` is its state size (100 in the
notebook). ``encoder_width`` is not used.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from harmonic_forecast.losses import mse
from harmonic_forecast.models.base import Family, Forecaster, Loss, ModelConfig, nan_where_nonfinite


class LSTMConfig(ModelConfig):
    """The ``[model]`` table of ``kind = "lstm"``: the shared fields only."""

    kind: Literal["lstm"] = "lstm"


class LSTMForecaster(Forecaster):
    """The notebook's next-step LSTM: trained on every step, forecasting by feeding back its predictions."""

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__(config)
        self.lstm = nn.LSTM(1, config.hidden, batch_first=True)
        self.readout = nn.Linear(config.hidden, 1)

    def forecast_scaled(self, lookback: torch.Tensor) -> torch.Tensor:
        output, state = self.lstm(lookback.unsqueeze(-1))
        value = self.readout(output[:, -1])
        outputs = [value]
        for _ in range(self.config.horizon - 1):
            fed = value.detach() if self.config.detach_feedback else value
            output, state = self.lstm(fed.unsqueeze(1), state)
            value = self.readout(output[:, -1])
            outputs.append(value)
        return nan_where_nonfinite(lookback, torch.cat(outputs, dim=-1))

    def training_loss_scaled(self, lookback: torch.Tensor, target: torch.Tensor, loss: Loss) -> torch.Tensor:
        """Plain MSE of next-step predictions over the whole signal (the notebook's objective)."""
        signal = torch.cat([lookback, target], dim=-1)
        output, _ = self.lstm(signal[:, :-1].unsqueeze(-1))
        return mse(nan_where_nonfinite(signal, self.readout(output).squeeze(-1).float()), signal[:, 1:])

    @staticmethod
    def flops_per_sample(config: LSTMConfig, training: bool = True) -> float:
        """Matrix-multiply FLOPs per signal: ``L + H - 1`` steps either way (an LSTM step is 2 * 4H(in + H))."""
        hidden = config.hidden
        forward = (config.lookback + config.horizon - 1) * (2 * 4 * hidden * (1 + hidden) + 2 * hidden)
        return float(forward * (3 if training else 1))


FAMILY = Family(LSTMConfig, LSTMForecaster, LSTMForecaster.flops_per_sample)
