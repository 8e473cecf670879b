"""The devices a user names: whether this machine has them, and their peak throughput for model FLOPs
utilisation (MFU)."""

from __future__ import annotations

import torch

from harmonic_forecast.errors import ConfigError

# Dense peak FLOP/s per GPU from the vendors' data sheets: (bf16 tensor cores, fp32).
PEAK_FLOPS = {
    "H200": (989e12, 67e12),
    "H100": (989e12, 67e12),
    "A100": (312e12, 19.5e12),
    "L40S": (362e12, 91.6e12),
    "L4": (121e12, 30.3e12),
    "A10": (125e12, 31.2e12),
}


def usable_device(field: str, device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` this process can allocate on, or a one-line :class:`ConfigError`
    naming ``field`` (e.g. ``"cuda"`` with a CPU-only torch build or no visible GPU, a malformed name)."""
    try:
        device = torch.device(device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, TypeError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ConfigError(f"{field}: device {str(device)!r} is not usable here ({reason})") from None
    return device


def peak_flops(device: torch.device, bf16: bool) -> float | None:
    """The device's peak FLOP/s for the precision in use, or None when unknown (every CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for model, (bf16_peak, fp32_peak) in PEAK_FLOPS.items():
        if model in name.split() or f"{model}-" in name or name.endswith(model):
            return bf16_peak if bf16 else fp32_peak
    return None
