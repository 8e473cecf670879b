"""Shared test settings and fixtures."""

import os
from pathlib import Path

import pytest
import torch

from tests.run_helpers import run_cli, write_config

# Two threads alone; under pytest-xdist (make test runs two workers) the cores are shared among the workers.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture(scope="session")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny config trained to the end by one process (the reference for multi-process runs)."""
    directory = tmp_path_factory.mktemp("single")
    write_config(directory)
    result = run_cli("train", "--config", "tiny.toml", "--output-dir", "run", cwd=directory)
    assert result.returncode == 0, result.stderr[-2000:]
    return directory / "run"
