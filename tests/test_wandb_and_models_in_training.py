"""wandb (real, offline) continues the same run on resume; every model kind trains through the loop."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from harmonic_forecast.checkpoint import latest_checkpoint
from harmonic_forecast.models import Forecaster, LSTMForecaster, Seq2SeqGRUForecaster
from harmonic_forecast.train import EXIT_PREEMPTED
from tests.run_helpers import LONG_RUN, run_cli, start_training, tiny_config, write_config

WANDB = {"enabled": True, "mode": "offline", "project": "hf-test"}


@pytest.mark.slow
def test_wandb_offline_run_is_continued_on_resume(tmp_path: Path) -> None:
    write_config(tmp_path, tiny_config(wandb=WANDB))
    first = run_cli("train", "--config", "tiny.toml", "--output-dir", "out", "--max-steps", "10", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    state = json.loads((tmp_path / "out" / "checkpoints" / "step_10" / "trainer_state.json").read_text())
    run_id = state["wandb_run_id"]
    assert isinstance(run_id, str) and run_id
    second = run_cli("train", "--config", "tiny.toml", "--output-dir", "out", "--resume", "auto", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    runs = sorted((tmp_path / "out" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(run.name.endswith(f"-{run_id}") for run in runs)
    assert all(any(run.glob("*.wandb")) for run in runs)
    # wandb gets the validation results too, not only the training scalars (keys as in its run history)
    history = b"".join(path.read_bytes() for run in runs for path in run.glob("*.wandb"))
    assert all(key in history for key in (b"train/loss", b"eval/mse/", b"final/results/"))


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren, ...)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rfind(")") + 2 :].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


@pytest.mark.slow
def test_job_wide_sigterm_that_kills_wandb_still_saves_and_exits_for_requeue(tmp_path: Path) -> None:
    """SLURM signals every process of the job: wandb's service dies with the trainer's stop request."""
    write_config(tmp_path, {**LONG_RUN, "wandb": WANDB})
    process = start_training(tmp_path, logged_steps=20)
    helpers = _descendants(process.pid)
    assert helpers, "wandb started no service process"
    for pid in [process.pid, *helpers]:
        os.kill(pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == EXIT_PREEMPTED, stderr[-3000:]
    assert latest_checkpoint(tmp_path / "out" / "checkpoints") is not None
    assert "Traceback" not in stderr, stderr[-3000:]
    warnings = [line for line in stderr.splitlines() if line.startswith("harmonic-forecast: warning: wandb")]
    assert len(warnings) == 1, stderr[-3000:]  # the telemetry failure, reported once, in one line


@pytest.mark.parametrize(
    ("kind", "hidden", "cls"), [("lstm", 16, LSTMForecaster), ("seq2seq_gru", 8, Seq2SeqGRUForecaster)]
)
def test_earlier_models_train_and_load_by_kind(tmp_path: Path, kind: str, hidden: int, cls: type) -> None:
    write_config(tmp_path, tiny_config(model={"kind": kind, "hidden": hidden, "encoder_width": None}))
    result = run_cli("train", "--config", "tiny.toml", "--output-dir", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    model = Forecaster.from_pretrained(tmp_path / "out" / "model")
    assert isinstance(model, cls) and model.config.kind == kind
    final = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()][-1]
    assert final["kind"] == "final" and final["results"]["(3,5)"]["model"] < 1.0
