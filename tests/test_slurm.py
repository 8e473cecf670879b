"""A real one-node SLURM cluster: a training job is preempted with USR1, requeues itself and finishes.

Starts munge, slurmctld and slurmd on localhost with launch/slurm/local_cluster.sh (needs root, as
in CI) and stops them afterwards.
"""

from __future__ import annotations

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
ARGS = "--max-steps 240 --set train.batch_size=64 --set train.checkpoint_every=40 --set eval.every=120"
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


def test_preempted_job_requeues_and_ends_like_an_uninterrupted_run(cluster, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    reference = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "launch/accelerate/cpu_2proc.yaml",
         "-m", "harmonic_forecast", "train", "--config", "configs/quickstart.toml",
         "--output-dir", str(tmp_path / "reference"), *ARGS.split()],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr[-3000:]

    output = tmp_path / "slurm"
    exports = {
        "CONFIG": "configs/quickstart.toml",
        "OUTPUT": str(output),
        "ACCELERATE_CONFIG": "launch/accelerate/cpu_2proc.yaml",
        "PROCS_PER_NODE": "2",
        "MAIN_PORT": "29531",
        "PYTHON": sys.executable,
        "EXTRA_ARGS": ARGS,
    }
    log = tmp_path / "job.out"
    job = subprocess.run(
        ["sbatch", "--parsable", f"--output={log}", "--cpus-per-task=2", "launch/slurm/train.sbatch"],
        cwd=ROOT, env={**env, **exports}, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip

    first_checkpoint = output / "checkpoints" / "step_40"
    _wait_for(first_checkpoint.exists, 600, "the first checkpoint")
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True)
    _wait_for(lambda: _job_field(job, "JobState") in ("COMPLETED", "FAILED", "CANCELLED"), 900, "the job")

    text = log.read_text()
    assert _job_field(job, "JobState") == "COMPLETED", text[-3000:]
    assert _job_field(job, "Restarts") == "1"
    assert "restart 0" in text and "restart 1" in text and "requeueing" in text
    resumes = [line for line in (output / "metrics.jsonl").read_text().splitlines() if '"resume"' in line]
    assert len(resumes) == 1
    ours = load_file(str(output / "model" / "model.safetensors"))
    theirs = load_file(str(tmp_path / "reference" / "model" / "model.safetensors"))
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)
