"""load_forecaster, predict and finetune on real files, with their error cases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harmonic_forecast import ConfigError, SignalSpec, load_forecaster
from harmonic_forecast.cli import main
from harmonic_forecast.forecast import series_windows
from harmonic_forecast.models import SparseGRUConfig, build_model
from harmonic_forecast.trainer import stream_windows
from tests.run_helpers import ROOT

QUICKSTART = str(ROOT / "configs" / "quickstart.toml")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("model")
    model = build_model(SparseGRUConfig(hidden=32, encoder_width=32))
    model.fit_to_data(stream_windows(seed=0), SignalSpec(components=(3, 46)))  # the skip path, as training starts with
    model.save_pretrained(directory)
    return directory


def _series(length: int, offset: float = 5.0, gain: float = 3.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    periods, phases = rng.integers(10, 100, 5), rng.random(5) * 2 * np.pi
    return offset + gain * sum(np.sin(2 * np.pi * t / p + f) for p, f in zip(periods, phases, strict=True)) / 5


def test_predict_is_batched_and_keeps_the_array_type(model_dir: Path) -> None:
    forecaster = load_forecaster(model_dir)
    windows = np.random.default_rng(0).uniform(-1, 1, (5, 100)).astype(np.float32)
    as_numpy = forecaster.predict(windows)
    as_torch = forecaster.predict(torch.from_numpy(windows))
    assert isinstance(as_numpy, np.ndarray) and as_numpy.shape == (5, 10)
    assert isinstance(as_torch, torch.Tensor) and torch.equal(as_torch, torch.from_numpy(as_numpy))
    rows = np.concatenate([forecaster.predict(windows[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(rows, as_numpy, atol=1e-6)
    with pytest.raises(ConfigError, match=r"lookback: expected \[N, 100\]"):
        forecaster.predict(windows[:, :50])
    assert forecaster.predict(windows[:0]).shape == (0, 10)  # no windows, no forecasts (not an error)


def test_forecast_maps_back_to_the_series_units(model_dir: Path) -> None:
    forecaster = load_forecaster(model_dir)
    series = _series(300, offset=0.0, gain=1.0)
    base = forecaster.forecast(series)
    shifted = forecaster.forecast(7.0 + 250.0 * series)
    np.testing.assert_allclose(shifted, 7.0 + 250.0 * base, rtol=1e-5, atol=1e-4)
    rolling = forecaster.forecast(series, rolling=True)
    assert rolling.shape == (201, 10)
    # the sparse fit's near-singular float64 solves see different BLAS blocking at another batch size
    np.testing.assert_allclose(rolling[-1], base, rtol=1e-6, atol=1e-5)


def test_a_forecast_reads_only_the_series_up_to_its_window_and_can_be_per_window(model_dir: Path) -> None:
    forecaster = load_forecaster(model_dir)
    series = np.cumsum(np.random.default_rng(3).normal(size=320)) + 10 * _series(320)  # a walk: naive competes
    rolling = forecaster.forecast(series, rolling=True)
    for row in (0, 9, 10, 57, 220):
        np.testing.assert_allclose(forecaster.forecast(series[: row + 100]), rolling[row], rtol=1e-6, atol=1e-5)
    changed = series.copy()
    changed[250:] += 40.0
    np.testing.assert_allclose(forecaster.forecast(changed, rolling=True)[:151], rolling[:151], rtol=1e-6, atol=1e-5)
    # series of exactly L or L + H samples give read-only single-window views: no warning may reach the user
    # (torch warns once per process, so in a fresh one)
    code = (
        "import numpy as np, sys; from harmonic_forecast import load_forecaster; f = load_forecaster(sys.argv[1]); "
        "s = np.sin(np.arange(120) / 3.0); [f.forecast(s[:n], rolling=True) for n in (100, 110, 111)]"
    )
    run = subprocess.run([sys.executable, "-W", "error", "-c", code, str(model_dir)], capture_output=True, text=True)
    assert run.returncode == 0 and run.stderr == "", run.stderr[-500:]
    per_window = forecaster.forecast(series, rolling=True, combine=False)
    np.testing.assert_allclose(per_window, forecaster.predict(series_windows(series, 100)), rtol=1e-6, atol=1e-5)
    for step in range(10):  # no earlier window's value at this step seen yet: the model alone
        np.testing.assert_array_equal(per_window[: step + 1, step], rolling[: step + 1, step])
        assert not np.allclose(per_window[step + 1 :, step], rolling[step + 1 :, step]), "combined from then on"


def test_predict_command_round_trip(tmp_path: Path, model_dir: Path) -> None:
    series = _series(250)
    (tmp_path / "data.csv").write_text("time,level\n" + "".join(f"{i},{v}\n" for i, v in enumerate(series)))
    status = main(["predict", "--checkpoint", str(model_dir), "--input", str(tmp_path / "data.csv"),
                   "--column", "level", "--output", str(tmp_path / "next.csv")])  # fmt: skip
    assert status == 0
    lines = (tmp_path / "next.csv").read_text().splitlines()
    assert lines[0] == ",".join(f"t+{h}" for h in range(1, 11)) and len(lines) == 2
    written = np.array([float(v) for v in lines[1].split(",")])
    np.testing.assert_allclose(written, load_forecaster(model_dir).forecast(series), rtol=1e-6)
    np.save(tmp_path / "data.npy", series)
    status = main(["predict", "--checkpoint", str(model_dir), "--input", str(tmp_path / "data.npy"),
                   "--output", str(tmp_path / "rolling.npy"), "--rolling"])  # fmt: skip
    rolling = np.load(tmp_path / "rolling.npy")
    assert status == 0 and rolling.shape == (151, 11) and rolling[0, 0] == 100 and rolling[-1, 0] == 250


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("level\n" + "1.0\n" * 50 + "nan\n" + "1.0\n" * 100, [], "non-finite value nan at index 50"),
        ("level\n" + "1.0\n" * 40, [], "40 samples, the model needs at least 100"),
        ("a,b\n" + "1,2\n" * 200, ["--column", "c"], "--column c: not among the columns (a, b)"),
        ("a,b\n" + "1,2\n" * 200, [], "name one"),
        ("level\n" + "1.0\n" * 150 + "oops\n", [], "'oops' at index 150 (line 152) is not a number"),
        ("level\n" + "1.0\n" * 60 + "\n" + "1.0\n" * 60, [], "empty cell at index 60 (line 62)"),
        ("1.0\n" * 60 + "2;3\n" + "1.0\n" * 60, [], "'2;3' at index 60 (line 61) is not a number; the file must be"),
        ("1,2\n" * 200, [], "2 columns and no header; give a 0-based index"),
        ("1,2\n" * 200, ["--column", "2"], "--column 2: the file has no header, so a 0-based index below 2"),
        ("", [], "the file is empty"),
        ("\n\n", [], "the file is empty"),
        ("date;level\n" + "x;1\n" * 200, ["--column", "level"], "not among the columns (date;level); the file must"),
        ("level,level\n" + "1,2\n" * 200, ["--column", "level"], "--column level: names 2 columns (0, 1); rename one"),
        ("a,b\n" + "1,2\n" * 200, ["--column", "2"], "--column 2: not among the columns (a, b)"),
        ("level\n" + '"1,250.5"\n' * 200, [], "'1,250.5' at index 0 (line 2) is not a number; remove the thousands"),
    ],
)
def test_predict_errors_are_one_line_exit_2(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], content: str, extra: list, message: str
) -> None:
    (tmp_path / "data.csv").write_text(content)
    status = main(["predict", "--checkpoint", str(model_dir), "--input", str(tmp_path / "data.csv"),
                   "--output", str(tmp_path / "out.csv"), *extra])  # fmt: skip
    error = capsys.readouterr().err.strip()
    assert status == 2 and message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("absent.csv", None, "cannot read"),
        ("data.txt", b"1\n2\n", "expected a .csv or .npy file"),
        ("broken.npy", b"\x93NUMPY garbage", "cannot read"),
        ("text.npy", b"1\n2\n3\n", "not a .npy file (no NumPy header)"),
        ("binary.csv", bytes(range(256)) * 4, "cannot read"),
    ],
)
def test_unreadable_inputs(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], name: str, data: bytes | None, message: str
) -> None:
    if data is not None:
        (tmp_path / name).write_bytes(data)
    status = main(["predict", "--checkpoint", str(model_dir), "--input", str(tmp_path / name),
                   "--output", str(tmp_path / "out.csv")])  # fmt: skip
    error = capsys.readouterr().err.strip()
    assert status == 2 and message in error and len(error.splitlines()) == 1


def test_missing_model_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "data.npy", _series(200))
    status = main(["predict", "--checkpoint", str(tmp_path / "nope"), "--input", str(tmp_path / "data.npy"),
                   "--output", str(tmp_path / "out.csv")])  # fmt: skip
    assert status == 2 and "nope: no such model directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    status = main(["predict", "--checkpoint", str(tmp_path / "empty"), "--input", str(tmp_path / "data.npy"),
                   "--output", str(tmp_path / "out.csv")])  # fmt: skip
    assert status == 2 and "empty: no model here" in capsys.readouterr().err


def test_finetune_round_trip(tmp_path: Path, model_dir: Path) -> None:
    series = _series(1500, seed=3)
    (tmp_path / "data.csv").write_text("value\n" + "".join(f"{v}\n" for v in series))
    status = main(["finetune", "--checkpoint", str(model_dir), "--input", str(tmp_path / "data.csv"),
                   "--column", "value", "--output-dir", str(tmp_path / "tuned"),
                   "--epochs", "3", "--lr", "1e-3"])  # fmt: skip
    assert status == 0
    report = json.loads((tmp_path / "tuned" / "finetune_report.json").read_text())
    assert report["validation_mse_after"] <= report["validation_mse_before"]
    assert report["train_windows"] > 0 and report["validation_windows"] > 0
    assert {"naive", "seasonal_naive", "dft"} <= set(report["baselines"])
    tuned = load_forecaster(tmp_path / "tuned")
    assert tuned.forecast(series).shape == (10,)


def test_finetune_says_when_no_epoch_improved(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    series = _series(1500, seed=3)
    np.save(tmp_path / "data.npy", series)
    status = main(
        [
            "finetune",
            "--checkpoint",
            str(model_dir),
            "--input",
            str(tmp_path / "data.npy"),
            "--output-dir",
            str(tmp_path / "tuned"),
            "--epochs",
            "2",
            "--patience",
            "1",
            "--lr",
            "1e3",
        ]
    )  # fmt: skip  (a step this large cannot improve the model)
    assert status == 0
    report = json.loads((tmp_path / "tuned" / "finetune_report.json").read_text())
    assert report["best_epoch"] == 0 and report["validation_mse_after"] == report["validation_mse_before"]
    out = " ".join(capsys.readouterr().out.split())
    assert "no epoch of 1 improved: weights kept" in out and "(epoch 0)" not in out


UNWRITABLE = "/proc/harmonic-forecast-test"  # not writable, even by root


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "--input", "{series}", "--output", f"{UNWRITABLE}.csv"],
        ["predict", "--input", "{series}", "--output", f"{UNWRITABLE}/deeper/out.npy"],
        ["predict", "--input", "{series}", "--output", "{directory}"],
        ["finetune", "--input", "{series}", "--output-dir", UNWRITABLE],
        ["evaluate", "--signals", "8", "--output-dir", UNWRITABLE],
        ["sample", "--count", "2", "--output", f"{UNWRITABLE}.csv"],
    ],
)
def test_an_output_that_cannot_be_written_is_one_line_exit_2(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """Caught before the work where it can be, with the option named; no traceback, nothing written."""
    np.savetxt(tmp_path / "series.csv", _series(300))
    (tmp_path / "taken.csv").mkdir()
    values = {"series": str(tmp_path / "series.csv"), "directory": str(tmp_path / "taken.csv")}
    arguments = [part.format(**values) for part in command]
    if arguments[0] != "sample":
        arguments += ["--checkpoint", str(model_dir)]
    status = main(arguments)
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1 and "--output" in error, error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series.csv", "taken.csv"]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["finetune", "--lr", "-1"], "error: --lr: must be > 0, got -1\n"),  # the wrong option alone
        (["finetune", "--epochs", "0"], "error: --epochs: must be >= 1, got 0\n"),
        (["finetune", "--patience", "0", "--lr", "0"], "--lr: must be > 0, got 0; --patience: must be >= 1, got 0\n"),
        (["finetune", "--validation-fraction", "1.5"], "error: --validation-fraction: must be in (0, 1), got 1.5\n"),
        (["sample", "--count", "0", "--output", "x.csv"], "--count: must be >= 1, got 0"),
        (["sample", "--output", "x.csv", "--config", QUICKSTART, "--noise", "0.1"], "--noise: not with"),
        (["sample", "--output", "x.csv", "--config", QUICKSTART, "--stage", "2"], "--stage: the config"),
        (["sample", "--output", "x.csv", "--stage", "0"], "--stage: needs --config"),
        (["evaluate", "--suite", "nope"], "--suite: expected one of synthetic, shift, real, got 'nope'"),
    ],
)
def test_bad_numbers_on_the_command_line_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], message: str
) -> None:
    np.savetxt(tmp_path / "series.csv", _series(300))
    if command[0] == "finetune":
        command = [*command, "--input", str(tmp_path / "series.csv"), "--output-dir", str(tmp_path / "tuned")]
    status = main(command)
    error = capsys.readouterr().err
    assert status == 2 and message.rstrip("\n") in error and len(error.strip().splitlines()) == 1
    assert not message.endswith("\n") or error.endswith(message)
    assert not (tmp_path / "tuned").exists() and not Path("x.csv").exists()


@pytest.mark.parametrize("dtype", [np.complex128, np.bool_])
def test_a_series_that_is_not_real_numbers_is_refused(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], dtype: type
) -> None:
    np.save(tmp_path / "series.npy", (_series(200) > 5).astype(dtype))
    status = main(["predict", "--checkpoint", str(model_dir), "--input", str(tmp_path / "series.npy"),
                   "--output", str(tmp_path / "out.csv")])  # fmt: skip
    error = capsys.readouterr().err.strip()
    assert status == 2 and f"expected real numbers, got {np.dtype(dtype)}" in error and len(error.splitlines()) == 1


def test_a_column_of_a_file_without_a_header_is_chosen_by_index(tmp_path: Path, model_dir: Path) -> None:
    series = _series(200)
    np.savetxt(tmp_path / "two.csv", np.stack([-series, series], axis=1), delimiter=",")
    np.savetxt(tmp_path / "one.CSV", series)  # the suffix in any case
    common = ["predict", "--checkpoint", str(model_dir), "--input"]
    assert main([*common, str(tmp_path / "two.csv"), "--column", "1", "--output", str(tmp_path / "a.csv")]) == 0
    assert main([*common, str(tmp_path / "one.CSV"), "--output", str(tmp_path / "b.csv")]) == 0
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_finetune_needs_enough_data(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    needed = set()
    for length in (100, 125):  # both too short: one number for both (it said 110, then 137)
        np.save(tmp_path / "short.npy", _series(length))
        status = main(["finetune", "--checkpoint", str(model_dir), "--input", str(tmp_path / "short.npy"),
                       "--output-dir", str(tmp_path / "tuned")])  # fmt: skip
        error = capsys.readouterr().err
        assert status == 2 and f"{length} samples" in error and "at least" in error
        needed.add(error.split("at least")[1].split()[0])
        assert not (tmp_path / "tuned").exists()
    assert len(needed) == 1


def test_sample_writes_the_signals_a_config_trains_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --config: the stage's spec (families, noise levels) and the config's seed, as the trainer's stream."""
    from harmonic_forecast.config import load_run_config
    from harmonic_forecast.stream import HarmonicStream

    config_path = QUICKSTART
    output = tmp_path / "signals.npy"
    assert main(["sample", "--count", "34", "--output", str(output), "--config", config_path, "--stage", "0"]) == 0
    config = load_run_config(config_path)
    lookback, target = HarmonicStream(config.stage_spec(config.stages[0]), 34, seed=config.train.seed).batch(0)
    np.testing.assert_array_equal(np.load(output), torch.cat([lookback, target], dim=1).numpy())
    assert "wrote 34 signals of 110 samples" in capsys.readouterr().out


