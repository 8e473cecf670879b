"""DeepSpeed ZeRO-2 and ZeRO-3 through Accelerate, 2 CPU processes (gloo), with real ``accelerate launch``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.run_helpers import ROOT, launch, run_cli, tiny_config, write_config

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
    write_config(tmp_path, tiny_config("stages.0.steps=2", "stages.1.steps=2"))
    for attempt in range(3):
        result = launch(
            "zero3_cpu_2proc", "train", "--config", "tiny.toml", "--output-dir", f"run{attempt}", cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr[-3000:]


def _assert_same_weights(run: Path, reference: Path) -> None:
    ours, theirs = (load_file(str(path / "model" / "model.safetensors")) for path in (run, reference))
    assert ours.keys() == theirs.keys()
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], atol=2e-5, rtol=1e-4, msg=name)


def test_zero2_gradient_accumulation_takes_one_optimizer_step_per_trainer_step(tmp_path: Path, single: Path) -> None:
    # Accumulating 2 micro-batches on 2 processes is the plain run's batch of 32, stepped once per trainer step.
    write_config(tmp_path, tiny_config("train.grad_accum=2"))
    result = launch("zero2_cpu_2proc", "train", "--config", "tiny.toml", "--output-dir", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    engine = torch.load(
        tmp_path / "run" / "checkpoints" / "step_20" / "deepspeed" / "mp_rank_00_model_states.pt", weights_only=False
    )
    assert (engine["global_steps"], engine["global_samples"]) == (20, 20 * 32)  # not one step per micro-batch
    _assert_same_weights(tmp_path / "run", single)


def test_zero3_config_without_gathered_saving_still_saves(tmp_path: Path, single: Path) -> None:
    # `accelerate config` often answers no to saving 16-bit weights; the trainer needs them gathered for
    # model.safetensors, so it turns the option on itself instead of failing at the first checkpoint.
    yaml = (ROOT / "launch" / "accelerate" / "zero3_cpu_2proc.yaml").read_text()
    assert "zero3_save_16bit_model: true" in yaml
    config = tmp_path / "zero3_nosave.yaml"
    config.write_text(yaml.replace("zero3_save_16bit_model: true", "zero3_save_16bit_model: false"))
    write_config(tmp_path)
    result = launch(config, "train", "--config", "tiny.toml", "--output-dir", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "step_20" / "model.safetensors").is_file()
    _assert_same_weights(tmp_path / "run", single)


@pytest.mark.parametrize("accelerate_config", ["cpu_2proc", "zero2_cpu_2proc"])
def test_batch_not_divisible_by_world_size_is_refused_before_any_file(tmp_path: Path, accelerate_config: str) -> None:
    write_config(tmp_path)
    args = ("train", "--config", "tiny.toml", "--output-dir", "run", "--set", "train.batch_size=33")
    result = launch(accelerate_config, *args, cwd=tmp_path)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("harmonic-forecast: error:")]
    assert ours and all("train.batch_size 33" in line and "train.grad_accum 1" in line for line in ours), ours
    assert all("world size 2" in line for line in ours)
    assert "AssertionError" not in result.stderr and "stream.batch_size" not in result.stderr
    assert not (tmp_path / "run").exists()
