"""Forecast losses over ``[B, horizon]`` predictions."""

from __future__ import annotations

from collections.abc import Callable

import torch

LOSSES = ("weighted_mse", "mse")


def horizon_weights(horizon: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The seed's step weights ``1 / (t + 1)``, normalised to sum 1 (so a constant error e costs e**2)."""
    weights = 1.0 / torch.arange(1, horizon + 1, device=device, dtype=torch.float32)
    return weights / weights.sum()


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Horizon-weighted MSE: early steps count more, as in the seed's training."""
    weights = horizon_weights(target.shape[-1], target.device)
    return ((prediction - target).square() * weights).sum(dim=-1).mean()


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Plain mean squared error over all steps."""
    return (prediction - target).square().mean()


def loss_function(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called ``name`` (one of :data:`LOSSES`)."""
    return {"weighted_mse": weighted_mse, "mse": mse}[name]