def test_an_unknown_option_shows_the_commands_own_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "--output", "x.csv", "--bogus", "1"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.startswith("usage: harmonic-forecast sample")
    assert "unrecognized arguments: --bogus 1" in error


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5, 0.9])
def test_finetunes_shortest_series_is_the_one_it_names(fraction: float) -> None:
    """The error names the fewest samples that split into a training and a validation window (it said about
    550 for 0.2, where 137 finetune), and that many do split."""
    from harmonic_forecast.finetune import split_windows

    with pytest.raises(ConfigError, match=r"need at least (\d+)$") as error:
        split_windows(np.arange(120.0), 100, 10, fraction)
    need = int(error.value.args[0].rsplit(" ", 1)[1])
    train, validation = split_windows(np.arange(float(need)), 100, 10, fraction)
    assert len(train.target) >= 1 and len(validation.target) >= 1
    with pytest.raises(ConfigError, match=f"{need - 1} samples leave no training or validation window"):
        split_windows(np.arange(float(need - 1)), 100, 10, fraction)


def test_a_column_of_a_file_with_a_header_may_be_chosen_by_index(tmp_path: Path, model_dir: Path) -> None:
    series = _series(150)
    (tmp_path / "data.csv").write_text("date,level\n" + "".join(f"d{i},{v}\n" for i, v in enumerate(series)))
    for column in ("1", "level"):
        status = main(["predict", "--checkpoint", str(model_dir), "--input", str(tmp_path / "data.csv"),
                       "--column", column, "--output", str(tmp_path / f"next{column}.npy")])  # fmt: skip
        assert status == 0
    np.testing.assert_array_equal(np.load(tmp_path / "next1.npy"), np.load(tmp_path / "nextlevel.npy"))


