"""Recipe options (optim.name, label smoothing, clipping, EMA, gradient accumulation): what each
computes, how each is validated, and that each resumes exactly."""
import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import make_tiny_config as tiny_config
from test_reliability import _tensors
from mate.config import load_config
from mate.engine import Trainer, TrainStep, load_checkpoint, load_trained, save_checkpoint, train
from mate.engine.ema import WeightEMA
from mate.engine.trainer import build_optimizer, check_optim_options
from mate.errors import ConfigError
from mate.evaluation.logits import collect_exit_logits
from mate.models import MultiExitOutput
from mate.objectives import OBJECTIVES, create_objective
from mate.objectives.functional import exits_cross_entropy

SMALL = {"data.train_subset": 512, "data.val_size": 256, "data.test_subset": 256, "data.batch_size": 64,
         "model.width": 4, "run.name": "run"}
# Plain SGD (no momentum, no weight decay, constant rate): one step is w - lr * g, easy to redo by hand.
PLAIN_SGD = {"optim.momentum": 0.0, "optim.nesterov": False, "optim.weight_decay": 0.0,
             "optim.schedule": "constant"}


def small_config(tmp_path, objective="ce", epochs=1, **extra):
    return tiny_config(tmp_path, objective, epochs, **{**SMALL, **extra})


def quiet(message):
    pass


# -- label smoothing -----------------------------------------------------------------------------
def test_exits_cross_entropy_smooths_the_labels():
    z = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    y = torch.tensor([0, 1])
    log_p = F.log_softmax(z, -1)
    eps = 0.2
    by_hand = ((1 - eps) * -log_p[torch.arange(2), y] + eps * -log_p.mean(-1)).mean()
    got = exits_cross_entropy([z, z * 2], y, label_smoothing=eps)
    assert got[0].item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert torch.equal(exits_cross_entropy([z], y), F.cross_entropy(z, y)[None])  # default: plain CE


def test_label_smoothing_reaches_the_exits_and_mates_teachers():
    torch.manual_seed(0)
    k, b, c, d = 3, 6, 5, 8
    outputs = MultiExitOutput([torch.randn(b, c) for _ in range(k)], [torch.randn(b, d) for _ in range(k)])
    y = torch.randint(0, c, (b,))
    objective = create_objective("mate", num_exits=k, feature_dim=d, num_classes=c, label_smoothing=0.1)
    _, logs = objective(outputs, y, epoch=1.0)
    teachers, _ = objective.teachers(outputs)
    for m in range(k):
        assert logs["ce"][m] == F.cross_entropy(outputs.exit_logits[m], y, label_smoothing=0.1)
        assert logs["teacher_ce"][m] == F.cross_entropy(teachers[:, m], y, label_smoothing=0.1)
    assert logs["ce"][0] != F.cross_entropy(outputs.exit_logits[0], y)


def test_every_shipped_objective_takes_label_smoothing(tmp_path, fmnist_root):
    for name in OBJECTIVES.names():
        assert "label_smoothing" in OBJECTIVES.options(name), name
    trainer = Trainer(small_config(tmp_path, "sdn", **{"optim.label_smoothing": 0.15}), log=quiet)
    assert trainer.objective.label_smoothing == 0.15


def test_label_smoothing_is_an_optim_key_not_an_objective_key():
    with pytest.raises(ConfigError, match=r"^'objective.label_smoothing' is set from optim.label_smoothing; "
                                          r"remove it from the config$"):
        load_config(None, ["objective.label_smoothing=0.1"])


def test_an_objective_without_label_smoothing_refuses_it(tmp_path, fmnist_root, monkeypatch):
    class PlainCE(nn.Module):
        def __init__(self, num_exits: int, feature_dim: int = 0, num_classes: int = 0):
            super().__init__()

        def forward(self, outputs, targets, epoch=0.0):
            ce = exits_cross_entropy(outputs.exit_logits, targets)
            return ce.sum(), {"ce": ce.detach()}

    monkeypatch.setitem(OBJECTIVES._entries, "plain_ce", PlainCE)
    assert isinstance(Trainer(small_config(tmp_path / "a", "plain_ce"), log=quiet).objective, PlainCE)
    with pytest.raises(ConfigError, match=r"^optim.label_smoothing=0.1: objective 'plain_ce' does not take "
                                          r"label_smoothing"):
        Trainer(small_config(tmp_path / "b", "plain_ce", **{"optim.label_smoothing": 0.1}), log=quiet)


