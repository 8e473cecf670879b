"""Helpers to run the trainer as a real subprocess; the tiny configs come from :mod:`harmonic_forecast.testing`."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from harmonic_forecast.testing import tiny_config, write_config

__all__ = ["tiny_config", "write_config"]  # re-exported for the tests

ROOT = Path(__file__).resolve().parents[1]


def digest(path: Path) -> str:
    """SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digests(directory: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``directory``."""
    return {str(p.relative_to(directory)): digest(p) for p in sorted(directory.rglob("*")) if p.is_file()}


def cli_command(*args: str) -> list[str]:
    """The argv that runs the CLI in a fresh interpreter."""
    return [sys.executable, "-m", "harmonic_forecast", *args]


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI to completion in a subprocess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cli_command(*args), capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def launch(accelerate_config: str | Path, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the CLI under a real ``accelerate launch`` with ``launch/accelerate/<name>.yaml`` or a config path.

    Callers assert the exit status: a process group torn down during interpreter exit aborts a rank
    (SIGABRT), so every launch doubles as a clean-shutdown check.
    """
    config = accelerate_config
    if isinstance(accelerate_config, str):
        config = ROOT / "launch" / "accelerate" / f"{accelerate_config}.yaml"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*command, "-m", "harmonic_forecast", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )


LONG_RUN = tiny_config(
    "stages.1.steps=3000", "train.log_every=1", "train.checkpoint_every=100000"
)  # the tiny config, logging every step and checkpointing only when stopped


def start_training(directory: Path, logged_steps: int, timeout: float = 180) -> subprocess.Popen:
    """Start ``train --config tiny.toml --output-dir out`` in ``directory``; return once it logged ``logged_steps``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        cli_command("train", "--config", "tiny.toml", "--output-dir", "out"),
        cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = directory / "out" / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline and (not metrics.exists() or metrics.read_text().count('"train"') < logged_steps):
        time.sleep(0.05)
    return process
