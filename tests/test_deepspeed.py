"""DeepSpeed ZeRO-2 and ZeRO-3 through Accelerate, 2 CPU processes (gloo), with real ``accelerate launch``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.run_helpers import ROOT, TINY, run_cli, write_config

pytestmark = pytest.mark.slow


def _launch(stage: int, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    config = ROOT / "launch" / "accelerate" / f"zero{stage}_cpu_2proc.yaml"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*command, "-m", "harmonic_forecast", *args], capture_output=True, text=True, cwd=cwd, timeout=600, env=env
    )


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("single")
    write_config(directory)
    result = run_cli("train", "--config", "tiny.toml", "--output-dir", "run", cwd=directory)
    assert result.returncode == 0, result.stderr[-2000:]
    return directory / "run"


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_trains_like_adamw_and_resumes(tmp_path: Path, single: Path, stage: int) -> None:
    write_config(tmp_path)
    common = ("train", "--config", "tiny.toml", "--output-dir", "run")
    first = _launch(stage, *common, "--max-steps", "10", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = tmp_path / "run" / "checkpoints" / "step_10"
    assert (checkpoint / "model.safetensors").is_file()
    assert list((checkpoint / "deepspeed").glob("*optim_states.pt")), "DeepSpeed wrote no optimizer shards"
    assert json.loads((checkpoint / "trainer_state.json").read_text())["world_size"] == 2
    second = _launch(stage, *common, "--resume", "auto", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    ours, reference = (
        load_file(str(tmp_path / "run" / "model" / "model.safetensors")),
        load_file(str(single / "model" / "model.safetensors")),
    )
    assert ours.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(ours[name], reference[name], atol=2e-5, rtol=1e-4, msg=name)


def test_deepspeed_checkpoint_refuses_a_plain_resume(tmp_path: Path) -> None:
    write_config(tmp_path)
    first = _launch(2, "train", "--config", "tiny.toml", "--output-dir", "run", "--max-steps", "5", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli("train", "--config", "tiny.toml", "--output-dir", "run", "--resume", "auto", cwd=tmp_path)
    assert second.returncode == 2 and "written with DeepSpeed" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1


def test_clean_shutdown_repeatedly(tmp_path: Path) -> None:
    write_config(tmp_path, TINY.replace("steps = 13", "steps = 2").replace("steps = 7", "steps = 2"))
    for attempt in range(3):
        result = _launch(3, "train", "--config", "tiny.toml", "--output-dir", f"run{attempt}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
