"""On a CUDA device: the compiled bf16 step equals eager, steps between log intervals make no host sync,
and the stream's batches are made on the GPU.

Marked ``gpu``: ``make test`` deselects them, ``benchmarks/gpu_check.sh`` runs them (``pytest -m gpu``).
Without a CUDA device they fail rather than skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from harmonic_forecast import HarmonicStream, SignalSpec
from harmonic_forecast.config import RunConfig, load_run_config
from harmonic_forecast.losses import weighted_mse
from harmonic_forecast.models import SEED_MODEL, ModelConfig, build_model
from harmonic_forecast.train import TrainingObjective, train
from harmonic_forecast.trainer import stream_windows
from tests.device_recorder import DeviceRecorder
from tests.run_helpers import tiny_config, write_config

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
WARMUP_STEPS = 3  # compilation, CUDA-graph warm-up and recording may synchronise
SEED_SIZED = tiny_config(
    train={
        "batch_size": 1024,
        "lr": 1e-3,
        "warmup_steps": 5,
        "log_every": 10,
        "checkpoint_every": 1000,
        "device": "cuda",
    },
    eval={"every": 1000, "batches": 1, "batch_size": 1024},
    model={"kind": "seed_gru", "hidden": 140, "encoder_width": 100},
    stages=[{"components": [3, 45], "steps": 40}],
)


def _config(tmp_path: Path, compile_step: bool) -> RunConfig:
    path = write_config(tmp_path, SEED_SIZED, f"compile-{compile_step}.toml")
    return load_run_config(path, [f"train.compile={str(compile_step).lower()}"])


@pytest.fixture
def sync_probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Raise on any host sync in training steps that neither log nor warm up; yields the step indices checked.

    The stream's ``batch`` starts each step, so it switches CUDA's sync debug mode for the step.
    """
    original, checked = HarmonicStream.batch, []

    def batch(stream: HarmonicStream, index: int) -> tuple[torch.Tensor, ...]:
        if stream.split == "train":
            quiet = index >= WARMUP_STEPS and (index + 1) % 10 != 0  # step index + 1 logs when a multiple of 10
            torch.cuda.set_sync_debug_mode("error" if quiet else "default")
            checked.extend([index] if quiet else [])
        return original(stream, index)

    monkeypatch.setattr(HarmonicStream, "batch", batch)
    try:
        yield checked
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _parameters(objective: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name.removeprefix("_orig_mod."): p for name, p in objective.named_parameters()}


def _bf16_step(
    objective: torch.nn.Module, lookback: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss and gradients of one bf16-autocast step (copied: CUDA graphs reuse their outputs' memory)."""
    objective.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = objective(lookback, target)
    loss.backward()
    return loss.detach().clone(), {name: p.grad.clone() for name, p in _parameters(objective).items()}


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).norm() / expected.norm().clamp(min=1e-12))


@pytest.mark.parametrize("kind", ["seed_gru", "wiener_gru", "sparse_gru"])
def test_compiled_bf16_step_matches_eager(kind: str) -> None:
    torch.manual_seed(0)
    config = SEED_MODEL if kind == "seed_gru" else ModelConfig.from_dict({"kind": kind})
    model = build_model(config)
    model.fit_to_data(stream_windows(seed=0), SignalSpec())
    objective = TrainingObjective(model.to(CUDA), weighted_mse)
    lookback, target = HarmonicStream(SignalSpec(), batch_size=1024, seed=1, device=CUDA).batch(0)
    eager_loss, eager_gradients = _bf16_step(objective, lookback, target)
    compiled = torch.compile(objective, mode="reduce-overhead", dynamic=False)
    for _ in range(4):  # warm-up, CUDA-graph recording, then replays
        loss, gradients = _bf16_step(compiled, lookback, target)
        torch.testing.assert_close(loss, eager_loss, rtol=1e-2, atol=1e-4)
        for name, gradient in eager_gradients.items():
            assert _relative_error(gradients[name], gradient) < 3e-2, name


def test_compiled_training_follows_eager_without_host_syncs(tmp_path: Path, sync_probe: list[int]) -> None:
    """The trainer on CUDA, eager then compiled: the compiled run stays within 10% of the distance eager travelled."""
    eager = _config(tmp_path, compile_step=False)
    train(eager, tmp_path / "eager")
    train(_config(tmp_path, compile_step=True), tmp_path / "compiled")
    assert len(sync_probe) == 2 * (40 - WARMUP_STEPS - 4)  # both runs checked all their quiet steps
    torch.manual_seed(eager.train.seed)
    start = build_model(eager.model).state_dict()
    eager_weights = load_file(str(tmp_path / "eager" / "model" / "model.safetensors"))
    compiled_weights = load_file(str(tmp_path / "compiled" / "model" / "model.safetensors"))
    assert eager_weights.keys() == compiled_weights.keys() == start.keys()
    travelled = torch.cat([(eager_weights[n] - start[n]).flatten() for n in start]).norm()
    apart = torch.cat([(compiled_weights[n] - eager_weights[n]).flatten() for n in start]).norm()
    assert apart < 0.1 * travelled, (float(apart), float(travelled))


def test_generator_batches_are_made_on_the_gpu_without_syncs() -> None:
    stream = HarmonicStream(SignalSpec(noise=0.1), batch_size=4096, seed=2, device=CUDA)
    stream.batch(0)  # builds the cached period table (a host-to-device copy)
    recorder = DeviceRecorder()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with recorder:
            lookback, target = stream.batch(1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert lookback.device.type == target.device.type == "cuda"
    assert recorder.devices == {"cuda"}
