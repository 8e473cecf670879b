"""Exact resume, checkpoint integrity, bad checkpoints, stop signals, divergence."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from harmonic_forecast import preemption
from harmonic_forecast.checkpoint import checkpoint_steps, latest_checkpoint, verify_checkpoint
from harmonic_forecast.cli import main
from harmonic_forecast.config import load_run_config
from harmonic_forecast.preemption import StopRequest
from harmonic_forecast.train import EXIT_DIVERGED, EXIT_PREEMPTED, EXIT_SAVE_FAILED, train
from tests.run_helpers import (
    LONG_RUN,
    ROOT,
    cli_command,
    digest,
    run_cli,
    start_training,
    tiny_config,
    tree_digests,
    write_config,
)


def _train(tmp_path: Path, name: str, config: dict | None = None, **kwargs) -> Path:
    config = load_run_config(write_config(tmp_path, config, f"{name}.toml"))
    train(config, tmp_path / name, **kwargs)
    return tmp_path / name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("full"), "full")


def test_checkpoints_are_written_rotated_and_verified(uninterrupted: Path) -> None:
    steps = [step for step, _ in checkpoint_steps(uninterrupted / "checkpoints")]
    assert steps == [15, 20]  # every 5 steps, keep_last = 2, the last one at the end
    newest = latest_checkpoint(uninterrupted / "checkpoints")
    assert newest is not None and newest.name == "step_20"
    names = {p.name for p in newest.iterdir()}
    assert {"model.safetensors", "config.json", "optimizer.pt", "rng.pt", "trainer_state.json"} <= names
    state = json.loads((newest / "trainer_state.json").read_text())
    assert state["step"] == 20 and state["samples_seen"] == 640 and state["stage_samples"] == [13 * 32, 7 * 32]
    assert state["curriculum"] == {"stage": 1, "stage_start": 13} and state["stream"] == {"position": 20}
    assert digest(newest / "model.safetensors") == digest(uninterrupted / "model" / "model.safetensors")


@pytest.mark.parametrize("stop_at", [10, 13, 17])
def test_stopped_and_resumed_run_is_bitwise_identical(tmp_path: Path, uninterrupted: Path, stop_at: int) -> None:
    """Stage 1 ends at step 13: the boundary falls after, at and before the interruption."""
    _train(tmp_path, "split", max_steps=stop_at)
    assert latest_checkpoint(tmp_path / "split" / "checkpoints").name == f"step_{stop_at}"
    _train(tmp_path, "split", resume="auto")
    full = load_file(str(uninterrupted / "model" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "split" / "model" / "model.safetensors"))
    assert all(torch.equal(full[name], resumed[name]) for name in full)
    assert digest(tmp_path / "split" / "model" / "model.safetensors") == digest(
        uninterrupted / "model" / "model.safetensors"
    )


def test_default_model_stopped_and_resumed_is_bitwise_identical(tmp_path: Path) -> None:
    """The experts' fitted state (the Wiener noise estimate) travels in the checkpoint: a resume does not refit."""
    config = tiny_config("model.kind=expert_gru")
    full = _train(tmp_path, "full", config)
    _train(tmp_path, "split", config, max_steps=10)
    _train(tmp_path, "split", config, resume="auto")
    assert digest(tmp_path / "split" / "model" / "model.safetensors") == digest(full / "model" / "model.safetensors")


def test_promotion_rule_is_resumed_exactly(tmp_path: Path) -> None:
    config = tiny_config("stages.0.promote_below=10.0", "stages.0.min_steps=6")
    full = _train(tmp_path, "full", config)
    records = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records if r["kind"] == "train"] == [0, 1, 1]  # promoted at step 8, ends at 15
    state = json.loads((full / "checkpoints" / "step_15" / "trainer_state.json").read_text())
    assert state["curriculum"] == {"stage": 1, "stage_start": 8}
    _train(tmp_path, "split", config, max_steps=6)
    _train(tmp_path, "split", config, resume="auto")
    assert digest(full / "model" / "model.safetensors") == digest(tmp_path / "split" / "model" / "model.safetensors")


