"""``seq2seq_gru``: the notebook's GRU encoder-decoder, kept for comparison.

A GRU encoder (``hidden`` units, 10 in the notebook) whose last state, concatenated with the rfft
amplitudes and phases, starts a ``GRUCell`` decoder trained with teacher forcing and evaluated
autoregressively. ``encoder_width`` is not used.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from harmonic_forecast.models.base import Family, Forecaster, Loss, ModelConfig, nan_where_nonfinite
from harmonic_forecast.spectral import rfft_features


class Seq2SeqGRUConfig(ModelConfig):
    """The ``[model]`` table of ``kind = "seq2seq_gru"``: the shared fields only."""

    kind: Literal["seq2seq_gru"] = "seq2seq_gru"


class Seq2SeqGRUForecaster(Forecaster):
    """The notebook's GRU encoder-decoder: teacher forcing in training, autoregressive in evaluation."""

    def __init__(self, config: Seq2SeqGRUConfig) -> None:
        super().__init__(config)
        self.encoder = nn.GRU(1, config.hidden, batch_first=True)
        state = config.hidden + 2 * (config.lookback // 2 + 1)
        self.decoder = nn.GRUCell(1, state)
        self.head = nn.Sequential(nn.Linear(state, state // 2), nn.LeakyReLU(), nn.Linear(state // 2, 1))

    def _encode(self, lookback: torch.Tensor) -> torch.Tensor:
        _, last = self.encoder(lookback.unsqueeze(-1))
        amplitude, phase = rfft_features(lookback)
        return torch.cat([last[0], amplitude, phase], dim=-1)

    def _decode(self, hidden: torch.Tensor, inputs: list[torch.Tensor] | None, first: torch.Tensor) -> torch.Tensor:
        value, outputs = first, []
        for step in range(self.config.horizon):
            hidden = self.decoder(value if inputs is None else inputs[step], hidden)
            prediction = self.head(hidden)
            outputs.append(prediction)
            value = prediction.detach() if self.config.detach_feedback else prediction
        return torch.cat(outputs, dim=-1)

    def forecast_scaled(self, lookback: torch.Tensor) -> torch.Tensor:
        return nan_where_nonfinite(lookback, self._decode(self._encode(lookback), None, lookback[:, -1:]))

    def training_loss_scaled(self, lookback: torch.Tensor, target: torch.Tensor, loss: Loss) -> torch.Tensor:
        """``loss`` of the teacher-forced decoder: step t is fed the true value of step t - 1."""
        fed = torch.cat([lookback[:, -1:], target[:, :-1]], dim=-1)
        inputs = list(fed.split(1, dim=-1))
        forecast = self._decode(self._encode(lookback), inputs, lookback[:, -1:])
        return loss(nan_where_nonfinite(lookback, forecast).float(), target)

    @staticmethod
    def flops_per_sample(config: Seq2SeqGRUConfig, training: bool = True) -> float:
        """Matrix-multiply FLOPs per signal (see :func:`harmonic_forecast.models.flops_per_sample`)."""
        lookback, horizon, hidden = config.lookback, config.horizon, config.hidden
        state = hidden + 2 * (lookback // 2 + 1)
        encoder = lookback * 2 * 3 * hidden * (1 + hidden)
        head = 2 * (state * (state // 2) + state // 2)
        forward = encoder + horizon * (2 * 3 * state * (1 + state) + head)
        return float(forward * (3 if training else 1))


FAMILY = Family(Seq2SeqGRUConfig, Seq2SeqGRUForecaster, Seq2SeqGRUForecaster.flops_per_sample)
