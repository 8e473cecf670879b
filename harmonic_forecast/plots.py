"""Headless figures (matplotlib's Agg canvas, never a window): forecasts, error by horizon step, training curves.

Every function writes one PNG and returns its path. :func:`plot_forecasts` redraws the seed
notebook's ``plot_signal_and_fft`` per example and overlays the forecasters' forecasts.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from harmonic_forecast.arrays import real_tensor
from harmonic_forecast.errors import ConfigError, require_int
from harmonic_forecast.spectral import harmonics, reconstruct

DPI = 100
SIGNAL_COLOR = "black"
DFT_COLOR = "tab:orange"
FORECAST_COLORS = ("tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
PEAKS_LABELLED = 3


def _save(figure: Figure, path: str | Path) -> Path:
    """Render ``figure`` with the Agg canvas to the PNG ``path`` (parents created) and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure).print_png(path)
    return path


def _color(index: int) -> str:
    """The line colour of the ``index``-th forecaster or band (the DFT reconstruction keeps orange)."""
    return FORECAST_COLORS[index % len(FORECAST_COLORS)]


def _log_y(axes: Axes) -> None:
    """Log y (call after plotting); spans under a decade get plain tick labels instead of ``2.95 x 10^-1``."""
    axes.set_yscale("log")
    low, high = axes.get_ylim()
    if math.log10(high / low) < 1:
        plain = ticker.FormatStrFormatter("%.3g")
        axes.yaxis.set_major_formatter(plain)
        axes.yaxis.set_minor_formatter(plain)


def _spectral_peaks(amplitude: Tensor, count: int) -> list[int]:
    """Indices of the ``count`` largest local maxima of ``amplitude`` (a leaking peak's shoulders are not peaks)."""
    padded = torch.nn.functional.pad(amplitude[None], (1, 1), value=-math.inf)[0]
    is_peak = (amplitude >= padded[:-2]) & (amplitude > padded[2:])
    peaks = is_peak.nonzero().flatten()
    return peaks[amplitude[peaks].argsort(descending=True)[:count]].tolist()


def plot_forecasts(
    lookback: Tensor | np.ndarray,
    target: Tensor | np.ndarray,
    forecasts: dict[str, Tensor | np.ndarray],
    path: str | Path,
    count: int = 4,
    title: str = "Forecasts and DFT harmonics of the lookback",
) -> Path:
    """The seed's signal-and-DFT figure for the first ``count`` rows, with each forecaster's forecast.

    ``lookback`` is ``[N, L]``, ``target`` and every forecast ``[N, H]``, tensors or numpy arrays. Per row: the
    signal with the lookback shaded, the forecasts over the horizon and the lookback's DFT reconstruction carried on
    over the horizon; then the lookback's amplitude spectrum against frequency and against period.
    """
    lookback, target = real_tensor(lookback, "plot_forecasts: lookback"), real_tensor(target, "plot_forecasts: target")
    forecasts = {name: real_tensor(values, f"plot_forecasts: forecast {name!r}") for name, values in forecasts.items()}
    if lookback.dim() != 2 or target.dim() != 2 or lookback.shape[0] != target.shape[0]:
        raise ConfigError(
            f"plot_forecasts: expected lookback [N, L] and target [N, H], got {tuple(lookback.shape)} "
            f"and {tuple(target.shape)}"
        )
    for name, forecast in forecasts.items():
        if forecast.shape != target.shape:
            raise ConfigError(
                f"plot_forecasts: forecast {name!r} has shape {tuple(forecast.shape)}, target {tuple(target.shape)}"
            )
    rows = min(require_int("count", count, minimum=1), lookback.shape[0])
    lookback = lookback[:rows].detach().cpu().double()
    target = target[:rows].detach().cpu().double()
    window, horizon = lookback.shape[1], target.shape[1]
    spectrum = harmonics(lookback)
    extension = reconstruct(spectrum, window + horizon)
    steps = torch.arange(window + horizon)
    frequency, period = spectrum.frequency[1:], spectrum.period[1:]  # DC has no place on a log axis

    figure = Figure(figsize=(18, 3.2 * rows + 1), dpi=DPI, layout="constrained")
    figure.suptitle(title)
    axes = figure.subplots(rows, 3, squeeze=False, width_ratios=(2.2, 1, 1))
    for row, (signal_axes, frequency_axes, period_axes) in enumerate(axes):
        signal_axes.axvspan(-0.5, window - 0.5, color="grey", alpha=0.25, label=f"lookback ({window} samples)")
        signal_axes.plot(steps, torch.cat([lookback[row], target[row]]), color=SIGNAL_COLOR, lw=1.2, label="signal")
        signal_axes.plot(steps, extension[row], "--", color=DFT_COLOR, lw=1.2, label="DFT reconstruction")
        for index, (name, forecast) in enumerate(forecasts.items()):
            values = forecast[row].detach().cpu().double()
            signal_axes.plot(steps[window:], values, "o-", ms=3, lw=1.2, color=_color(index), label=name)
        signal_axes.set(title=f"Signal (example {row})", xlabel="t [samples]", ylabel="value")

        amplitude = spectrum.amplitude[row, 1:]
        frequency_axes.plot(frequency, amplitude, ".-", color=SIGNAL_COLOR, lw=1)
        frequency_axes.set(xscale="log", title="Amplitudes", xlabel="frequency [1/samples]", ylabel="amplitude")
        period_axes.plot(period, amplitude, ".-", color=SIGNAL_COLOR, lw=1)
        period_axes.set(xscale="log", title="Amplitudes by period", xlabel="T [samples]", ylabel="amplitude")
        period_axes.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        for peak in _spectral_peaks(amplitude, PEAKS_LABELLED):
            period_axes.annotate(
                f"{period[peak]:.3g}",
                (float(period[peak]), float(amplitude[peak])),
                textcoords="offset points",
                xytext=(0, 4),
                ha="center",
                fontsize=8,
            )
        for spectrum_axes in (frequency_axes, period_axes):
            spectrum_axes.grid(alpha=0.3, which="both")
            spectrum_axes.margins(y=0.12)  # room for the peak labels
    figure.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=3 + len(forecasts))
    return _save(figure, path)