def test_gradient_accumulation_matches_the_full_batch(tmp_path: Path) -> None:
    whole = _train(tmp_path, "whole", tiny_config("stages.1.steps=2"))
    halves = _train(tmp_path, "halves", tiny_config("stages.1.steps=2", "train.grad_accum=2"))
    a = load_file(str(whole / "model" / "model.safetensors"))
    b = load_file(str(halves / "model" / "model.safetensors"))
    assert all(torch.allclose(a[name], b[name], atol=1e-5) for name in a)


def _damage(checkpoint: Path, how: str) -> None:
    weights = checkpoint / "model.safetensors"
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[:-64])
    elif how == "corrupt":
        data = bytearray(weights.read_bytes())
        data[-10] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif how == "incomplete":
        (checkpoint / "manifest.json").unlink()


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated", "missing or truncated"),
        ("corrupt", "corrupt (checksum mismatch)"),
        ("incomplete", "not a complete checkpoint"),
        ("absent", "no such checkpoint directory"),
        ("architecture", "checkpoint of another architecture"),
        ("batch", "saved with train.batch_size = 32"),
    ],
)
def test_bad_checkpoints_exit_2_and_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str, message: str
) -> None:
    output = _train(tmp_path, "run", max_steps=10)
    checkpoint = output / "checkpoints" / "step_10"
    config = write_config(tmp_path)
    if how == "architecture":
        config = write_config(tmp_path, tiny_config("model.hidden=24"))
    elif how == "batch":
        config = write_config(tmp_path, tiny_config("train.batch_size=64"))
    else:
        _damage(checkpoint, how)
    target = tmp_path / "nowhere" if how == "absent" else checkpoint
    before = tree_digests(output)
    capsys.readouterr()
    status = main(["train", "--config", str(config), "--output-dir", str(output), "--resume", str(target)])
    error = capsys.readouterr().err.strip()
    assert status == 2 and message in error and len(error.splitlines()) == 1
    assert tree_digests(output) == before


def test_auto_resume_skips_a_damaged_newest_checkpoint(tmp_path: Path, uninterrupted: Path) -> None:
    _train(tmp_path, "run", max_steps=10)
    checkpoints = tmp_path / "run" / "checkpoints"
    _damage(checkpoints / "step_10", "corrupt")
    assert latest_checkpoint(checkpoints, warn=lambda message: None).name == "step_5"
    _train(tmp_path, "run", resume="auto")
    assert digest(tmp_path / "run" / "model" / "model.safetensors") == digest(
        uninterrupted / "model" / "model.safetensors"
    )


def _step_digests(run: Path) -> dict[int, str]:
    return {step: digest(path / "model.safetensors") for step, path in checkpoint_steps(run / "checkpoints")}


def test_resuming_an_older_checkpoint_moves_the_other_trajectory_aside(tmp_path: Path) -> None:
    """A step_N always holds this run's state at step N: never the abandoned branch's, never leftovers."""
    config = tiny_config("train.keep_last=4")
    run = _train(tmp_path, "run", config, max_steps=15)
    first = _step_digests(run)
    assert sorted(first) == [5, 10, 15]
    first_history = (run / "metrics.jsonl").read_text()
    branch = tiny_config("train.keep_last=4", "train.lr=1e-4")
    _train(tmp_path, "run", branch, max_steps=15, resume=str(run / "checkpoints" / "step_5"))
    second = _step_digests(run)
    assert sorted(second) == [5, 10, 15] and second[5] == first[5]
    assert second[10] != first[10] and second[15] != first[15]  # the new branch's weights, not the old ones
    (aside,) = (run / "checkpoints" / "superseded").iterdir()  # nothing is lost: the old branch is kept aside
    assert {p.name: digest(p / "model.safetensors") for p in aside.iterdir() if p.is_dir()} == {
        "step_10": first[10],
        "step_15": first[15],
    }
    assert latest_checkpoint(run / "checkpoints").name == "step_15"
    # the history is this branch's: the old run's records up to step 5, then the branch's (the old ones aside)
    assert (aside / "metrics.jsonl").read_text() == first_history
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    resume = next(i for i, record in enumerate(records) if record["kind"] == "resume")
    assert [r["step"] for r in records[:resume]] == [r["step"] for r in map(json.loads, first_history.splitlines())
                                                     if r["step"] <= 5]  # fmt: skip
    assert [r["step"] for r in records if r["kind"] == "final"] == [15]
    # A fresh run in a directory holding another run's checkpoints writes its own (the same as `run`'s first),
    # and a history of its own: the branch's moves aside with its checkpoints
    branch_history = (run / "metrics.jsonl").read_text()
    _train(tmp_path, "run", config, max_steps=10)
    assert _step_digests(run) == {5: first[5], 10: first[10]}
    folders = sorted((run / "checkpoints" / "superseded").iterdir())
    assert len(folders) == 2 and (folders[1] / "metrics.jsonl").read_text() == branch_history
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records if r["kind"] in ("resume", "final")] == ["final"]
    assert records[0]["step"] == 0 and [r["step"] for r in records if r["kind"] == "final"] == [10]