# -- optimizers ----------------------------------------------------------------------------------
def test_adamw_takes_lr_betas_and_decoupled_weight_decay():
    cfg = load_config(None, ["optim.name=adamw", "optim.lr=0.01", "optim.betas=[0.8, 0.99]",
                             "optim.weight_decay=0.1"])
    w = nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    optimizer = build_optimizer(cfg, [{"params": [w]}])
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["betas"] == (0.8, 0.99)
    w.grad = torch.tensor([0.5, 0.5, -4.0])
    optimizer.step()
    # First step: bias-corrected m / sqrt(v) is g / |g|; the decay multiplies w by 1 - lr * wd.
    expected = torch.tensor([1.0, -2.0, 3.0]) * (1 - 0.01 * 0.1) - 0.01 * torch.tensor([1.0, 1.0, -1.0])
    assert torch.allclose(w.detach(), expected, atol=1e-6)


def test_sgd_is_the_default_optimizer_with_its_keys():
    cfg = load_config(None, ["optim.lr=0.05", "optim.momentum=0.8", "optim.nesterov=true"])
    w = nn.Parameter(torch.zeros(2))
    optimizer = build_optimizer(cfg, [{"params": [w]}, {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.5}])
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.05, 0.8, True, 5e-4)
    assert optimizer.param_groups[1]["lr"] == 0.5  # a group keeps its own rate


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("override,message", [
    ("optim.accumulate_steps=0", "config key 'optim.accumulate_steps' must be >= 1, got 0"),
    ("optim.clip_grad_norm=-1", "config key 'optim.clip_grad_norm' must be >= 0, got -1.0"),
    ("optim.ema_decay=1", "config key 'optim.ema_decay' must be in [0, 1), got 1.0"),
    ("optim.label_smoothing=1.5", "config key 'optim.label_smoothing' must be in [0, 1), got 1.5"),
    ("optim.betas=[0.9,1.0]", "config key 'optim.betas[1]' must be in [0, 1), got 1.0"),
    ("run.log_every=-5", "config key 'run.log_every' must be >= 0, got -5"),
])
def test_recipe_values_out_of_range_are_one_clear_error(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert str(info.value) == message


def test_adam_betas_are_two():
    with pytest.raises(ConfigError) as info:
        check_optim_options(load_config(None, ["optim.betas=[0.9]"]))
    assert str(info.value) == "optim.betas must be two numbers in [0, 1) (AdamW's beta1, beta2), got [0.9]"


def test_nesterov_with_adamw_and_unknown_optimizers_are_refused():
    with pytest.raises(ConfigError, match=r"^optim.nesterov=true applies to SGD only"):
        check_optim_options(load_config(None, ["optim.name=adamw", "optim.nesterov=true"]))
    with pytest.raises(ConfigError, match=r"^config key 'optim.name' must be one of 'sgd', 'adamw', got 'lamb'$"):
        load_config(None, ["optim.name=lamb"])


# -- what one optimizer step computes ----------------------------------------------------------
def _batches(trainer, epoch=0):
    trainer.data.train.set_epoch(epoch)
    return [(trainer.to_memory_format(x), y) for x, y in trainer.data.train]


def test_gradient_accumulation_matches_a_reference_loop(tmp_path, fmnist_root):
    """3 batches, accumulate_steps=2: a step over batches 1-2 (each loss halved), then one over batch 3."""
    cfg = small_config(tmp_path, "ce", **PLAIN_SGD, **{"data.train_subset": 192, "optim.accumulate_steps": 2})
    trainer = Trainer(cfg, log=quiet)
    assert (trainer.batches_per_epoch, trainer.steps_per_epoch) == (3, 2)
    model = copy.deepcopy(trainer.model)
    step = TrainStep(model, trainer.objective)
    batches = _batches(trainer)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)  # w - lr * g, the same arithmetic as the trainer's
    for group in ([0, 1], [2]):
        sgd.zero_grad(set_to_none=True)
        for i in group:
            x, y = batches[i]
            loss, _ = step(x, y, i / 3)
            (loss / len(group)).backward()
        sgd.step()
    trainer.train_epoch(0)
    assert trainer.scheduler.last_epoch == 2  # the schedule counts optimizer steps
    ours, ref = trainer.model.state_dict(), model.state_dict()
    assert all(torch.equal(ours[k], ref[k]) for k in ref)  # weights and BatchNorm statistics, bit for bit


