"""DeepSpeed ZeRO-2 and ZeRO-3 through Accelerate, 2 CPU processes (gloo), with real ``accelerate launch``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.run_helpers import ROOT, launch, run_cli, tiny_config, tree_digests, write_config

pytestmark = pytest.mark.slow


def _zero3_without_gathered_saving(directory: Path) -> Path:
    """``zero3_cpu_2proc`` answering no to saving 16-bit weights, as ``accelerate config`` often is."""
    yaml = (ROOT / "launch" / "accelerate" / "zero3_cpu_2proc.yaml").read_text()
    assert "zero3_save_16bit_model: true" in yaml
    config = directory / "zero3_nosave.yaml"
    config.write_text(yaml.replace("zero3_save_16bit_model: true", "zero3_save_16bit_model: false"))
    return config


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_trains_like_adamw_and_resumes(tmp_path: Path, single: Path, stage: int) -> None:
    """Train 10 steps, refuse a plain resume, resume under DeepSpeed, end like the 1-process AdamW run.

    ZeRO-2 accumulates 2 micro-batches per step (with 2 processes, the plain run's batch of 32) and must
    step once per trainer step, not once per micro-batch. ZeRO-3 runs with ``zero3_save_16bit_model:
    false``: the trainer needs the gathered weights for model.safetensors, so it turns the option on
    itself instead of failing at the first checkpoint.
    """
    write_config(tmp_path, tiny_config("train.grad_accum=2") if stage == 2 else None)
    accelerate_config = "zero2_cpu_2proc" if stage == 2 else _zero3_without_gathered_saving(tmp_path)
    common = ("train", "--config", "tiny.toml", "--output-dir", "run")
    first = launch(accelerate_config, *common, "--max-steps", "10", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = tmp_path / "run" / "checkpoints" / "step_10"
    assert (checkpoint / "model.safetensors").is_file()
    assert list((checkpoint / "deepspeed").glob("*optim_states.pt")), "DeepSpeed wrote no optimizer shards"
    assert json.loads((checkpoint / "trainer_state.json").read_text())["world_size"] == 2
    if stage == 2:
        assert engine_steps(checkpoint) == (10, 10 * 32)  # not one step per micro-batch
    if stage == 2:  # a DeepSpeed checkpoint refuses a plain resume, in one line, and nothing on disk changes
        before = tree_digests(tmp_path / "run")
        plain = run_cli(*common, "--resume", "auto", cwd=tmp_path)
        assert plain.returncode == 2 and "written with DeepSpeed" in plain.stderr
        assert len(plain.stderr.strip().splitlines()) == 1
        assert tree_digests(tmp_path / "run") == before
    second = launch(accelerate_config, *common, "--resume", "auto", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    _assert_same_weights(tmp_path / "run", single)
    if stage == 2:
        assert engine_steps(tmp_path / "run" / "checkpoints" / "step_20") == (20, 20 * 32)


def engine_steps(checkpoint: Path) -> tuple[int, int]:
    """DeepSpeed's own count of optimizer steps and samples in a checkpoint: one step per trainer step."""
    engine = torch.load(checkpoint / "deepspeed" / "mp_rank_00_model_states.pt", weights_only=False)
    return engine["global_steps"], engine["global_samples"]


def _assert_same_weights(run: Path, reference: Path) -> None:
    ours, theirs = (load_file(str(path / "model" / "model.safetensors")) for path in (run, reference))
    assert ours.keys() == theirs.keys()
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], atol=2e-5, rtol=1e-4, msg=name)


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
