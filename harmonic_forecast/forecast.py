"""Use a trained model: ``load_forecaster(path).predict(lookback)`` and ``.forecast(series)``.

Both take values in any units: the model scales each window by its own lookback and maps its forecast
back (:mod:`harmonic_forecast.scaling`), so ``predict(a·x + b) == a·predict(x) + b`` for ``a > 0``. A
model saved before that convention (``input_scaling = "none"`` in its config) is wrapped in the same
scaling here, so every model takes raw units.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harmonic_forecast.arrays import real_array, real_tensor
from harmonic_forecast.combination import HISTORY, classical_forecasts, combination_weights
from harmonic_forecast.errors import ConfigError, require_int
from harmonic_forecast.hardware import usable_device
from harmonic_forecast.models import CONFIG_FILE, Forecaster
from harmonic_forecast.scaling import scale_windows, unscale

PRETRAINED = Path(__file__).resolve().parent / "pretrained"
Array = np.ndarray | torch.Tensor


def resolve_model_directory(path: str | Path | None) -> Path:
    """A directory holding ``config.json`` + ``model.safetensors``: the path itself, its ``model/``
    (a run directory), or the shipped pretrained model when ``path`` is None."""
    if path is None:
        return PRETRAINED
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    if not path.exists():
        raise ConfigError(f"{path}: no such model directory")
    raise ConfigError(f"{path}: no model here (expected {CONFIG_FILE} and model.safetensors, or a run's model/)")


def series_windows(series: np.ndarray, length: int) -> np.ndarray:
    """Every window of ``length`` consecutive samples, ``[len - length + 1, length]`` (a view)."""
    return np.lib.stride_tricks.sliding_window_view(series, length)


def check_series(series: Array, minimum: int, name: str = "series") -> np.ndarray:
    """A finite 1-D float64 array of at least ``minimum`` samples, or a one-line error."""
    values = series.detach().cpu().numpy() if isinstance(series, torch.Tensor) else np.asarray(series)
    if values.ndim == 2 and 1 in values.shape:
        values = values.reshape(-1)
    if values.ndim != 1:
        raise ConfigError(f"{name}: expected a 1-D series, got shape {values.shape}")
    values = real_array(values, name).astype(np.float64)
    if len(values) < minimum:
        raise ConfigError(f"{name}: {len(values)} samples, the model needs at least {minimum}")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        hint = " (missing or not a number)" if np.isnan(values[bad[0]]) else ""
        raise ConfigError(f"{name}: non-finite value {values[bad[0]]} at index {bad[0]}{hint}")
    return values


def _real_windows(lookback: Array) -> torch.Tensor:
    """``lookback`` as a real-valued tensor (integers as float64), or a one-line :class:`ConfigError`."""
    windows = real_tensor(lookback, "lookback")
    return windows if windows.is_floating_point() else windows.double()


class HarmonicForecaster:
    """A loaded model with batched, device-aware prediction, ``batch_size`` windows at a time.

    The default chunk of 2048 windows gives each CPU thread of the default model's experts about a
    thousand windows (:func:`~harmonic_forecast.models.row_threads.map_row_chunks`) while their float64
    matrices stay near the cache (much smaller or larger chunks are slower per window there;
    ``benchmarks/default_model.py`` measures the rate).
    """

    def __init__(self, model: Forecaster, device: str | torch.device = "cpu", batch_size: int = 2048) -> None:
        self.device = usable_device("device", device)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size

    @property
    def batch_size(self) -> int:
        """Windows per model call (>= 1); a bad value raises :class:`ConfigError` when set."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._batch_size = require_int("batch_size", value, minimum=1)

    @property
    def lookback(self) -> int:
        """Samples the model reads."""
        return self.model.config.lookback

    @property
    def horizon(self) -> int:
        """Samples the model forecasts."""
        return self.model.config.horizon

    @torch.no_grad()
    def predict(self, lookback: Array) -> Array:
        """Forecast ``[N, lookback]`` windows in any units: ``[N, horizon]`` in those units, row i for window i.

        A numpy array (or anything array-like) gives a numpy array, a tensor a tensor on the tensor's
        device: float64 for float64 or integer input, whose precision the scaling and its inverse keep (a
        level of 1e9 does not eat the variation's digits), float32 for any other float dtype. Rows are
        independent: a window holding a NaN or inf gets a row of NaN and every other row is what it would
        be without that window (up to the last-bit rounding that differs between batch sizes); nothing is
        raised for it. A constant window forecasts its constant. A wrong shape, or values that are not real
        numbers (booleans, complex numbers, text that does not parse as a number), raise :class:`ConfigError`.
        """
        as_numpy = not isinstance(lookback, torch.Tensor)
        windows = _real_windows(lookback)
        if windows.ndim != 2 or windows.shape[1] != self.lookback:
            raise ConfigError(f"lookback: expected [N, {self.lookback}], got {tuple(windows.shape)}")
        dtype = torch.float64 if windows.dtype == torch.float64 else torch.float32
        source = windows.device
        chunks = windows.split(self.batch_size) if len(windows) else ()
        parts = [self._predict_chunk(chunk.to(self.device)).to(dtype) for chunk in chunks]
        forecast = torch.cat(parts) if parts else windows.new_zeros(0, self.horizon, dtype=dtype)
        return forecast.cpu().numpy() if as_numpy else forecast.to(source)

    def _predict_chunk(self, windows: torch.Tensor) -> torch.Tensor:
        """float64 ``[B, H]``: the model's forecast of the scaled windows, mapped back in float64 (a model saved
        before the scaling convention, ``input_scaling = "none"``, is scaled around the same way)."""
        (scaled,) = scale_windows(windows)
        return unscale(self.model.forecast_scaled(scaled.float()), windows)

    def forecast(self, series: Array, rolling: bool = False, combine: bool = True) -> np.ndarray:
        """Forecast a raw series in its own units, float64 numpy.

        The next ``horizon`` samples after the series (``[horizon]``), or with ``rolling`` one
        forecast after every complete window (``[len - lookback + 1, horizon]``, row i forecasts
        samples ``i + lookback ...``). With ``combine`` (the default) each row combines the model's
        forecast with the last value, per-window AR and drift, step by step, by their discounted errors at
        that step on the earlier windows of the same series whose value there it has seen
        (:mod:`harmonic_forecast.combination`; a step with no such window, e.g. every step of the first
        window, is the model's forecast); without it each row is the model's forecast of its own window
        alone. A constant window forecasts its constant. The series must be finite and hold at least
        ``lookback`` samples: a NaN or inf anywhere raises :class:`ConfigError` naming its index,
        rather than giving NaN rows as :meth:`predict` does for windows.
        """
        values = check_series(series, self.lookback)
        windows = series_windows(values, self.lookback)
        first = 0  # the first window forecast: all of them when rolling
        if not rolling:  # the last window, and with combine the earlier ones whose errors it weighs
            first = max(0, len(windows) - self.horizon - HISTORY) if combine else len(windows) - 1
        windows = windows[first:]
        forecast = self.predict(np.ascontiguousarray(windows)).astype(np.float64)
        if combine:
            forecasts = np.concatenate([forecast[None], classical_forecasts(windows, self.horizon)])
            weights = combination_weights(windows, forecasts, self.horizon)
            forecast = np.einsum("fnh,fnh->nh", weights, forecasts)
        return forecast if rolling else forecast[-1]


def load_forecaster(path: str | Path | None = None, device: str | torch.device = "cpu") -> HarmonicForecaster:
    """A :class:`HarmonicForecaster` of the model in ``path`` on ``device``.

    ``path`` is a model directory (``config.json`` + ``model.safetensors``), a run directory (its ``model/``)
    or a checkpoint directory; None loads the shipped pretrained model. Its ``predict`` maps ``[N, lookback]``
    windows to ``[N, horizon]`` forecasts in the same units, ``forecast`` a raw 1-D series. A directory
    holding no model, an unreadable or mismatched config or weights, or a device this machine lacks raise a
    one-line :class:`ConfigError`.
    """
    return HarmonicForecaster(Forecaster.from_pretrained(resolve_model_directory(path), device=device), device)