def test_clipping_bounds_the_global_gradient_norm(tmp_path, fmnist_root):
    cfg = small_config(tmp_path, "ce", **PLAIN_SGD, **{"data.train_subset": 64, "optim.clip_grad_norm": 0.01})
    trainer = Trainer(cfg, log=quiet)
    model = copy.deepcopy(trainer.model)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    (x, y), = _batches(trainer)
    loss, _ = TrainStep(model, trainer.objective)(x, y, 0.0)
    loss.backward()
    norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters()))
    assert norm > 0.01  # so the clip applies
    trainer.train_epoch(0)
    change = torch.sqrt(sum(((p.detach().double() - b.double()) ** 2).sum()
                            for p, b in zip(trainer.model.parameters(), before)))
    assert change.item() == pytest.approx(0.1 * 0.01, rel=1e-4)  # lr x max norm
    for p, b, g in zip(trainer.model.parameters(), before, model.parameters()):
        assert torch.allclose(p.detach(), b - 0.1 * g.grad * (0.01 / (norm.float() + 1e-6)), atol=1e-7)


def test_clipping_under_fp16_acts_on_the_unscaled_gradients(tmp_path, fmnist_root):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    cfg = small_config(tmp_path, "ce", **PLAIN_SGD, **{"data.train_subset": 64, "optim.clip_grad_norm": 0.01,
                                                       "run.amp": "fp16", "run.device": "cuda"})
    trainer = Trainer(cfg, log=quiet)
    trainer.scaler = torch.amp.GradScaler("cuda", init_scale=256.0)  # scaled, and far from overflowing
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_epoch(0)
    assert trainer.scaler.get_scale() == 256.0  # the step was taken, not skipped
    change = torch.sqrt(sum(((p.detach().double() - b.double()) ** 2).sum()
                            for p, b in zip(trainer.model.parameters(), before)))
    # Clipping the scaled gradients instead would move the weights 256 times less.
    assert change.item() == pytest.approx(0.1 * 0.01, rel=1e-3)


# -- EMA -----------------------------------------------------------------------------------------
def test_ema_averages_parameters_and_buffers_and_copies_counters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = WeightEMA(model, decay=0.9)
    assert not any(p.requires_grad for p in ema.model.parameters()) and not ema.model.training
    start = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model(torch.randn(8, 3))  # moves BatchNorm's running statistics and its counter
    ema.update()
    now, averaged = model.state_dict(), ema.state_dict()
    for key in ("0.weight", "0.bias", "1.running_mean", "1.running_var"):
        assert torch.allclose(averaged[key], 0.9 * start[key] + 0.1 * now[key], atol=1e-7), key
    assert averaged["1.num_batches_tracked"] == now["1.num_batches_tracked"] == 1
    with pytest.raises(ValueError):
        WeightEMA(model, decay=1.0)


def test_ema_is_what_is_evaluated_selected_and_saved(tmp_path, fmnist_root):
    results = train(small_config(tmp_path, "ce", epochs=2, **{"optim.ema_decay": 0.9, "run.channels_last": False}),
                    log=quiet)
    run = Path(results["run_dir"])
    best = load_checkpoint(run / "best.pt")
    assert set(best["model"]) == set(best["training_model"])
    assert any(not torch.equal(best["model"][k], best["training_model"][k]) for k in best["model"])
    # The weights saved as "model" (what mate eval, predict and export load) give the reported accuracies.
    trained = load_trained(run / "best.pt")
    for split in ("val", "test"):
        loader = getattr(trained.data, split)
        assert collect_exit_logits(trained.model, loader).summary()["exit_acc"] == results[split]["exit_acc"]


