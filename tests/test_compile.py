"""The compiled training step (``train.compile``) computes what the eager one does, on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from harmonic_forecast import HarmonicStream, SignalSpec
from harmonic_forecast.losses import weighted_mse
from harmonic_forecast.models import ModelConfig, build_model
from harmonic_forecast.train import TrainingObjective
from harmonic_forecast.trainer import stream_windows
from tests.run_helpers import run_cli, write_config

pytestmark = pytest.mark.slow  # the first compilation takes a minute on a small CPU


def _loss_and_gradients(
    objective: torch.nn.Module, lookback: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    objective.zero_grad(set_to_none=True)
    loss = objective(lookback, target)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in objective.named_parameters()}


# the seed's model and the default one, on short windows (compiling a decoder unrolled over 10 steps takes a minute)
SMALL = {
    "seed_gru": {"kind": "seed_gru", "lookback": 40, "horizon": 3},
    "expert_gru": {"kind": "expert_gru", "lookback": 40, "horizon": 3, "ar_orders": [1, 2, 4], "clean_ar_order": 16},
}


@pytest.mark.parametrize("kind", SMALL)
def test_compiled_objective_matches_eager_loss_and_gradients(kind: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_dict({**SMALL[kind], "hidden": 16, "encoder_width": 16}))
    spec = SignalSpec(lookback=model.config.lookback, horizon=model.config.horizon)
    model.fit_to_data(stream_windows(seed=0), spec)
    objective = TrainingObjective(model, weighted_mse)
    lookback, target = HarmonicStream(spec, batch_size=64, seed=1).batch(0)
    eager_loss, eager_gradients = _loss_and_gradients(objective, lookback, target)
    compiled = torch.compile(objective, dynamic=False)
    for _ in range(2):  # the first call compiles, the second runs the cached code
        loss, gradients = _loss_and_gradients(compiled, lookback, target)
        torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-7)
        assert gradients.keys() == {f"_orig_mod.{name}" for name in eager_gradients}
        for name, gradient in eager_gradients.items():
            torch.testing.assert_close(gradients[f"_orig_mod.{name}"], gradient, rtol=1e-4, atol=1e-6)


def test_compiled_run_resumes_and_follows_the_eager_run(tmp_path: Path, single: Path) -> None:
    """Stopped at step 10 and resumed; plain weight names in the model and checkpoints, eager's weights closely."""
    write_config(tmp_path)
    train = ("train", "--config", "tiny.toml", "--output-dir", "run", "--set", "train.compile=true")
    first = run_cli(*train, "--max-steps", "10", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "training step compiled" in first.stdout
    second = run_cli(*train, "--resume", "auto", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    eager = load_file(str(single / "model" / "model.safetensors"))
    compiled = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    checkpoint = load_file(str(tmp_path / "run" / "checkpoints" / "step_20" / "model.safetensors"))
    assert compiled.keys() == eager.keys() == checkpoint.keys()
    for name, weight in eager.items():
        torch.testing.assert_close(compiled[name], weight, rtol=1e-3, atol=1e-4)
        assert torch.equal(checkpoint[name], compiled[name])
