"""harmonic_forecast: forecast sums of harmonics, trained on an exact on-device signal stream."""

from harmonic_forecast.config import ConfigError
from harmonic_forecast.forecast import load_forecaster
from harmonic_forecast.signals import SignalSpec
from harmonic_forecast.stream import HarmonicStream

__all__ = ["ConfigError", "HarmonicStream", "SignalSpec", "__version__", "load_forecaster"]
__version__ = "0.1.0"
