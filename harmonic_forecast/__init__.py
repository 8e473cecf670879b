"""harmonic_forecast: forecast sums of harmonics, trained on an exact on-device signal stream."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harmonic_forecast.errors import ConfigError
    from harmonic_forecast.forecast import load_forecaster
    from harmonic_forecast.signals import SignalSpec
    from harmonic_forecast.stream import HarmonicStream

__all__ = ["ConfigError", "HarmonicStream", "SignalSpec", "__version__", "load_forecaster"]
__version__ = "0.1.0"
_HOMES = {"ConfigError": "errors", "HarmonicStream": "stream", "SignalSpec": "signals", "load_forecaster": "forecast"}


def __getattr__(name: str) -> Any:
    """The public names, imported on first use: ``python -m harmonic_forecast`` starts before torch loads."""
    if name in _HOMES:
        return getattr(importlib.import_module(f"harmonic_forecast.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names with the lazily imported public ones, for ``dir()``, ``help()`` and completion."""
    return sorted({*globals(), *__all__})
