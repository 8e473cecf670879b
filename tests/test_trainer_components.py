"""The trainer's components on their own: train state, stop vote, checkpoint compatibility, layering."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from harmonic_forecast.checkpointer import STATE_FILE, read_state
from harmonic_forecast.config import ConfigError, load_run_config
from harmonic_forecast.models import build_model
from harmonic_forecast.preemption import StopRequest, StopVote
from harmonic_forecast.trainer import TrainState, fit_closed_form
from tests.run_helpers import ROOT, write_config


def test_train_state_round_trips_through_its_state_dict() -> None:
    state = TrainState(stage_samples=[0, 0])
    for _ in range(3):
        state.advance(32)
    state.curriculum.advance(3)
    state.advance(32)
    saved = json.loads(json.dumps(state.state_dict()))
    assert saved == {
        "step": 4,
        "samples_seen": 128,
        "stage_samples": [96, 32],
        "curriculum": {"stage": 1, "stage_start": 3},
    }
    again = TrainState(stage_samples=[0, 0])
    again.load_state_dict(saved)
    assert again == state


def test_a_lone_process_stop_vote_reads_its_own_flag() -> None:
    with StopRequest() as stop:
        vote = StopVote(stop, SimpleNamespace(num_processes=1, device="cpu"))
        vote.start()
        assert not vote.agreed()
        StopRequest._handle(0, None)
        vote.start()
        assert vote.agreed()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({}, None),
        ({"stream": {"position": 7}}, "stream position 7 is not step 4 x train.grad_accum 1"),
        ({"run": {"seed": 1, "batch_size": 32, "grad_accum": 1}}, "saved with train.seed = 1"),
    ],
)
def test_read_state_checks_the_run_settings_and_the_stream_position(
    tmp_path: Path, change: dict, message: str | None
) -> None:
    config = load_run_config(write_config(tmp_path))
    build_model(config.model).save_pretrained(tmp_path / "step_4")
    state = {
        "format": 1,
        **TrainState(4, 128, [128, 0]).state_dict(),
        "stream": {"position": 4},
        "wandb_run_id": None,
        "world_size": 1,
        "run": {"seed": 0, "batch_size": 32, "grad_accum": 1},
    }
    (tmp_path / "step_4" / STATE_FILE).write_text(json.dumps(state | change))
    if message is None:
        assert read_state(tmp_path / "step_4", config)["step"] == 4
    else:
        with pytest.raises(ConfigError, match=message):
            read_state(tmp_path / "step_4", config)


def test_components_never_import_the_training_loop_and_preemption_not_torch() -> None:
    code = (
        "import sys\n"
        "import harmonic_forecast.preemption\n"
        "assert 'torch' not in sys.modules\n"
        "import harmonic_forecast.checkpointer, harmonic_forecast.metrics, harmonic_forecast.validation\n"
        "assert 'harmonic_forecast.train' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_models_and_baselines_never_import_the_stream_or_the_layers_above() -> None:
    """config → stream → model → trainer → checkpoint: models and baselines take tensors, their callers the data."""
    package = ROOT / "harmonic_forecast"
    above = {"stream", "train", "trainer", "checkpointer", "checkpoint", "validation", "evaluate", "baseline_fits"}
    forbidden = {f"harmonic_forecast.{name}" for name in above}
    files = [*sorted((package / "models").rglob("*.py")), package / "baselines.py"]
    assert len(files) >= 9
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}: relative import"
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
                assert not (node.module == "harmonic_forecast" and "HarmonicStream" in names[1].split(".")), path
            else:
                continue
            bad = [name for name in names if any(name == f or name.startswith(f"{f}.") for f in forbidden)]
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_closed_form_fit_is_the_same_for_any_thread_count() -> None:
    """A launcher gives each process fewer threads: the fitted parts (and so the run) must not change with it.
    Fitted on two threads, the default model's noise calibration moved by up to 20% against one thread."""
    config = load_run_config(ROOT / "configs" / "quickstart.toml")
    threads, buffers = torch.get_num_threads(), []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            torch.manual_seed(0)
            model = build_model(config.model)
            fit_closed_form(model, config)
            assert torch.get_num_threads() == count  # restored
            buffers.append({name: value.clone() for name, value in model.state_dict().items()})
    finally:
        torch.set_num_threads(threads)
    assert buffers[0].keys() == buffers[1].keys()
    assert all(torch.equal(buffers[0][name], buffers[1][name]) for name in buffers[0])
