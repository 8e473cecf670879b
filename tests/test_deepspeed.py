"""DeepSpeed ZeRO-2 and ZeRO-3 through Accelerate, 2 CPU processes (gloo), with real ``accelerate launch``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.run_helpers import TINY, launch, run_cli, write_config

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_trains_like_adamw_and_resumes(tmp_path: Path, single: Path, stage: int) -> None:
    write_config(tmp_path)
    common = ("train", "--config", "tiny.toml", "--output-dir", "run")
    first = launch(f"zero{stage}_cpu_2proc", *common, "--max-steps", "10", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = tmp_path / "run" / "checkpoints" / "step_10"
    assert (checkpoint / "model.safetensors").is_file()
    assert list((checkpoint / "deepspeed").glob("*optim_states.pt")), "DeepSpeed wrote no optimizer shards"
    assert json.loads((checkpoint / "trainer_state.json").read_text())["world_size"] == 2
    second = launch(f"zero{stage}_cpu_2proc", *common, "--resume", "auto", cwd=tmp_path)
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
    first = launch(
        "zero2_cpu_2proc", "train", "--config", "tiny.toml", "--output-dir", "run", "--max-steps", "5", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli("train", "--config", "tiny.toml", "--output-dir", "run", "--resume", "auto", cwd=tmp_path)
    assert second.returncode == 2 and "written with DeepSpeed" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1


def test_clean_shutdown_repeatedly(tmp_path: Path) -> None:
    write_config(tmp_path, TINY.replace("steps = 13", "steps = 2").replace("steps = 7", "steps = 2"))
    for attempt in range(3):
        result = launch(
            "zero3_cpu_2proc", "train", "--config", "tiny.toml", "--output-dir", f"run{attempt}", cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr[-3000:]
