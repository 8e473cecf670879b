"""Tiny run configs and helpers to run the trainer in-process or as a real subprocess."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY = """
[train]
batch_size = 32
lr = 3e-3
warmup_steps = 3
log_every = 5
checkpoint_every = 5
keep_last = 2
[eval]
every = 4
batches = 1
batch_size = 64
[signal]
lookback = 100
horizon = 10
[model]
kind = "wiener_gru"  # the engine tests' model: the default's network over a skip path 20x cheaper to fit
hidden = 16
encoder_width = 16
[[stages]]
components = [3, 5]
steps = 13
[[stages]]
components = [3, 8]
steps = 7
noise = 0.05
"""


def write_config(directory: Path, text: str = TINY, name: str = "tiny.toml") -> Path:
    """Write a config file and return its path."""
    path = directory / name
    path.write_text(text)
    return path


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
    """Run the CLI under a real ``accelerate launch`` with ``launch/accelerate/<name>.yaml`` or a config path."""
    config = accelerate_config
    if isinstance(accelerate_config, str):
        config = ROOT / "launch" / "accelerate" / f"{accelerate_config}.yaml"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*command, "-m", "harmonic_forecast", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )


LONG_RUN = (
    TINY.replace("steps = 7", "steps = 3000")
    .replace("log_every = 5", "log_every = 1")
    .replace("checkpoint_every = 5", "checkpoint_every = 100000")
)  # TINY that logs every step and checkpoints only when stopped


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