def plot_error_by_step(
    per_step: dict[str, dict[str, Sequence[float]]],
    path: str | Path,
    title: str = "MSE by horizon step",
) -> Path:
    """MSE against horizon step: one panel per band, one line per forecaster, log y.

    ``per_step`` maps band to forecaster to per-step MSE, as in the metrics file's ``final`` record.
    """
    if not per_step or not all(per_step.values()):
        raise ConfigError("plot_error_by_step: per_step needs at least one band with at least one forecaster")
    names = list(dict.fromkeys(name for errors in per_step.values() for name in errors))
    figure = Figure(figsize=(min(4.5 * len(per_step), 18) + 1, 4), dpi=DPI, layout="constrained")
    figure.suptitle(title)
    axes = figure.subplots(1, len(per_step), squeeze=False, sharey=True)[0]
    for band_axes, (band, errors) in zip(axes, per_step.items(), strict=True):
        for name, values in errors.items():
            steps = range(1, len(values) + 1)
            band_axes.plot(steps, values, "o-", ms=3, color=_color(names.index(name)), label=name)
        band_axes.set(title=f"components {band}", xlabel="horizon step")
        _log_y(band_axes)
        band_axes.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("MSE")
    axes[0].legend()
    return _save(figure, path)


def plot_series_forecasts(
    examples: dict[str, tuple[Any, Any, dict[str, Any]]],
    path: str | Path,
    title: str = "Forecasts on real series",
) -> Path:
    """A grid: one row per series, one panel per example window, each forecaster's forecast over the target.

    ``examples`` maps a series name to (lookback ``[n, L]``, target ``[n, H]``, {forecaster: forecast ``[n, H]``}),
    arrays in the series' own units (as :func:`harmonic_forecast.real_suite.evaluate_real` returns them).
    """
    if not examples:
        raise ConfigError("plot_series_forecasts: no series to plot")
    columns = max(len(lookback) for lookback, _, _ in examples.values())
    names = list(dict.fromkeys(name for _, _, forecasts in examples.values() for name in forecasts))
    figure = Figure(figsize=(5 * columns, 2.4 * len(examples) + 1), dpi=DPI, layout="constrained")
    figure.suptitle(title)
    axes = figure.subplots(len(examples), columns, squeeze=False)
    for row, (series, (lookback, target, forecasts)) in enumerate(examples.items()):
        for column in range(columns):
            panel = axes[row, column]
            if column >= len(lookback):
                panel.set_axis_off()
                continue
            window, horizon = len(lookback[column]), len(target[column])
            steps = torch.arange(window + horizon)
            history = torch.cat([torch.as_tensor(lookback[column]), torch.as_tensor(target[column])])
            panel.axvspan(-0.5, window - 0.5, color="grey", alpha=0.2)
            panel.plot(steps, history, color=SIGNAL_COLOR, lw=1, label="series")
            for name, forecast in forecasts.items():
                values = torch.as_tensor(forecast[column])
                panel.plot(steps[window:], values, "o-", ms=2, lw=1, color=_color(names.index(name)), label=name)
            panel.set_xlim(window - 3 * horizon, window + horizon)
            panel.set_title(f"{series}, window {column}", fontsize=9)
    figure.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=1 + len(names))
    return _save(figure, path)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file, in order; :class:`ConfigError` if unreadable, empty or not JSON."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read metrics ({error.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: metrics file is not text") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}:{number}: invalid JSON ({error.msg})") from None
        if not isinstance(record, dict) or "kind" not in record:
            raise ConfigError(f"{path}:{number}: expected a JSON object with a 'kind'")
        records.append(record)
    if not records:
        raise ConfigError(f"{path}: metrics file is empty")
    return records


