"""The seed GRU forecaster: shapes, feedback, config + safetensors round trip, device hygiene."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harmonic_forecast import ConfigError, SignalSpec
from harmonic_forecast.losses import horizon_weights, mse, weighted_mse
from harmonic_forecast.models import (
    SEED_MODEL,
    ExpertGRUConfig,
    LSTMConfig,
    LSTMForecaster,
    ModelConfig,
    SeedGRUConfig,
    SeedGRUForecaster,
    Seq2SeqGRUConfig,
    Seq2SeqGRUForecaster,
    SparseGRUConfig,
    build_model,
    flops_per_sample,
)
from harmonic_forecast.scaling import scale_windows
from harmonic_forecast.trainer import stream_windows
from tests.device_recorder import DeviceRecorder


def test_seed_shapes_and_parameter_count() -> None:
    model = SeedGRUForecaster(SEED_MODEL)
    assert model.encoder[0].in_features == 202 and model.encoder[-1].out_features == 140
    assert model(torch.randn(5, 100)).shape == (5, 10)
    gru = 3 * (140 * 1 + 140 * 140 + 2 * 140)
    encoder = (202 * 100 + 100) + (100 * 202 + 202) + (202 * 140 + 140)
    head = (140 * 70 + 70) + (70 * 35 + 35) + (35 + 1)
    assert sum(p.numel() for p in model.parameters()) == gru + encoder + head


@pytest.mark.parametrize("detach", [True, False])
def test_feedback_gradient_follows_the_option(detach: bool) -> None:
    """Step 1 depends on step 0's prediction through the fed-back value only when it is not detached."""
    torch.manual_seed(0)
    model = SeedGRUForecaster(SeedGRUConfig(horizon=3, detach_feedback=detach))
    head_outputs: list[torch.Tensor] = []
    model.head.register_forward_hook(lambda module, args, output: head_outputs.append(output))
    forecast = model(torch.randn(4, 100))
    (gradient,) = torch.autograd.grad(forecast[:, 1].sum(), head_outputs[0])
    assert (float(gradient.abs().sum()) == 0.0) == detach


