"""Mixed precision and the other run.* speed switches."""
import pytest
import torch

from mate.cli import main
from mate.engine import Trainer, load_checkpoint
from mate.errors import ConfigError

SMALL = {"data.train_subset": 512, "data.val_size": 256, "data.test_subset": 256, "data.batch_size": 64,
         "model.width": 4}


def test_bf16_autocast_runs_the_model_in_bf16_and_trains(tmp_path, tiny_config):
    trainer = Trainer(tiny_config(tmp_path, "mate", 1, **SMALL, **{"run.amp": "bf16"}), log=lambda s: None)
    x, y = next(iter(trainer.data.train))
    with trainer.autocast():
        out = trainer.model(trainer.to_memory_format(x))
    assert all(z.dtype == torch.bfloat16 for z in out.exit_logits)
    assert trainer.model.stem[0].weight.dtype == torch.float32  # master weights stay float32
    before = trainer.model.stem[0].weight.detach().clone()
    logs = trainer.train_epoch(0)
    assert 0 < logs["loss"] < 30 and not torch.equal(before, trainer.model.stem[0].weight)
    results = trainer.fit()
    assert results["test"]["n"] == 256


def test_fp16_on_cpu_is_one_clear_error(tmp_path, capsys):
    assert main(["train", "run.device=cpu", "run.amp=fp16", f"run.out_dir={tmp_path}", "data.download=false"]) == 2
    assert capsys.readouterr().err.strip() == (
        "mate: error: run.amp=fp16 needs a CUDA device (float16 autocast with a gradient scaler); this run is on "
        "cpu. Use run.amp=bf16, or run.amp=none")
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_unknown_amp_value_is_a_config_error(tmp_path, tiny_config):
    with pytest.raises(ConfigError, match=r"config key 'run.amp' must be one of 'none', 'bf16', 'fp16', 'auto', got 'fp8'"):
        tiny_config(tmp_path, "ce", 1, **{"run.amp": "fp8"})


def test_fp16_uses_a_gradient_scaler_on_cuda(tmp_path, tiny_config):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    trainer = Trainer(tiny_config(tmp_path, "ce", 1, **SMALL, **{"run.amp": "fp16", "run.device": "cuda"}),
                      log=lambda s: None)
    assert trainer.scaler.is_enabled()
    x, _ = next(iter(trainer.data.train))
    with trainer.autocast():
        out = trainer.model(trainer.to_memory_format(x))
    assert all(z.dtype == torch.float16 for z in out.exit_logits)
    scales = []  # the scale after each optimizer step's update
    real_update = trainer.scaler.update

    def update(*args, **kwargs):
        real_update(*args, **kwargs)
        scales.append(trainer.scaler.get_scale())

    trainer.scaler.update = update
    trainer.fit()
    assert len(scales) == 512 // 64  # every optimizer step of the epoch goes through the scaler
    # From 2**16 the scale only halves (a step whose gradients overflowed is skipped); it would double
    # after 2000 clean steps only.
    previous = 2.0**16
    for scale in scales:
        assert scale in (previous, previous / 2), scales
        previous = scale
    assert load_checkpoint(trainer.run_dir / "last.pt")["scaler"]["scale"] == scales[-1]  # resumed as it was


def test_compiled_step_computes_the_same_loss_and_gradients_as_eager(tmp_path, tiny_config):
    """run.compile wraps model + objective in torch.compile; one step must match eager mode."""
    opts = {**SMALL, "data.train_subset": 128, "run.channels_last": False}
    eager = Trainer(tiny_config(tmp_path / "e", "mate", 1, **opts), log=lambda s: None)
    compiled = Trainer(tiny_config(tmp_path / "c", "mate", 1, **opts, **{"run.compile": True}), log=lambda s: None)
    assert compiled.step is not eager.step and hasattr(compiled.step, "_orig_mod")
    x, y = next(iter(eager.data.train))
    losses, grads = [], []
    for trainer in (eager, compiled):
        loss, _ = trainer.step(trainer.to_memory_format(x), y, 0.5)
        loss.backward()
        losses.append(loss.item())
        grads.append(trainer.model.stem[0].weight.grad.clone())
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    # Fused backward kernels sum in another order; through four stages of BatchNorm the stem's
    # float32 gradient differs by a fraction of a percent (eager 1 vs 2 threads differs as much).
    rel = (grads[1] - grads[0]).norm() / grads[0].norm()
    assert rel < 2e-2, rel


def test_objective_runs_in_float32_under_bf16_autocast_and_checkpoints_stay_float32(tmp_path, tiny_config):
    """The model's convolutions run in bf16; MATE's weight network, its softmaxes, the KLs and the CEs
    see float32 inputs and compute in float32; what is saved is float32."""
    trainer = Trainer(tiny_config(tmp_path, "mate", 1, **SMALL, **{"run.amp": "bf16"}), log=lambda s: None)
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = (inputs[0].dtype, output.dtype)
        return hook

    trainer.objective.weight_net.query.register_forward_hook(record("query"))
    trainer.objective.weight_net.key.register_forward_hook(record("key"))
    x, y = next(iter(trainer.data.train))
    with trainer.autocast():
        out = trainer.model(trainer.to_memory_format(x))
        loss, logs = trainer.step(trainer.to_memory_format(x), y, 0.5)
    assert out.exit_logits[0].dtype == torch.bfloat16
    assert seen == {"query": (torch.float32, torch.float32), "key": (torch.float32, torch.float32)}
    assert loss.dtype == torch.float32 and logs["attention"].dtype == torch.float32
    assert logs["teacher_student_kl"].dtype == torch.float32
    results = trainer.fit()
    assert results["amp"] == "bf16"
    state = load_checkpoint(tmp_path / trainer.run_dir.name / "best.pt")
    for part in ("model", "objective"):
        assert all(v.dtype in (torch.float32, torch.int64) for v in state[part].values()), part


def test_amp_auto_resolves_to_bf16_only_where_the_hardware_has_it(monkeypatch):
    from mate.engine.trainer import resolve_amp

    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert resolve_amp("auto", cpu) == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert resolve_amp("auto", cpu) == "none"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert resolve_amp("auto", cpu) == "bf16"
    assert resolve_amp("none", cpu) == "none" and resolve_amp("bf16", cpu) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_amp("auto", torch.device("cuda")) == "none"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_amp("auto", torch.device("cuda")) == "bf16"


@pytest.mark.parametrize("native", [True, False])
def test_the_main_job_trains_in_bf16_exactly_where_the_cpu_has_it(tmp_path, fmnist_root, monkeypatch, native):
    """The shipped main job says run.amp: auto (docs/benchmarks.md: bf16 kept its accuracy)."""
    from mate.config import DEFAULT_CONFIG, load_config

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    overrides = [f"{k}={v}" for k, v in SMALL.items()]
    config = load_config(DEFAULT_CONFIG, [f"data.root={fmnist_root}", "data.download=false", "run.device=cpu",
                                          f"run.out_dir={tmp_path}", *overrides])
    assert config.run.amp == "auto"
    assert Trainer(config, log=lambda s: None).amp == ("bf16" if native else "none")
