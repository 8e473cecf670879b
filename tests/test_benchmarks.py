"""The quick benchmark suite (``make bench-quick``) runs and writes its JSON with the headline ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.run_helpers import ROOT

pytestmark = pytest.mark.slow


def test_quick_suite_writes_the_headline_ratios(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / "run_suite.py"), "--quick", "--output-dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    (summary_path,) = [
        p for p in tmp_path.glob("*.json") if not p.name.startswith(("generator", "train", "ddp", "default"))
    ]
    summary = json.loads(summary_path.read_text())
    for key in ("generator_vs_seed", "train_vs_seed", "ddp_2proc_vs_1proc", "predict_vs_ar"):
        assert isinstance(summary[key], float) and summary[key] > 0
    assert all(report["peak_rss_mb"] > 0 for report in summary["benchmarks"].values())
    assert "| ddp_scaling |" in summary_path.with_suffix(".md").read_text()


def test_quick_accuracy_benchmark_scores_both_models_against_the_linear_maps(tmp_path: Path) -> None:
    output = tmp_path / "accuracy.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "accuracy.py"), "--quick", "--output", str(output)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert set(report["training"]) == {"default", "seed_gru"}
    assert all(run["samples"] >= 960 and run["seconds"] > 0 for run in report["training"].values())
    assert len(report["summary"]) == 10
    clean = report["summary"]["(3,45) clean"]
    assert clean["default"]["vs_best_linear"] < 2 < clean["seed_gru"]["vs_best_linear"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--seconds", "nan"], "--seconds: must be a number > 0, got nan"),
        (["--output", "{tmp}"], "is a directory"),
        (["--output", "/proc/harmonic-forecast-test/x.json"], "--output /proc/harmonic-forecast-test: cannot create"),
    ],
)
def test_bad_arguments_stop_a_benchmark_before_it_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    """NaN seconds never ended a timing loop; an unwritable --output failed with a traceback after the run.
    Every benchmark parses its arguments with ``common.parse_arguments``."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from common import parse_arguments
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    with pytest.raises(SystemExit) as exit_info:
        parse_arguments([a.format(tmp=tmp_path) for a in arguments], "a benchmark", 1.0, 0.5, "quick")
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