@pytest.mark.parametrize("kind", ["sparse_gru", "wiener_gru", "seed_gru"])
def test_save_and_load_without_training_code(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(1)
    model = build_model(ModelConfig.from_dict({"kind": kind, "hidden": 32, "encoder_width": 16}))
    model.fit_to_data(stream_windows(seed=0), SignalSpec(components=(3, 10)))
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == kind
    loaded = type(model).from_pretrained(tmp_path)
    lookback = torch.randn(3, 100)
    assert torch.equal(loaded(lookback), model(lookback))


@pytest.mark.parametrize("damage", ["missing", "bad_json", "wrong_type", "truncated_weights", "wrong_shape"])
def test_bad_model_directories_give_one_line_errors(tmp_path: Path, damage: str) -> None:
    SeedGRUForecaster(SeedGRUConfig(hidden=32)).save_pretrained(tmp_path)
    config, weights = tmp_path / "config.json", tmp_path / "model.safetensors"
    if damage == "missing":
        weights.unlink()
    elif damage == "bad_json":
        config.write_text("{not json")
    elif damage == "wrong_type":
        config.write_text(json.dumps({"model_type": "other"}))
    elif damage == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        config.write_text(json.dumps({"model_type": "seed_gru", **{"hidden": 64}}))
    with pytest.raises(ConfigError) as error:
        SeedGRUForecaster.from_pretrained(tmp_path)
    assert "\n" not in str(error.value)
    if damage == "wrong_shape":  # the cause, which torch gives on a later line, is kept
        assert "size mismatch for" in str(error.value)


def test_a_loaded_model_is_in_eval_mode_on_a_usable_device(tmp_path: Path) -> None:
    SeedGRUForecaster(SeedGRUConfig(hidden=8)).save_pretrained(tmp_path)
    model = SeedGRUForecaster.from_pretrained(tmp_path)
    assert not model.training
    for shape in ((100,), (2, 99), (2, 100, 1)):
        with pytest.raises(ConfigError, match=r"lookback: expected \[B, 100\]"):
            model(torch.zeros(shape))
    with pytest.raises(ConfigError, match="device: device 'cuda:99' is not usable here"):
        SeedGRUForecaster.from_pretrained(tmp_path, device="cuda:99")


@pytest.mark.parametrize("kind", ["sparse_gru", "wiener_gru", "seed_gru", "lstm", "seq2seq_gru"])
def test_forward_and_training_loss_touch_only_the_model_device(kind: str) -> None:
    model = build_model(ModelConfig.from_dict({"kind": kind, "hidden": 16})).to("meta")
    lookback, target = torch.empty(8, 100, device="meta"), torch.empty(8, 10, device="meta")
    with DeviceRecorder() as recorder:
        forecast = model(lookback)
        model.training_loss(lookback, target, weighted_mse)
    assert recorder.devices == {"meta"} and forecast.shape == (8, 10)


def test_losses() -> None:
    weights = horizon_weights(4)
    torch.testing.assert_close(weights, torch.tensor([12, 6, 4, 3]) / 25.0)
    target = torch.zeros(2, 4)
    constant = torch.full((2, 4), 0.5)
    torch.testing.assert_close(weighted_mse(constant, target), torch.tensor(0.25))
    late = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    early = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert weighted_mse(early, target[:1]) > weighted_mse(late, target[:1])
    assert mse(early, target[:1]) == mse(late, target[:1])


def test_lstm_objective_is_next_step_and_forecast_is_autoregressive() -> None:
    torch.manual_seed(0)
    model = LSTMForecaster(LSTMConfig(hidden=8))
    lookback, target = torch.randn(3, 100), torch.randn(3, 10)
    signal = torch.cat(scale_windows(lookback, target), dim=1).float()  # the objective reads scaled windows
    output, _ = model.lstm(signal[:, :-1].unsqueeze(-1))
    expected = mse(model.readout(output).squeeze(-1), signal[:, 1:])
    torch.testing.assert_close(model.training_loss(lookback, target, weighted_mse), expected)
    forecast = model.forecast_scaled(lookback)  # the model proper, on windows taken as already scaled
    extended = torch.cat([lookback, forecast[:, :1]], dim=1)
    torch.testing.assert_close(model.forecast_scaled(extended)[:, 0], forecast[:, 1], atol=1e-5, rtol=0)


def test_seq2seq_teacher_forcing_uses_the_true_previous_values() -> None:
    torch.manual_seed(0)
    model = Seq2SeqGRUForecaster(Seq2SeqGRUConfig(hidden=10))
    assert model.decoder.hidden_size == 10 + 2 * 51
    lookback, target = torch.randn(4, 100), torch.randn(4, 10)
    forced = model.training_loss(lookback, target, lambda prediction, _: prediction.sum())
    changed = target.clone()
    changed[:, -1] += 1.0  # the last true value is never fed to the decoder
    assert torch.equal(forced, model.training_loss(lookback, changed, lambda prediction, _: prediction.sum()))
    changed[:, 0] += 1.0  # the first one is
    assert not torch.equal(forced, model.training_loss(lookback, changed, lambda prediction, _: prediction.sum()))
    assert model(lookback).shape == (4, 10)


def test_loading_a_model_of_another_kind_is_refused(tmp_path: Path) -> None:
    LSTMForecaster(LSTMConfig(hidden=8)).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="holds a model of kind lstm, not SeedGRUForecaster"):
        SeedGRUForecaster.from_pretrained(tmp_path)


@pytest.mark.parametrize("config", [SparseGRUConfig(), SEED_MODEL, Seq2SeqGRUConfig(hidden=10)])
def test_flops_per_sample_matches_pytorchs_flop_counter(config: ModelConfig) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(config)
    lookback, target = torch.randn(32, 100), torch.randn(32, 10)
    with FlopCounterMode(display=False) as forward:
        model(lookback)
    with FlopCounterMode(display=False) as training:
        model.training_loss(lookback, target, weighted_mse).backward()
    assert flops_per_sample(config, training=False) == pytest.approx(forward.get_total_flops() / 32, rel=1e-6)
    assert flops_per_sample(config, training=True) == pytest.approx(training.get_total_flops() / 32, rel=0.02)


def test_expert_gru_flops_bound_what_pytorch_counts() -> None:
    """The experts' count takes the highest AR order for every window's refit: an upper bound, and a close one."""
    from torch.utils.flop_counter import FlopCounterMode

    config = ExpertGRUConfig(hidden=16, encoder_width=16)
    model = build_model(config)
    lookback = torch.randn(32, 100).cumsum(dim=1)
    with FlopCounterMode(display=False) as forward:
        model(lookback)
    counted = forward.get_total_flops() / 32
    assert counted <= flops_per_sample(config, training=False) <= 1.2 * counted


def test_lstm_flops_count_every_step() -> None:
    config = LSTMConfig(hidden=8, lookback=20, horizon=5)
    per_step = 2 * 4 * 8 * (1 + 8) + 2 * 8
    assert flops_per_sample(config, training=False) == 24 * per_step


