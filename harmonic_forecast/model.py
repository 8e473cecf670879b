"""The seed notebook's final forecaster, and its ``config.json`` + ``model.safetensors`` format.

Encoder: an MLP over ``[window, rfft amplitudes, rfft phases]`` (202 -> 100 -> 202 -> H for a
lookback of 100) gives the initial hidden state of a ``GRUCell`` decoder. The decoder is fed the
last lookback value, then its own predictions, for ``horizon`` steps (no teacher forcing); the
fed-back value is detached as in the seed unless ``detach_feedback`` is false. Head: H -> H/2 -> H/4 -> 1.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from harmonic_forecast.config import ConfigError, reject_unknown, require_bool, require_int
from harmonic_forecast.spectral import rfft_features

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_TYPE = "seed_gru"


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the seed GRU forecaster; the defaults are the seed's (H = 140)."""

    lookback: int = 100
    horizon: int = 10
    hidden: int = 140
    encoder_width: int = 100
    detach_feedback: bool = True

    def __post_init__(self) -> None:
        require_int("model.lookback", self.lookback, minimum=2)
        require_int("model.horizon", self.horizon, minimum=1)
        require_int("model.hidden", self.hidden, minimum=4)
        require_int("model.encoder_width", self.encoder_width, minimum=1)
        require_bool("model.detach_feedback", self.detach_feedback)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a config table; unknown keys are an error."""
        reject_unknown("model", values, {field.name for field in dataclasses.fields(cls)})
        return cls(**values)


class SeedGRUForecaster(nn.Module):
    """Lookback ``[B, lookback]`` -> forecast ``[B, horizon]``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
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

    def forward(self, lookback: torch.Tensor) -> torch.Tensor:
        amplitude, phase = rfft_features(lookback)
        hidden = self.encoder(torch.cat([lookback, amplitude, phase], dim=-1))
        value = lookback[:, -1:]
        outputs = []
        for _ in range(self.config.horizon):
            hidden = self.decoder(value, hidden)
            prediction = self.head(hidden)
            outputs.append(prediction)
            value = prediction.detach() if self.config.detach_feedback else prediction
        return torch.cat(outputs, dim=-1)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"model_type": MODEL_TYPE, **dataclasses.asdict(self.config)}
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        weights = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
        save_file(weights, str(directory / WEIGHTS_FILE))

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> SeedGRUForecaster:
        """Rebuild a saved model without any training code."""
        directory = Path(directory)
        try:
            values = json.loads((directory / CONFIG_FILE).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"{directory / CONFIG_FILE}: cannot read model config ({error})") from None
        if not isinstance(values, dict) or values.pop("model_type", None) != MODEL_TYPE:
            raise ConfigError(f"{directory / CONFIG_FILE}: not a {MODEL_TYPE} model config")
        model = cls(ModelConfig.from_dict(values))
        try:
            state = load_file(str(directory / WEIGHTS_FILE), device=str(device))
            model.load_state_dict(state)
        except (OSError, SafetensorError, RuntimeError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(f"{directory / WEIGHTS_FILE}: cannot load weights ({first_line})") from None
        return model.to(device)