def _by_step(records: list[dict[str, Any]], kind: str, fields: tuple[str, ...], path: Path) -> list[dict[str, Any]]:
    """The ``kind`` records sorted by step; a record logged again after a resume replaces the earlier one."""
    latest: dict[int, dict[str, Any]] = {}
    for record in records:
        if record["kind"] != kind:
            continue
        missing = [field for field in ("step", *fields) if field not in record]
        if missing:
            raise ConfigError(f"{path}: {kind} record at step {record.get('step')} lacks {missing[0]!r}")
        latest[record["step"]] = record
    return [latest[step] for step in sorted(latest)]


def _mark_stages(axes: Axes, boundaries: list[tuple[int, int]], label: bool) -> None:
    """Dotted vertical lines where a new stage starts, named (1-based, as on the console) when ``label``."""
    for step, stage in boundaries:
        axes.axvline(step, color="grey", ls=":", lw=1)
        if label:
            axes.annotate(
                f"stage {stage + 1}",
                (step, 1),
                xycoords=("data", "axes fraction"),
                textcoords="offset points",
                xytext=(3, -12),
                fontsize=8,
                color="grey",
            )


def validation_curves(records: list[dict[str, Any]], path: Path) -> dict[str, list[tuple[int, float]]]:
    """Band -> ``(step, model MSE)`` of the ``eval`` records and the ``final`` one, by step (``path`` names the
    file in errors)."""
    evals = _by_step(records, "eval", ("mse",), path)
    evals += [
        {"step": record["step"], "mse": {band: scores["model"] for band, scores in record["results"].items()}}
        for record in _by_step(records, "final", ("results",), path)
    ]
    curves: dict[str, list[tuple[int, float]]] = {}
    for record in evals:
        for band, mse in record["mse"].items():
            curves.setdefault(band, []).append((record["step"], mse))
    return curves


def plot_training_curves(metrics_path: str | Path, path: str | Path, title: str | None = None) -> Path:
    """Training loss, validation MSE per band and learning rate against step, from a ``metrics.jsonl``.

    Stage boundaries are drawn after the last step logged in the previous stage. Raises
    :class:`ConfigError` if the file is unreadable, empty or holds no train records.
    """
    metrics_path = Path(metrics_path)
    records = read_metrics(metrics_path)
    train = _by_step(records, "train", ("stage", "loss", "lr"), metrics_path)
    if not train:
        raise ConfigError(f"{metrics_path}: no train records")
    curves = validation_curves(records, metrics_path)
    steps = [record["step"] for record in train]
    boundaries = [
        (previous["step"], record["stage"])
        for previous, record in itertools.pairwise(train)
        if record["stage"] != previous["stage"]
    ]

    figure = Figure(figsize=(11, 9), dpi=DPI, layout="constrained")
    figure.suptitle(title or f"Training curves: {metrics_path.parent.name or metrics_path.name}")
    loss_axes, eval_axes, lr_axes = figure.subplots(3, 1, sharex=True, height_ratios=(3, 3, 1.6))
    loss_axes.plot(steps, [record["loss"] for record in train], color="tab:blue", lw=1.2)
    loss_axes.set(title="Training loss", ylabel="loss")
    _log_y(loss_axes)

    bands = list(curves)
    for index, (band, points) in enumerate(curves.items()):
        eval_axes.plot(*zip(*points, strict=True), "o-", ms=3, color=_color(index), label=f"components {band}")
    eval_axes.set(title="Validation MSE (model)", ylabel="MSE")
    if bands:
        _log_y(eval_axes)
        eval_axes.legend(fontsize=8, ncols=math.ceil(len(bands) / 4))
    else:
        eval_axes.set(yticks=[])
        eval_axes.text(0.5, 0.5, "no eval records", transform=eval_axes.transAxes, ha="center", color="grey")

    lr_axes.plot(steps, [record["lr"] for record in train], color="tab:red", lw=1.2)
    lr_axes.set(title="Learning rate", xlabel="step", ylabel="lr")
    lr_axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    for axes in (loss_axes, eval_axes, lr_axes):
        axes.grid(alpha=0.3, which="both")
        _mark_stages(axes, boundaries, label=axes is loss_axes)
    return _save(figure, path)
