"""A real one-node SLURM cluster: a training job is preempted with USR1, requeues itself and finishes.

The stop comes once the job has trained a while, or as soon as its script runs (before the trainer has started).

Starts munge, slurmctld and slurmd on localhost with launch/slurm/local_cluster.sh (needs root, as
in CI) and stops them afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.run_helpers import ROOT

CLUSTER = ROOT / "launch" / "slurm" / "local_cluster.sh"
ARGS = (  # the quickstart config, small: the job script and the requeue are under test, not the model
    "--max-steps 120 --set train.batch_size=64 --set train.checkpoint_every=30 --set eval.every=60 "
    "--set eval.batches=1 --set eval.batch_size=256 --set model.hidden=32 --set model.encoder_width=32"
)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    subprocess.run(["bash", str(CLUSTER), "start"], check=True, timeout=600)
    yield
    subprocess.run(["bash", str(CLUSTER), "stop"], check=False, timeout=120)


def _job_field(job: str, field: str) -> str:
    text = subprocess.run(["scontrol", "show", "job", job, "-o"], capture_output=True, text=True).stdout
    match = re.search(rf"\b{field}=(\S+)", text)
    return match.group(1) if match else ""


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run trained without interruption, by the same two processes: the model a preempted job must end with."""
    output = tmp_path_factory.mktemp("reference") / "run"
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "launch/accelerate/cpu_2proc.yaml",
         "-m", "harmonic_forecast", "train", "--config", "configs/quickstart.toml", "--output-dir", str(output),
         *ARGS.split()],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return output


def _submit(tmp_path: Path, port: str) -> tuple[str, Path, Path]:
    """Submit train.sbatch (two CPU processes); returns the job id, its run directory and its log."""
    output, log = tmp_path / "slurm", tmp_path / "job.out"
    exports = {
        "CONFIG": "configs/quickstart.toml",
        "OUTPUT": str(output),
        "ACCELERATE_CONFIG": "launch/accelerate/cpu_2proc.yaml",
        "PROCS_PER_NODE": "2",
        "MAIN_PORT": port,
        "PYTHON": sys.executable,
        "EXTRA_ARGS": ARGS,
    }
    job = subprocess.run(
        ["sbatch", "--parsable", f"--output={log}", "--cpus-per-task=2", "launch/slurm/train.sbatch"],
        cwd=ROOT, env={**ENV, **exports}, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    return job, output, log


def _ends_like_the_reference(job: str, output: Path, log: Path, reference: Path, restarts: int) -> list[int]:
    """Check that the job completed after ``restarts`` requeues with the reference model; returns the resumed steps."""
    _wait_for(lambda: _job_field(job, "JobState") in ("COMPLETED", "FAILED", "CANCELLED"), 900, "the job")
    text = log.read_text()
    assert _job_field(job, "JobState") == "COMPLETED", text[-3000:]
    assert _job_field(job, "Restarts") == str(restarts)
    assert all(f"restart {count}" in text for count in range(restarts + 1)) and "requeueing" in text
    resumes = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines() if '"resume"' in line]
    assert len(resumes) == restarts
    ours = load_file(str(output / "model" / "model.safetensors"))
    theirs = load_file(str(reference / "model" / "model.safetensors"))
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)
    return [int(Path(resume["checkpoint"]).name.removeprefix("step_")) for resume in resumes]


def test_job_stopped_as_it_starts_and_mid_run_requeues_and_ends_like_an_uninterrupted_run(
    cluster, reference: Path, tmp_path: Path
) -> None:
    """USR1 first arrives before the trainer has written its PID file (the first step boundary saves),
    then mid-run after a periodic checkpoint; each time the job requeues, and it ends with the reference's model."""
    job, output, log = _submit(tmp_path, "29531")
    _wait_for(lambda: log.exists() and "restart 0" in log.read_text(), 600, "the job script to start")
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True)
    _wait_for(lambda: "restart 1" in log.read_text(), 600, "the first requeue")
    _wait_for((output / "checkpoints" / "step_30").exists, 600, "a periodic checkpoint after the requeue")
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True)
    first, second = _ends_like_the_reference(job, output, log, reference, restarts=2)
    assert first < 30 <= second  # the early stop saved before the first periodic checkpoint
    assert "the stop will be delivered when it has started" in log.read_text()
