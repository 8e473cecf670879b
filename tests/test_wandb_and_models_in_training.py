"""wandb (real, offline) continues the same run on resume; every model kind trains through the loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harmonic_forecast.model import Forecaster, LSTMForecaster, Seq2SeqGRUForecaster
from tests.run_helpers import TINY, run_cli, write_config


@pytest.mark.slow
def test_wandb_offline_run_is_continued_on_resume(tmp_path: Path) -> None:
    write_config(tmp_path, TINY + '\n[wandb]\nenabled = true\nmode = "offline"\nproject = "hf-test"\n')
    first = run_cli("train", "--config", "tiny.toml", "--output-dir", "out", "--max-steps", "10", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    state = json.loads((tmp_path / "out" / "checkpoints" / "step_10" / "trainer_state.json").read_text())
    run_id = state["wandb_run_id"]
    assert isinstance(run_id, str) and run_id
    second = run_cli("train", "--config", "tiny.toml", "--output-dir", "out", "--resume", "auto", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    runs = sorted((tmp_path / "out" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(run.name.endswith(f"-{run_id}") for run in runs)
    assert all(any(run.glob("*.wandb")) for run in runs)


@pytest.mark.parametrize(
    ("kind", "hidden", "cls"), [("lstm", 16, LSTMForecaster), ("seq2seq_gru", 8, Seq2SeqGRUForecaster)]
)
def test_earlier_models_train_and_load_by_kind(tmp_path: Path, kind: str, hidden: int, cls: type) -> None:
    text = TINY.replace('kind = "wiener_gru"', f'kind = "{kind}"')
    text = text.replace("hidden = 16\nencoder_width = 16", f"hidden = {hidden}")
    write_config(tmp_path, text)
    result = run_cli("train", "--config", "tiny.toml", "--output-dir", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    model = Forecaster.from_pretrained(tmp_path / "out" / "model")
    assert isinstance(model, cls) and model.config.kind == kind
    final = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()][-1]
    assert final["kind"] == "final" and final["results"]["(3,5)"]["model"] < 1.0