def test_peak_flops_is_unknown_on_a_cpu() -> None:
    from harmonic_forecast.hardware import PEAK_FLOPS, peak_flops

    assert peak_flops(torch.device("cpu"), bf16=False) is None
    assert PEAK_FLOPS["H200"][0] > PEAK_FLOPS["H200"][1] > 0


def test_the_residual_kinds_are_one_network_given_different_skip_paths() -> None:
    from harmonic_forecast.models import ResidualGRUForecaster
    from harmonic_forecast.models.skips import SparseSkip, WienerSkip

    sparse = build_model(ModelConfig.from_dict({"kind": "sparse_gru", "hidden": 16, "encoder_width": 16}))
    wiener = build_model(ModelConfig.from_dict({"kind": "wiener_gru", "hidden": 16, "encoder_width": 16}))
    assert type(sparse) is type(wiener) is ResidualGRUForecaster
    assert isinstance(sparse.skip, SparseSkip) and isinstance(wiener.skip, WienerSkip)
    network = {name: p.shape for name, p in sparse.named_parameters()}
    assert network == {name: p.shape for name, p in wiener.named_parameters()}


def test_each_family_declares_its_own_fields() -> None:
    assert ModelConfig.from_dict({"kind": "sparse_gru", "periods": [10, 50]}).periods == (10, 50)
    for kind in ("seed_gru", "wiener_gru", "lstm", "seq2seq_gru"):
        with pytest.raises(ConfigError, match=r"^model\.periods: unknown key \(known: kind, lookback,") as error:
            ModelConfig.from_dict({"kind": kind, "periods": [10, 50]})
        assert "\n" not in str(error.value) and "periods" not in str(error.value).partition("known:")[2]
    assert ModelConfig.from_dict({}) == ExpertGRUConfig()  # the default kind
    with pytest.raises(TypeError, match="shared base"):
        ModelConfig(kind="seed_gru")
    with pytest.raises(TypeError, match="needs a SparseGRUConfig"):
        build_model(SeedGRUConfig().model_copy(update={"kind": "sparse_gru"}))


def test_old_config_files_still_load(tmp_path: Path) -> None:
    """Before the fields were sparse_gru's own every kind wrote them; a config without input_scaling reads as "none"."""
    SeedGRUForecaster(SeedGRUConfig(hidden=32)).save_pretrained(tmp_path)
    values = json.loads((tmp_path / "config.json").read_text())
    del values["input_scaling"]
    (tmp_path / "config.json").write_text(json.dumps(values | {"periods": [10, 100], "sparse_iterations": 16}))
    model = SeedGRUForecaster.from_pretrained(tmp_path)
    assert model.config == SeedGRUConfig(hidden=32, input_scaling="none")


def test_an_expert_gru_saved_before_its_later_rules_reads_as_trained(tmp_path: Path) -> None:
    from harmonic_forecast.models import read_model_config

    build_model(ExpertGRUConfig(hidden=8, encoder_width=8, sparse_iterations=6)).save_pretrained(tmp_path)
    values = json.loads((tmp_path / "config.json").read_text())
    assert values["sparse_folds"] == 3  # written by this version
    for key in ("sparse_folds", "fold_iterations", "trust_earned", "break_ratio", "break_floor", "break_unexplained"):
        del values[key]
    for key in ("clean_noise_variance", "clean_fold_iterations", "clean_refine_iterations", "clean_ar_order"):
        del values[key]
    del values["clean_ar_fit"], values["clean_ar_in_training"], values["trust_cap"]
    (tmp_path / "config.json").write_text(json.dumps(values))
    expected = ExpertGRUConfig(
        hidden=8,
        encoder_width=8,
        sparse_iterations=6,
        sparse_folds=1,
        trust_earned=False,
        trust_cap="prior",
        break_ratio=0.0,
        clean_ar_order=0,
        clean_noise_variance=1e-10,
        clean_ar_fit="forward",
        clean_ar_in_training=False,
    )
    assert read_model_config(tmp_path) == expected


def test_the_shipped_model_loads_strictly() -> None:
    from harmonic_forecast.forecast import PRETRAINED
    from harmonic_forecast.models import ExpertGRUForecaster, read_model_config

    config = read_model_config(PRETRAINED)
    assert config == ExpertGRUConfig() and config.input_scaling == "lookback"
    model = ExpertGRUForecaster.from_pretrained(PRETRAINED)  # load_state_dict is strict: every name matches
    assert model.wiener.eigenvalues.max() > 0
