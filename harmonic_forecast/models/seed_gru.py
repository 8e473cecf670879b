"""``seed_gru``: the notebook's final model, kept for comparison.

An MLP over ``[window, rfft amplitudes, rfft phases]`` (202 -> 100 -> 202 -> H for a lookback of 100) gives
the initial hidden state of a ``GRUCell`` decoder, fed the last lookback value and then its own predictions
(no teacher forcing; the fed-back value is detached as in the seed unless ``detach_feedback`` is false).
Head H -> H/2 -> H/4 -> 1; ``hidden`` is H (140 in the seed), ``encoder_width`` the MLP's width (100).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from harmonic_forecast.models.base import Family, Forecaster, ModelConfig, nan_where_nonfinite
from harmonic_forecast.spectral import rfft_features


class SeedGRUConfig(ModelConfig):
    """The ``[model]`` table of ``kind = "seed_gru"``: the shared fields only."""

    kind: Literal["seed_gru"] = "seed_gru"


SEED_MODEL = SeedGRUConfig(hidden=140, encoder_width=100)  # the notebook's final model


class SeedGRUForecaster(Forecaster):
    """Lookback ``[B, lookback]`` -> forecast ``[B, horizon]``."""

    def __init__(self, config: SeedGRUConfig) -> None:
        super().__init__(config)
        features = config.lookback + 2 * (config.lookback // 2 + 1)
        self.encoder = nn.Sequential(
            nn.Linear(features, config.encoder_width),
            nn.LeakyReLU(),
            nn.Linear(config.encoder_width, features),
            nn.LeakyReLU(),
            nn.Linear(features, config.hidden),
        )
        self.decoder = nn.GRUCell(1, config.hidden)
        self.head = nn.Sequential(
            nn.Linear(config.hidden, config.hidden // 2),
            nn.LeakyReLU(),
            nn.Linear(config.hidden // 2, config.hidden // 4),
            nn.LeakyReLU(),
            nn.Linear(config.hidden // 4, 1),
        )

    def forecast_scaled(self, lookback: torch.Tensor) -> torch.Tensor:
        amplitude, phase = rfft_features(lookback)
        hidden = self.encoder(torch.cat([lookback, amplitude, phase], dim=-1))
        value = lookback[:, -1:]
        outputs = []
        for _ in range(self.config.horizon):
            hidden = self.decoder(value, hidden)
            prediction = self.head(hidden)
            outputs.append(prediction)
            value = prediction.detach() if self.config.detach_feedback else prediction
        return nan_where_nonfinite(lookback, torch.cat(outputs, dim=-1))

    @staticmethod
    def flops_per_sample(config: SeedGRUConfig, training: bool = True) -> float:
        """Matrix-multiply FLOPs per signal (see :func:`harmonic_forecast.models.flops_per_sample`)."""
        lookback, horizon, hidden, width = config.lookback, config.horizon, config.hidden, config.encoder_width
        spectral = lookback + 2 * (lookback // 2 + 1)
        encoder = 2 * (spectral * width + width * spectral + spectral * hidden)
        head = 2 * (hidden * (hidden // 2) + (hidden // 2) * (hidden // 4) + hidden // 4)
        forward = encoder + horizon * (2 * 3 * hidden * (1 + hidden) + head)
        return float(forward * (3 if training else 1))


FAMILY = Family(SeedGRUConfig, SeedGRUForecaster, SeedGRUForecaster.flops_per_sample)