def test_divergence_stops_before_saving_poisoned_weights(tmp_path: Path) -> None:
    config = tiny_config("train.lr=1e30", "train.log_every=1000", "train.checkpoint_every=1", "train.keep_last=50")
    write_config(tmp_path, config)
    result = run_cli("train", "--config", "tiny.toml", "--output-dir", "out", cwd=tmp_path)
    assert result.returncode == EXIT_DIVERGED, result.stderr[-2000:]
    assert "non-finite" in result.stderr
    saved = checkpoint_steps(tmp_path / "out" / "checkpoints")
    for _, directory in saved:
        weights = load_file(str(directory / "model.safetensors"))
        assert all(torch.isfinite(t).all() for t in weights.values())
    assert not (tmp_path / "out" / "model").exists()


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_stop_signal_saves_a_checkpoint_and_exits_for_requeue(tmp_path: Path, stop_signal: signal.Signals) -> None:
    """SIGTERM (SIGUSR1: the SLURM tests) and Ctrl-C save at the next step boundary and exit 3; a Ctrl-C passed
    on again at once (as accelerate launch does) is the same interrupt."""
    write_config(tmp_path, LONG_RUN)
    process = start_training(tmp_path, logged_steps=30, timeout=120)
    process.send_signal(stop_signal)
    if stop_signal == signal.SIGINT:
        process.send_signal(stop_signal)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_PREEMPTED, stderr[-2000:]
    assert ("interrupted: saving a checkpoint" in stderr) == (stop_signal == signal.SIGINT)
    newest = latest_checkpoint(tmp_path / "out" / "checkpoints")
    assert newest is not None
    step = json.loads((newest / "trainer_state.json").read_text())["step"]
    assert 30 <= step < 3013


