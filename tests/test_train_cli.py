"""The train command end to end on a tiny config, and its one-line errors for bad configs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harmonic_forecast import ConfigError
from harmonic_forecast.cli import main
from harmonic_forecast.config import load_run_config
from harmonic_forecast.models import ResidualGRUForecaster, SeedGRUForecaster
from harmonic_forecast.testing import tiny_config, write_config

ROOT = Path(__file__).resolve().parents[1]
CLI_RUN = tiny_config(
    train={"batch_size": 64, "warmup_steps": 5, "log_every": 10, "checkpoint_every": None, "keep_last": None},
    eval={"every": 20, "batch_size": 256},
    model={"kind": "seed_gru", "hidden": 32, "encoder_width": 32},
    stages=[{"components": [3, 5], "steps": 30}, {"components": [3, 8], "steps": 30, "noise": 0.05}],
)


INVALID_TOML = "[signal]\nlookback = 100\n[[[\n"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harmonic_forecast", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.parametrize("name", ["quickstart", "forecast_cpu", "forecast_gpu", "seed_45", "families_example"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = load_run_config(ROOT / "configs" / f"{name}.toml")
    assert config.model.kind == {"seed_45": "seed_gru", "families_example": "sparse_gru"}.get(name, "expert_gru")
    if name == "families_example":
        first, last = (config.stage_spec(stage) for stage in config.stages)
        assert [stop - start for start, stop, _ in first.members] == [4, 1, 2, 1, 1, 1]
        assert [member.noise_kind for *_, member in last.members] == ["gaussian", "laplace"]
    elif name != "seed_45":
        assert config.signal.noise_levels == (0.0, 0.001, 0.01, 0.03, 0.1, 0.3)
        assert config.stages[-1].lr < config.stages[0].lr  # the low-rate final phase


def test_train_runs_the_curriculum_and_saves_a_loadable_model(tmp_path: Path) -> None:
    write_config(tmp_path, CLI_RUN)
    result = _cli("train", "--config", "tiny.toml", "--output-dir", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [10, 20, 30, 40, 50, 60]
    assert {r["stage"] for r in train} == {0, 1}
    assert train[-1]["loss"] < train[0]["loss"]
    final = records[-1]
    assert final["kind"] == "final" and set(final["results"]) == {"(3,5)", "(3,8)"}
    assert final["results"]["(3,5)"]["model"] < final["results"]["(3,5)"]["dft"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert evals[0]["step"] == 0  # the untrained starting point, for what training adds
    assert final["results"]["(3,8)"]["model"] < evals[0]["mse"]["(3,8)"]
    model = SeedGRUForecaster.from_pretrained(tmp_path / "out" / "model")
    assert model.config.hidden == 32
    assert (tmp_path / "out" / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    # stdout is not a terminal (as in a SLURM log): a plain progress line every log_every steps
    lines = [line for line in result.stdout.splitlines() if re.match(r"step \d+/60  stage", line)]
    assert [int(re.match(r"step (\d+)", line).group(1)) for line in lines] == [10, 20, 30, 40, 50, 60]
    assert all(re.search(r"samples/s  loss \d\.\d{3}e[+-]\d+ .*ETA \d+:\d\d:\d\d$", line) for line in lines), lines
    # DeepSpeed is installed (make test installs it) and this run does not use it: no notice that it found no GPU
    assert "Setting accelerator to CPU" not in result.stdout + result.stderr


def test_sparse_gru_starts_from_its_fitted_skip_path(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        tiny_config(
            "model.kind=sparse_gru",
            "model.sparse_iterations=8",
            **{key: CLI_RUN[key] for key in ("train", "eval", "stages")},
        ),
    )
    mixed = ("--set", "signal.noise=[0.0, 0.1]")
    result = _cli("train", "--config", "tiny.toml", "--output-dir", "out", "--max-steps", "10", *mixed, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    final = json.loads((tmp_path / "out" / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(final["results"]) == {
        f"{band}{level}" for band in ("(3,5)", "(3,8)") for level in ("", " clean", " σ=0.1")
    }
    clean, noisy = final["results"]["(3,5) clean"], final["results"]["(3,5) σ=0.1"]
    assert clean["model"] < 1e-4 and clean["model"] < 1e-3 * clean["dft"]
    assert noisy["model"] < noisy["naive"] and clean["model"] < final["results"]["(3,5)"]["model"] < noisy["model"]
    model = ResidualGRUForecaster.from_pretrained(tmp_path / "out" / "model")
    skip = model.skip
    assert model.config.kind == "sparse_gru"
    assert skip.wiener.eigenvalues.max() > 0 and skip.expected_errors.max() < 1  # fitted and calibrated


def test_max_steps_and_overrides(tmp_path: Path) -> None:
    write_config(tmp_path, CLI_RUN)
    result = _cli(
        "train", "--config", "tiny.toml", "--output-dir", "out", "--max-steps", "20", "--set", "train.log_every=5",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [5, 10, 15, 20]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("train.lr=-1.0", "train.lr"),
        ("train.batch_size=0", "train.batch_size"),
        ("model.width=3", "model.width: unknown key"),
        ("stages.0.components=[5, 3]", "stages[0].components"),
        ("stages.0.steps=0", "stages[0].steps"),
        ("signal.noize=1", "signal.noize: unknown key"),
        ("evaluation.every=20", "config.evaluation: unknown key"),
        ('train.lr="fast"', "train.lr: Input should be a valid number"),
        ("train.grad_accum=3", "train.grad_accum"),
        ("stages.0.samples=100", "give steps or samples"),
        ("stages.0.promote_below=-1.0", "stages[0].promote_below"),
        ("wandb.mode=cloud", "wandb.mode"),
        ("wandb.enabled=1", "wandb.enabled"),
        ('train.compile="yes"', "train.compile"),
        ("train.compile=1", "train.compile"),
    ],
)
def test_bad_configs_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str, message: str
) -> None:
    path = write_config(
        tmp_path, tiny_config(setting, **{key: CLI_RUN[key] for key in ("train", "stages")}), "bad.toml"
    )
    status = main(["train", "--config", str(path), "--output-dir", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert status == 2
    assert message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_invalid_toml_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, INVALID_TOML, "bad.toml")
    status = main(["train", "--config", str(path), "--output-dir", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert status == 2 and "invalid TOML" in error and len(error.strip().splitlines()) == 1


class _Writes:
    """A stderr that keeps each ``write`` call apart, as an unbuffered pipe shared by ranks sees them."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_an_error_line_reaches_stderr_in_one_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranks share stderr: a message and its newline written apart let two ranks' lines run together."""
    stderr = _Writes()
    monkeypatch.setattr(sys, "stderr", stderr)
    path = write_config(tmp_path, INVALID_TOML, "bad.toml")
    assert main(["train", "--config", str(path), "--output-dir", str(tmp_path / "out")]) == 2
    assert len(stderr.calls) == 1 and stderr.calls[0].startswith("harmonic-forecast: error: ")
    assert stderr.calls[0].endswith("\n") and stderr.calls[0].count("\n") == 1


def test_an_error_line_without_a_stderr_is_dropped_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``print`` ignores a missing stderr (an interpreter started without one); so does the CLI's error line."""
    monkeypatch.setattr(sys, "stderr", None)
    path = write_config(tmp_path, INVALID_TOML, "bad.toml")
    assert main(["train", "--config", str(path), "--output-dir", str(tmp_path / "out")]) == 2


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_run_config(tmp_path / "absent.toml")


def test_seed_45_config_reproduces_the_seed_curriculum() -> None:
    config = load_run_config(ROOT / "configs" / "seed_45.toml")
    assert [stage.components for stage in config.stages] == [(3, 10), (3, 20), (3, 30), (3, 45)]
    assert config.signal.lookback == 100 and config.signal.horizon == 10 and config.signal.periods == (10, 100)
    assert config.model.kind == "seed_gru" and config.model.hidden == 140
    assert 29_900_000 <= config.total_steps * config.train.batch_size <= 30_100_000