# -- exact resume --------------------------------------------------------------------------------
RECIPES = {
    "adamw": ("ce", {"optim.name": "adamw", "optim.nesterov": False, "optim.lr": 0.002, "optim.weight_decay": 0.05}),
    "label_smoothing": ("mate", {"optim.label_smoothing": 0.1}),
    "clip_grad_norm": ("ce", {"optim.clip_grad_norm": 0.5}),
    "ema": ("ce", {"optim.ema_decay": 0.9}),
    "accumulate_steps": ("ce", {"optim.accumulate_steps": 3}),  # 8 batches: steps of 3, 3 and 2 batches
}


def _records(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "time"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_each_recipe_option_resumes_exactly(tmp_path, fmnist_root, recipe):
    objective, options = RECIPES[recipe]
    full = train(small_config(tmp_path / "full", objective, epochs=2, **options), log=quiet)

    trainer = Trainer(small_config(tmp_path / "stopped", objective, epochs=2, **options), log=quiet)
    real_epoch = trainer.train_epoch

    def stops_in_the_second_epoch(epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(epoch)

    trainer.train_epoch = stops_in_the_second_epoch
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    resumed = train(small_config(tmp_path / "stopped", objective, epochs=2, **options), resume=True, log=quiet)

    a, b = load_checkpoint(Path(full["run_dir"]) / "last.pt"), load_checkpoint(Path(resumed["run_dir"]) / "last.pt")
    parts = ["model", "objective", "optimizer"] + (["training_model"] if recipe == "ema" else [])
    for part in parts:
        flat_a, flat_b = _tensors(a[part]), _tensors(b[part])
        assert flat_a.keys() == flat_b.keys() and (flat_a or part == "objective"), part  # CE has no state
        assert all(torch.equal(flat_a[k], flat_b[k]) for k in flat_a), part
    assert a["scheduler"] == b["scheduler"]
    assert (full["val"], full["test"], full["best_epoch"]) == (resumed["val"], resumed["test"], resumed["best_epoch"])
    assert _records(Path(full["run_dir"])) == _records(Path(resumed["run_dir"]))
    # the option was in force
    if recipe == "adamw":
        assert "exp_avg_sq" in a["optimizer"]["state"][0]
    elif recipe == "accumulate_steps":
        assert a["scheduler"]["last_epoch"] == 2 * 3
    elif recipe == "label_smoothing":
        assert full["config"]["optim"]["label_smoothing"] == 0.1
        plain = train(small_config(tmp_path / "plain", objective, epochs=1), log=quiet)
        assert _records(Path(plain["run_dir"]))[0]["train"]["ce"] != _records(Path(full["run_dir"]))[0]["train"]["ce"]
    elif recipe == "ema":
        assert any(not torch.equal(a["model"][k], a["training_model"][k]) for k in a["model"])


def test_resume_refuses_a_new_optimizer_accumulation_or_ema(tmp_path, fmnist_root):
    plain = {"optim.nesterov": False}
    run = Path(train(small_config(tmp_path, **plain), log=quiet)["run_dir"])
    for override, saved in (("optim.name=adamw", "optim.name=sgd"),
                            ("optim.accumulate_steps=2", "optim.accumulate_steps=1"),
                            ("optim.ema_decay=0.99", "optim.ema_decay=0.0"),
                            ("optim.betas=[0.5, 0.9]", "optim.betas=[0.9, 0.999]")):
        cfg = small_config(tmp_path, epochs=2, **plain, **dict([override.split("=")]))
        with pytest.raises(ConfigError) as info:
            train(cfg, run_dir=run, resume=True, log=quiet)
        assert str(info.value).startswith(f"--resume continues {run} exactly, with the optimizer state it saved "
                                          f"({saved}); it cannot apply a new {override.split('=')[0]}.")


def test_a_checkpoint_from_before_the_recipe_keys_resumes(tmp_path, fmnist_root):
    run = Path(train(small_config(tmp_path), log=quiet)["run_dir"])
    for name in ("last.pt", "best.pt"):
        state = load_checkpoint(run / name)
        for key in ("name", "betas", "label_smoothing", "clip_grad_norm", "ema_decay", "accumulate_steps"):
            del state["config"]["optim"][key]
        save_checkpoint(state, run / name)
    resumed = train(small_config(tmp_path, epochs=2), run_dir=run, resume=True, log=quiet)
    assert resumed["best_epoch"] in (1, 2) and math.isfinite(resumed["test"]["mean_acc"])
    assert [r["epoch"] for r in _records(run)] == [1, 2]