def _importing_torch(pid: int) -> bool:
    """Whether the process has started loading torch (its shared library is mapped)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps")
@pytest.mark.parametrize(
    "stop_signal",
    [pytest.param(signal.SIGUSR1, id="SIGUSR1"), pytest.param(signal.SIGTERM, id="SIGTERM", marks=pytest.mark.slow)],
)
def test_stop_signal_while_the_trainer_starts_is_kept_until_the_first_step(
    tmp_path: Path, single: Path, stop_signal: signal.Signals
) -> None:
    """A stop sent while the trainer still imports torch saves at step 1, and the resumed run loses nothing."""
    write_config(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        cli_command("train", "--config", "tiny.toml", "--output-dir", "run"),
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while not _importing_torch(process.pid) and process.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    assert process.poll() is None
    process.send_signal(stop_signal)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == EXIT_PREEMPTED, stderr[-2000:]
    run = tmp_path / "run"
    assert [step for step, _ in checkpoint_steps(run / "checkpoints")] == [1]
    assert (run / "trainer.exit").read_text() == "3\n" and not (run / "trainer.pid").exists()
    result = run_cli("train", "--config", "tiny.toml", "--output-dir", "run", "--resume", "auto", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run / "trainer.exit").read_text() == "0\n"
    assert digest(run / "model" / "model.safetensors") == digest(single / "model" / "model.safetensors")


def _writing(checkpoints: Path) -> bool:
    """Whether a checkpoint is being written (its temporary directory exists)."""
    try:
        return any(p.name.startswith(".tmp-") for p in checkpoints.iterdir())
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_sigkill_at_random_moments_always_resumes_from_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    config = tiny_config("stages.1.steps=200", "train.checkpoint_every=2", "model.hidden=64", "train.log_every=50")
    path = write_config(tmp_path, config)
    # the reference runs like the killed ones, in one thread: the skip-path fit is a large float64
    # GEMM, whose last bits depend on the thread count
    assert run_cli("train", "--config", str(path), "--output-dir", "full", cwd=tmp_path).returncode == 0
    full = tmp_path / "full"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = cli_command("train", "--config", str(path), "--output-dir", "killed", "--resume", "auto")
    checkpoints = tmp_path / "killed" / "checkpoints"
    rng = random.Random(0)
    kills, expected_resumes, torn_writes = 0, [], 0
    while True:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills >= 3 and torn_writes > 0:
            assert process.wait(timeout=300) == 0, process.stderr.read()[-2000:]
            break
        first = checkpoint_steps(checkpoints)
        deadline = time.time() + 60  # kill once this run has made progress (and removed a torn write's leftovers)
        while time.time() < deadline and checkpoint_steps(checkpoints) == first and process.poll() is None:
            time.sleep(0.01)
        if kills % 2:  # then as soon as the next checkpoint is being written: a torn write, without waiting for luck
            while time.time() < deadline and process.poll() is None and not _writing(checkpoints):
                pass
        else:  # then at a random moment
            time.sleep(rng.uniform(0.0, 0.4))
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        torn_writes += _writing(checkpoints)
        newest = latest_checkpoint(checkpoints, warn=lambda message: None)
        expected_resumes.append(newest.name if newest else None)
        assert kills < 40, "never caught a checkpoint write in progress"
    records = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    resumes = [r["checkpoint"] for r in records if r["kind"] == "resume"]
    assert kills >= 3 and torn_writes >= 1
    assert [Path(r).name for r in resumes] == [name for name in expected_resumes if name]
    assert digest(tmp_path / "killed" / "model" / "model.safetensors") == digest(full / "model" / "model.safetensors")


@pytest.fixture
def small_disk(tmp_path: Path):
    """A tmpfs mounted at ``tmp_path / "disk"`` (root, as in CI), sized by the test through remount."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_older_ones(tmp_path: Path, small_disk: Path) -> None:
    config = tiny_config("train.keep_last=10")
    write_config(tmp_path, config)
    probe = run_cli("train", "--config", "tiny.toml", "--output-dir", "probe", "--max-steps", "5", cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr[-2000:]
    one = sum(p.stat().st_size for p in (tmp_path / "probe" / "checkpoints" / "step_5").rglob("*") if p.is_file())
    # room for about two and a half checkpoints: the third (step 15) cannot be written
    subprocess.run(["mount", "-o", f"remount,size={int(2.5 * one) + 65536}", str(small_disk)], check=True)
    result = run_cli("train", "--config", str(tmp_path / "tiny.toml"), "--output-dir", "run", cwd=small_disk)
    assert result.returncode == EXIT_SAVE_FAILED, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("harmonic-forecast: error:")]
    assert len(errors) == 1 and "no space left on device" in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "inline_container" not in result.stderr
    checkpoints = small_disk / "run" / "checkpoints"
    saved = checkpoint_steps(checkpoints)
    assert [step for step, _ in saved][:2] == [5, 10]
    for _, directory in saved:
        verify_checkpoint(directory)  # every step_N left is complete
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".tmp-")]


def test_a_second_ctrl_c_a_second_later_stops_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first Ctrl-C is a stop request (one line), a repeat within SECOND_INTERRUPT the same one, a later
    one a KeyboardInterrupt; outside a request Ctrl-C is Python's own again."""
    monkeypatch.setattr(preemption, "SECOND_INTERRUPT", 0.2)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        os.kill(os.getpid(), signal.SIGINT)  # at once: the launcher passing the same Ctrl-C on
        time.sleep(0.3)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs between bytecodes
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