def test_blank_lines_after_the_last_sample_are_not_samples(tmp_path: Path, model_dir: Path) -> None:
    series = _series(150)
    (tmp_path / "data.csv").write_text("level\r\n" + "".join(f"{v}\r\n" for v in series) + "\r\n \r\n")
    status = main(["predict", "--checkpoint", str(model_dir), "--input", str(tmp_path / "data.csv"),
                   "--output", str(tmp_path / "r.npy"), "--rolling"])  # fmt: skip
    assert status == 0 and np.load(tmp_path / "r.npy")[-1, 0] == 150


def test_a_csv_forecast_keeps_every_digit_of_a_large_level(tmp_path: Path, model_dir: Path) -> None:
    """9 significant digits wrote a series at 1e12 with a swing of 10 as ``1e+12`` at every step."""
    np.save(tmp_path / "level.npy", 1e12 + 10.0 * _series(250, offset=0.0, gain=1.0))
    for suffix in ("csv", "npy"):
        status = main(["predict", "--checkpoint", str(model_dir), "--input", str(tmp_path / "level.npy"),
                       "--output", str(tmp_path / f"next.{suffix}")])  # fmt: skip
        assert status == 0
    written = np.loadtxt(tmp_path / "next.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(written, np.load(tmp_path / "next.npy")[0])  # %.17g round-trips float64
    assert np.ptp(written) > 0.1


@pytest.mark.parametrize("header", ["", "level,date\n"])
def test_a_byte_order_mark_is_not_data(tmp_path: Path, model_dir: Path, header: str) -> None:
    """Excel's "CSV UTF-8" starts with a BOM: without a header it made the first sample a header (every row one
    step late); with one, the first column's name carried an invisible character."""
    series = _series(150)
    rows = "".join(f"{value},2000-01-{1 + i % 28:02d}\n" for i, value in enumerate(series))
    (tmp_path / "data.csv").write_text("\ufeff" + header + rows, encoding="utf-8")
    column = "level" if header else "0"
    status = main(["predict", "--checkpoint", str(model_dir), "--input", str(tmp_path / "data.csv"), "--column",
                   column, "--output", str(tmp_path / "rolling.npy"), "--rolling", "--per-window"])  # fmt: skip
    rolling = np.load(tmp_path / "rolling.npy")
    assert status == 0 and rolling.shape == (51, 11) and rolling[0, 0] == 100
    np.testing.assert_allclose(rolling[0, 1:], load_forecaster(model_dir).predict(series[None, :100])[0], rtol=1e-6)


def test_predict_refuses_to_overwrite_its_input_and_leaves_no_directory_when_it_fails(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.savetxt(tmp_path / "data.csv", _series(200))
    before = (tmp_path / "data.csv").read_bytes()
    for output in (tmp_path / "data.csv", tmp_path / "." / "data.csv"):
        status = main(["predict", "--checkpoint", str(model_dir), "--input", str(tmp_path / "data.csv"),
                       "--output", str(output)])  # fmt: skip
        assert status == 2 and "is the --input file" in capsys.readouterr().err
    assert (tmp_path / "data.csv").read_bytes() == before
    status = main(["predict", "--checkpoint", str(model_dir), "--input", str(tmp_path / "absent.csv"),
                   "--output", str(tmp_path / "new" / "sub" / "out.csv")])  # fmt: skip
    assert status == 2 and "cannot read" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_saved_weights_are_as_readable_as_their_config(tmp_path: Path) -> None:
    """safetensors writes owner-only files: a model directory shared on a cluster had a readable config and
    unreadable weights."""
    previous = os.umask(0o022)
    try:
        build_model(SparseGRUConfig(hidden=8, encoder_width=8)).save_pretrained(tmp_path / "model")
    finally:
        os.umask(previous)
    modes = [(tmp_path / "model" / name).stat().st_mode & 0o777 for name in ("config.json", "model.safetensors")]
    assert modes == [0o644, 0o644]
