"""What the public functions that take numbers accept: tensors, numpy arrays and (nested) lists of real numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from harmonic_forecast.errors import ConfigError


def real_array(values: Any, field: str) -> np.ndarray:
    """``values`` (a numpy array, list or nested list) as a numpy array of real numbers, or a one-line
    :class:`ConfigError` naming ``field``: integers and floats keep their dtype, strings that parse as numbers
    become float64; booleans, complex numbers, times, ragged nesting and values that are not numbers raise."""
    try:
        array = np.asarray(values)
    except ValueError:  # ragged nesting
        raise ConfigError(f"{field}: expected an array of numbers, got rows of different lengths") from None
    if array.dtype.kind in "bcmM":  # booleans, complex numbers, times
        raise ConfigError(f"{field}: expected real numbers, got {array.dtype}")
    if array.dtype.kind not in "iuf":
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"{field}: values are not numbers") from None
    return array


def real_tensor(values: Any, field: str) -> torch.Tensor:
    """``values`` as a tensor of real numbers, or a one-line :class:`ConfigError` naming ``field``.

    A tensor is returned as it is; anything else goes through :func:`real_array` and keeps its dtype, in native
    byte order, contiguous and writable (copied where it is not: a reversed, big-endian or read-only array).
    """
    if isinstance(values, torch.Tensor):
        if values.dtype == torch.bool or values.is_complex():
            raise ConfigError(f"{field}: expected real numbers, got {values.dtype}")
        return values
    array = real_array(values, field)
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
    return torch.from_numpy(array if array.flags.writeable else array.copy())  # torch warns on a read-only view
