"""Real multi-process training with ``accelerate launch`` (2 CPU processes, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from harmonic_forecast.train import EXIT_DIVERGED
from tests.run_helpers import ROOT, launch, run_cli, write_config

pytestmark = pytest.mark.slow


def _records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["kind"] == kind]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def _assert_close_weights(a: Path, b: Path, atol: float = 2e-5) -> None:
    first, second = _weights(a), _weights(b)
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], atol=atol, rtol=1e-4, msg=name)


def test_two_processes_follow_the_one_process_loss_curve(tmp_path: Path, single: Path) -> None:
    write_config(tmp_path)
    result = launch("cpu_2proc", "train", "--config", "tiny.toml", "--output-dir", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = _records(single, "train"), _records(tmp_path / "run", "train")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [5, 10, 15, 20]
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6)
    print("samples/s 1 process:", [round(r["samples_per_s"]) for r in one])
    print("samples/s 2 processes:", [round(r["samples_per_s"]) for r in two])
    _assert_close_weights(single, tmp_path / "run")
    final_one, final_two = _records(single, "final")[0], _records(tmp_path / "run", "final")[0]
    for band, values in final_one["results"].items():
        assert final_two["results"][band]["naive"] == pytest.approx(values["naive"], rel=1e-6)
        assert final_two["results"][band]["model"] == pytest.approx(values["model"], rel=1e-3)


@pytest.mark.parametrize("first, second", [("two", "one"), ("one", "two")])
def test_resume_on_another_world_size(tmp_path: Path, single: Path, first: str, second: str) -> None:
    write_config(tmp_path)
    legs = {
        "one": lambda *args: run_cli(*args, cwd=tmp_path),
        "two": lambda *args: launch("cpu_2proc", *args, cwd=tmp_path),
    }
    common = ("train", "--config", "tiny.toml", "--output-dir", "run")
    result = legs[first](*common, "--max-steps", "10")
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((tmp_path / "run" / "checkpoints" / "step_10" / "trainer_state.json").read_text())
    assert state["world_size"] == (2 if first == "two" else 1)
    result = legs[second](*common, "--resume", "auto")
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = _records(tmp_path / "run", "train")
    assert [r["step"] for r in resumed] == [5, 10, 15, 20]
    _assert_close_weights(single, tmp_path / "run")


@pytest.mark.parametrize("processes", [1, 2])
def test_a_nan_window_on_one_rank_is_reported_as_divergence(tmp_path: Path, processes: int) -> None:
    """One poisoned window (rank 1 of 2, or the only rank) stops every rank with the divergence error, no hang."""
    write_config(tmp_path)
    script = ROOT / "tests" / "scripts" / "nan_window_on_one_rank.py"
    args = (str(script), "3", "32", "train", "--config", "tiny.toml", "--output-dir", "run")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if processes == 1:
        command = [sys.executable, *args]
    else:
        config = ROOT / "launch" / "accelerate" / "cpu_2proc.yaml"
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert result.returncode == (EXIT_DIVERGED if processes == 1 else 1), result.stderr[-3000:]
    diverged = [line for line in result.stderr.splitlines() if "training diverged" in line]
    assert len(diverged) == processes, result.stderr[-3000:]  # every rank says it, none hangs or crashes
    assert "IndexError" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # step 3 < the first checkpoint at step 5
