"""The figures are written headless as readable PNGs from a real batch, an untrained model and real metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from matplotlib.image import imread

from harmonic_forecast import HarmonicStream, SignalSpec
from harmonic_forecast.config import parse_run_config
from harmonic_forecast.errors import ConfigError
from harmonic_forecast.models import SparseGRUConfig, build_model
from harmonic_forecast.plots import (
    plot_error_by_step,
    plot_forecasts,
    plot_training_curves,
    read_metrics,
    validation_curves,
)
from harmonic_forecast.spectral import dft_forecast
from harmonic_forecast.train import train

RUN = {
    "train": {"batch_size": 32, "log_every": 2, "checkpoint_every": 1000, "warmup_steps": 2},
    "eval": {"every": 4, "batches": 1, "batch_size": 64},
    "model": {"hidden": 16, "encoder_width": 16},
    "stages": [{"components": [3, 5], "steps": 6}, {"components": [3, 8], "steps": 6}],
}


def assert_png(path: Path, min_height: int, min_width: int) -> None:
    """``path`` is a non-trivial PNG of at least ``min_height`` x ``min_width`` RGB(A) pixels."""
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] >= min_height and image.shape[1] >= min_width
    assert image.std() > 0.01  # not a blank canvas


@pytest.fixture(scope="module")
def metrics(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The metrics.jsonl of a tiny two-stage training run."""
    output = tmp_path_factory.mktemp("plots") / "run"
    train(parse_run_config(RUN), output)
    return output / "metrics.jsonl"


def test_plot_forecasts(tmp_path: Path) -> None:
    lookback, target = HarmonicStream(SignalSpec(components=(3, 10)), batch_size=8, seed=0, split="test").batch(0)
    torch.manual_seed(0)
    model = build_model(SparseGRUConfig()).eval()
    with torch.no_grad():
        forecasts = {"model": model(lookback), "naive": lookback[:, -1:].expand_as(target)}
    path = plot_forecasts(lookback, target, forecasts, tmp_path / "figures" / "forecasts.png", count=3)
    assert path == tmp_path / "figures" / "forecasts.png"
    assert_png(path, min_height=800, min_width=1400)
    as_numpy = {name: forecast.numpy() for name, forecast in forecasts.items()}  # as predict returns for numpy
    assert_png(
        plot_forecasts(lookback.numpy(), target.numpy(), as_numpy, tmp_path / "np.png"), min_height=800, min_width=1400
    )


def test_plot_forecasts_count_capped_and_shapes_checked(tmp_path: Path) -> None:
    lookback, target = HarmonicStream(SignalSpec(components=(3, 10)), batch_size=2, seed=1, split="test").batch(0)
    assert_png(plot_forecasts(lookback, target, {}, tmp_path / "two.png", count=10), min_height=600, min_width=1400)
    with pytest.raises(ConfigError, match="forecast 'dft'"):
        plot_forecasts(lookback, target, {"dft": dft_forecast(lookback, 5)}, tmp_path / "bad.png")
    with pytest.raises(ConfigError, match="lookback"):
        plot_forecasts(lookback[0], target[0], {}, tmp_path / "bad.png")


def test_plot_error_by_step(tmp_path: Path, metrics: Path) -> None:
    final = [record for record in read_metrics(metrics) if record["kind"] == "final"]
    assert len(final) == 1
    per_step = final[0]["per_step"]
    assert set(per_step) == {"(3,5)", "(3,8)"} and set(per_step["(3,5)"]) == {"model", "naive", "dft"}
    assert_png(plot_error_by_step(per_step, tmp_path / "error.png"), min_height=300, min_width=800)
    with pytest.raises(ConfigError, match="per_step"):
        plot_error_by_step({}, tmp_path / "empty.png")


def test_plot_training_curves(tmp_path: Path, metrics: Path) -> None:
    records = read_metrics(metrics)
    assert {"train", "eval", "final"} <= {record["kind"] for record in records}
    assert_png(plot_training_curves(metrics, tmp_path / "curves.png"), min_height=800, min_width=1000)
    curves = validation_curves(records, metrics)  # the validation panel: from step 0 to the final evaluation
    (final,) = [record for record in records if record["kind"] == "final"]
    for band, points in curves.items():
        assert points[0][0] == 0 and points[-1] == (final["step"], final["results"][band]["model"])


def train_record(step: int, stage: int, loss: float) -> dict[str, object]:
    return {"kind": "train", "time": 0.0, "step": step, "stage": stage, "loss": loss, "lr": 1e-3, "samples_per_s": 1.0}


def test_plot_training_curves_resumed_and_without_eval(tmp_path: Path) -> None:
    records = [train_record(step, int(step > 20), 1 / step) for step in range(2, 41, 2)]
    records.insert(12, {"kind": "resume", "time": 0.0, "step": 20, "path": "checkpoints/step_20"})
    records.append(train_record(22, 1, 0.04))  # logged again after the resume: replaces the first step 22
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(record) + "\n" for record in records))
    assert_png(plot_training_curves(metrics, tmp_path / "curves.png"), min_height=800, min_width=1000)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read metrics"),
        ("", "metrics file is empty"),
        ("\n\n", "metrics file is empty"),
        ('{"kind": "train", "step": 1\n', "invalid JSON"),
        ("[1, 2]\n", "with a 'kind'"),
        ('{"kind": "eval", "step": 4, "mse": {"(3,5)": 0.5}}\n', "no train records"),
        ('{"kind": "train", "step": 2, "stage": 0, "loss": 0.5}\n', "lacks 'lr'"),
    ],
)
def test_plot_training_curves_bad_metrics(tmp_path: Path, content: str | None, message: str) -> None:
    metrics = tmp_path / "metrics.jsonl"
    if content is not None:
        metrics.write_text(content)
    with pytest.raises(ConfigError, match=message) as error:
        plot_training_curves(metrics, tmp_path / "curves.png")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "curves.png").exists()
