"""HarmonicStream: a pure function of (seed, split, batch), sharded by rank, resumable, loader-friendly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from harmonic_forecast import ConfigError, HarmonicStream, SignalSpec

SPEC = SignalSpec(components=(3, 45), noise=0.0)
NOISY = SignalSpec(components=(3, 20), noise=0.1)
ROOT = Path(__file__).resolve().parents[1]


def _whole(stream: HarmonicStream, index: int) -> torch.Tensor:
    return torch.cat(stream.batch(index), dim=1)


def test_public_api_yields_float32_batches() -> None:
    stream = HarmonicStream(SPEC, batch_size=4096, seed=0, device="cpu")
    lookback, target = next(iter(stream))
    assert lookback.shape == (4096, 100) and target.shape == (4096, 10)
    assert lookback.dtype == target.dtype == torch.float32
    assert torch.isfinite(lookback).all() and torch.isfinite(target).all()


@pytest.mark.parametrize("spec", [SPEC, NOISY], ids=["clean", "noisy"])
@pytest.mark.parametrize("world_size", [2, 4, 8])
def test_rank_shares_concatenate_to_the_same_batch(spec: SignalSpec, world_size: int) -> None:
    single = HarmonicStream(spec, batch_size=64, seed=3, world_size=1, rank=0)
    for index in (0, 1, 17):
        shares = [
            _whole(HarmonicStream(spec, batch_size=64, seed=3, world_size=world_size, rank=rank), index)
            for rank in range(world_size)
        ]
        assert torch.equal(torch.cat(shares), _whole(single, index))


def test_large_cpu_batches_are_chunked_without_changing_them() -> None:
    stream = HarmonicStream(SPEC, batch_size=10_000, seed=1)
    halves = [HarmonicStream(SPEC, batch_size=10_000, seed=1, world_size=2, rank=r) for r in range(2)]
    assert torch.equal(_whole(stream, 2), torch.cat([_whole(half, 2) for half in halves]))


def test_batches_are_a_pure_function_of_seed_and_index() -> None:
    first = HarmonicStream(SPEC, batch_size=32, seed=9)
    batches = [torch.cat(b, dim=1) for _, b in zip(range(4), first, strict=False)]
    again = HarmonicStream(SPEC, batch_size=32, seed=9)
    assert torch.equal(_whole(again, 3), batches[3])
    assert not torch.equal(batches[0], batches[1])


def test_different_seeds_and_splits_differ() -> None:
    train = _whole(HarmonicStream(SPEC, batch_size=256, seed=0), 0)
    other_seed = _whole(HarmonicStream(SPEC, batch_size=256, seed=1), 0)
    assert not torch.isclose(train, other_seed).all(dim=1).any()
    for split in ("validation", "test"):
        held_out = HarmonicStream(SPEC, batch_size=256, seed=0, split=split)
        for index in range(3):
            rows = _whole(held_out, index)
            same = (rows[:, None, :] == train[None, :, :]).all(dim=2)
            assert not same.any()


def test_resume_from_state_continues_exactly() -> None:
    uninterrupted = HarmonicStream(NOISY, batch_size=128, seed=4)
    expected = [torch.cat(b, dim=1) for _, b in zip(range(6), uninterrupted, strict=False)]
    first = HarmonicStream(NOISY, batch_size=128, seed=4)
    iterator = iter(first)
    for _ in range(4):
        next(iterator)
    state = first.state_dict()
    assert state == {"position": 4}
    resumed = HarmonicStream(NOISY, batch_size=128, seed=4)
    resumed.load_state_dict(state)
    following = [torch.cat(b, dim=1) for _, b in zip(range(2), resumed, strict=False)]
    assert torch.equal(following[0], expected[4]) and torch.equal(following[1], expected[5])


def test_resume_on_a_different_world_size() -> None:
    """Position 5 saved by 4 ranks resumes on 2 ranks with the same global batches."""
    saved = HarmonicStream(SPEC, batch_size=64, seed=2, world_size=4, rank=0)
    saved.position = 5
    pair = [HarmonicStream(SPEC, batch_size=64, seed=2, world_size=2, rank=r) for r in range(2)]
    for stream in pair:
        stream.load_state_dict(saved.state_dict())
    resumed = torch.cat([torch.cat(next(iter(stream)), dim=1) for stream in pair])
    assert torch.equal(resumed, _whole(HarmonicStream(SPEC, batch_size=64, seed=2), 5))


@pytest.mark.parametrize("state", [{"position": -1}, {"position": "3"}, {"pos": 3}, [3]])
def test_bad_state_is_rejected(state: object) -> None:
    stream = HarmonicStream(SPEC, batch_size=8)
    with pytest.raises(ConfigError):
        stream.load_state_dict(state)  # type: ignore[arg-type]
    assert stream.position == 0


def test_dataloader_with_automatic_batching_off() -> None:
    stream = HarmonicStream(SPEC, batch_size=64, seed=8)
    loader = DataLoader(stream, batch_size=None, num_workers=0)
    from_loader = [torch.cat(b, dim=1) for _, b in zip(range(3), loader, strict=False)]
    assert stream.position == 3
    reference = HarmonicStream(SPEC, batch_size=64, seed=8)
    assert all(torch.equal(batch, _whole(reference, i)) for i, batch in enumerate(from_loader))


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_processes_are_refused_with_a_clear_error(workers: int) -> None:
    """Even one worker: its copy of the stream would advance, this one's state_dict would not."""
    loader = DataLoader(HarmonicStream(SPEC, batch_size=8), batch_size=None, num_workers=workers)
    with pytest.raises(ConfigError, match="num_workers=0"):
        next(iter(loader))


