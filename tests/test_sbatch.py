"""launch/slurm/train.sbatch and its trap without a cluster: fake srun and scontrol, the real trainer.

The fake srun runs its command here, the fake scontrol answers ``show hostnames`` and records
``requeue``, and the fake python drops ``accelerate launch`` and its options, so the job script
runs the real ``python -m harmonic_forecast train`` on the tiny config, as one process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harmonic_forecast.checkpoint import checkpoint_steps
from harmonic_forecast.preemption import EXIT_FILE, PID_FILE, process_start_time
from tests.run_helpers import ROOT, digest, write_config

SBATCH = ROOT / "launch" / "slurm" / "train.sbatch"
SIGNAL_FUNCTIONS = ROOT / "launch" / "slurm" / "trainer_signal.sh"
FAKES = {
    "srun": '#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\nexec "$@"\n',
    "scontrol": '#!/bin/bash\ncase $1 in show) echo localhost ;; requeue) echo "$2" >> "$FAKE_REQUEUES" ;; esac\n',
    "python": f'#!/bin/bash\nwhile [ "$1" != harmonic_forecast ]; do shift; done\nexec {sys.executable} -m "$@"\n',
}


@pytest.fixture
def bystander():
    """A live process that is not a trainer (its PID is what a stale PID file may name)."""
    process = subprocess.Popen(["sleep", "300"])
    yield process
    process.kill()
    process.wait()


def _signal_trainer(pid_file: Path) -> int:
    """Exit status of ``signal_trainer PID_FILE USR1`` from trainer_signal.sh."""
    script = f'source "{SIGNAL_FUNCTIONS}" && signal_trainer "{pid_file}" USR1'
    return subprocess.run(["bash", "-c", script], timeout=30).returncode


def _alive(process: subprocess.Popen, wait: float = 0.5) -> bool:
    time.sleep(wait)
    return process.poll() is None


def test_signal_trainer_signals_only_the_process_the_pid_file_identifies(tmp_path: Path, bystander) -> None:
    pid, start, host = bystander.pid, process_start_time(bystander.pid), socket.gethostname()
    pid_file = tmp_path / PID_FILE
    stale = {
        "PID only (a file in the old format)": f"{pid}\n",
        "another start time (the PID was reused)": f"{pid} {int(start) + 1} {host}\n",
        "another host": f"{pid} {start} {host}-elsewhere\n",
        "garbage": "12 ab\n",
    }
    for case, text in stale.items():
        pid_file.write_text(text)
        assert _signal_trainer(pid_file) != 0, case
        assert _alive(bystander), f"signalled for a PID file with {case}"
    pid_file.unlink()
    assert _signal_trainer(pid_file) != 0
    pid_file.write_text(f"{pid} {start} {host}\n")  # the file names this very process: it gets the signal
    assert _signal_trainer(pid_file) == 0
    assert bystander.wait(timeout=10) == -signal.SIGUSR1


def test_start_time_is_read_past_a_command_name_with_spaces_and_parentheses(tmp_path: Path) -> None:
    odd = tmp_path / "a) b 1 2"
    odd.symlink_to(shutil.which("sleep"))
    process = subprocess.Popen([str(odd), "300"])
    try:
        time.sleep(0.2)
        start = process_start_time(process.pid)
        assert start is not None and start == process_start_time(process.pid)
        assert start != process_start_time(os.getpid())
        (tmp_path / PID_FILE).write_text(f"{process.pid} {start} {socket.gethostname()}\n")
        assert _signal_trainer(tmp_path / PID_FILE) == 0
        assert process.wait(timeout=10) == -signal.SIGUSR1
    finally:
        process.kill()
        process.wait()


def _fake_job(tmp_path: Path, output: Path) -> tuple[subprocess.Popen, Path, Path]:
    """Start train.sbatch with the fakes; returns the batch shell, its log and the requeue record."""
    fakes = tmp_path / "bin"
    fakes.mkdir()
    for name, text in FAKES.items():
        (fakes / name).write_text(text)
        (fakes / name).chmod(0o755)
    log, requeues = tmp_path / "job.out", tmp_path / "requeued"
    env = {
        **os.environ,
        "PATH": f"{fakes}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "FAKE_REQUEUES": str(requeues),
        "SLURM_JOB_ID": "7",
        "SLURM_JOB_NAME": "fake",
        "SLURM_JOB_NODELIST": "localhost",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "CONFIG": str(write_config(tmp_path)),
        "OUTPUT": str(output),
        "PYTHON": str(fakes / "python"),
        "PROCS_PER_NODE": "1",
    }
    with log.open("w") as handle:
        job = subprocess.Popen(["bash", str(SBATCH)], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while "restart 0" not in log.read_text():  # printed once the trap is set
        assert job.poll() is None and time.time() < deadline, log.read_text()
        time.sleep(0.01)
    return job, log, requeues


@pytest.mark.slow  # a real trainer under the job script: about 25 s
def test_early_stop_reaches_the_trainer_once_it_starts_and_a_stale_pid_is_not_signalled(
    tmp_path: Path, bystander
) -> None:
    """USR1 arrives before the trainer has written its PID file; a SIGKILLed attempt's file names the bystander."""
    output = tmp_path / "run"
    output.mkdir()
    (output / PID_FILE).write_text(f"{bystander.pid}\n")
    (output / EXIT_FILE).write_text("0\n")
    job, log, requeues = _fake_job(tmp_path, output)
    job.send_signal(signal.SIGUSR1)
    assert job.wait(timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert _alive(bystander, wait=0), text[-3000:]
    assert "delivered when it has started" in text and "requeueing" in text, text[-3000:]
    assert requeues.read_text() == "7\n"
    assert (output / EXIT_FILE).read_text() == "3\n"
    assert [step for step, _ in checkpoint_steps(output / "checkpoints")] == [1]  # the first step boundary
    assert not (output / PID_FILE).exists()


@pytest.mark.slow  # a real trainer under the job script: about 25 s
def test_a_run_that_finished_is_not_requeued_after_a_stop_request(tmp_path: Path, single: Path) -> None:
    """The stop lands when no step is left to train: the trainer finishes (status 0) and the job ends."""
    output = tmp_path / "run"
    shutil.copytree(single, output)
    job, log, requeues = _fake_job(tmp_path, output)
    job.send_signal(signal.SIGUSR1)
    assert job.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert not requeues.exists(), log.read_text()[-3000:]
    assert (output / EXIT_FILE).read_text() == "0\n"
    assert digest(output / "model" / "model.safetensors") == digest(single / "model" / "model.safetensors")
