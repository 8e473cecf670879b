"""A torch function mode that records which devices a piece of code touches."""

from __future__ import annotations

import torch


class DeviceRecorder(torch.overrides.TorchFunctionMode):
    """Records the devices of every tensor that goes into or comes out of a torch call."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for value in [*args, *(kwargs or {}).values(), result]:
            for item in value if isinstance(value, tuple | list) else [value]:
                if isinstance(item, torch.Tensor) and item.dim() > 0:
                    self.devices.add(item.device.type)
        return result