def test_numpy_integers_are_integers_and_an_unusable_device_is_one_line() -> None:
    spec = SignalSpec(lookback=np.int64(100), horizon=np.int32(10), components=(np.int64(3), 10), noise=np.float32(0.5))
    assert spec == SignalSpec(components=(3, 10), noise=0.5) and type(spec.lookback) is int
    stream = HarmonicStream(spec, np.int64(8), seed=np.uint64(3), num_batches=np.int64(2))
    stream.load_state_dict({"position": np.int64(1)})
    assert stream.state_dict() == {"position": 1} and torch.equal(stream.batch(np.int64(1))[0], stream.batch(1)[0])
    for bad in (np.bool_(True), 2.0):
        with pytest.raises(ConfigError, match=r"stream\.batch_size"):
            HarmonicStream(spec, bad)
    for device in ("bogus", "cuda:99"):
        with pytest.raises(ConfigError, match=f"stream.device: device '{device}' is not usable here") as error:
            HarmonicStream(spec, 8, device=device)
        assert "\n" not in str(error.value)


def test_finite_stream_has_length_and_starts_over() -> None:
    stream = HarmonicStream(SPEC, batch_size=16, seed=0, split="validation", num_batches=3)
    assert len(stream) == 3
    first = [torch.cat(b, dim=1) for b in stream]
    second = [torch.cat(b, dim=1) for b in stream]
    assert len(first) == 3 and all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    with pytest.raises(TypeError):
        len(HarmonicStream(SPEC, batch_size=16))


def test_component_counts_per_row() -> None:
    *_, count = HarmonicStream(SPEC, batch_size=512, return_components=True).batch(0)
    assert count.shape == (512,) and count.dtype == torch.int64
    assert int(count.min()) >= 3 and int(count.max()) <= 44


def test_noise_levels_interleave_by_signal_index() -> None:
    levels = (0.0, 0.03, 0.3)
    mixed = HarmonicStream(SPEC.replace(noise=list(levels)), batch_size=12, seed=5, world_size=2, rank=1)
    start = 2 * 12 + 6  # the first signal of rank 1's share of batch 2
    for offset, level in enumerate(levels):
        single = HarmonicStream(SPEC.replace(noise=level), batch_size=12, seed=5, world_size=2, rank=1)
        rows = [row for row in range(6) if (start + row) % len(levels) == offset]
        assert torch.equal(_whole(mixed, 2)[rows], _whole(single, 2)[rows])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"batch_size": 0}, "stream.batch_size"),
        ({"batch_size": 10, "world_size": 4}, "stream.batch_size"),
        ({"batch_size": 8, "world_size": 2, "rank": 2}, "stream.rank"),
        ({"batch_size": 8, "seed": -1}, "stream.seed"),
        ({"batch_size": 8, "split": "val"}, "stream.split"),
        ({"batch_size": 8, "num_batches": 0}, "stream.num_batches"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}:"):
        HarmonicStream(SPEC, **kwargs)


def test_single_process_accelerate_prepare_without_dispatch() -> None:
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(dispatch_batches=False))
    stream = HarmonicStream(SPEC, batch_size=32, seed=6, device=accelerator.device)
    loader = accelerator.prepare(DataLoader(stream, batch_size=None))
    lookback, target = next(iter(loader))
    assert torch.equal(torch.cat([lookback, target], dim=1), _whole(HarmonicStream(SPEC, batch_size=32, seed=6), 0))


@pytest.mark.slow
def test_two_processes_under_accelerate_launch(tmp_path: Path) -> None:
    """A real ``accelerate launch`` with 2 CPU processes (gloo): gathered shares equal the 1-process batch."""
    output = tmp_path / "result.json"
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "launch" / "accelerate" / "cpu_2proc.yaml"),
        str(ROOT / "tests" / "scripts" / "stream_under_accelerate.py"), str(output),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report == {"world_size": 2, "batches_equal": [True, True, True], "rank_rows": [32, 32]}
