"""The generic training machinery: schedule, optimiser groups, data order, exact resume, checkpoint
errors, logging. Tiny models on 8x8 images (the network is not what is tested here)."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from _training_fixtures import TinyDataset, TinyNet, groups, mse_loss, noisy_loss
from benchmark.core.errors import UserError
from benchmark.methods.training import (DataOrder, ParamGroup, TrainConfig, Trainer, load_checkpoint_file,
                                        load_state_dict_strict, poly_lr)
from benchmark.methods.training.checkpoint import checkpoint_path, list_checkpoints
from benchmark.methods.training.loop import build_optimizer
from benchmark.methods.training.schedule import set_lrs, warmup_factor


class Killed(Exception):
    pass


def killing(loss_fn, at_step):
    def fn(model, batch, info):
        if info.step == at_step:
            raise Killed
        return loss_fn(model, batch, info)
    return fn


def config(**kw):
    base = dict(steps=7, batch_size=3, lr=0.05, checkpoint_every=3, log_flush_every=1, max_iter=100)
    base.update(kw)
    return TrainConfig(**base)


def train(out, loss=noisy_loss, resume=False, init_seed=0, **kw):
    torch.manual_seed(init_seed)
    model = TinyNet()
    result = Trainer(model, groups, loss, config(**kw), out_dir=out, seed=11).fit(TinyDataset(), resume=resume)
    return model, result


def read_log(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_poly_lr_hand_values():
    assert poly_lr(1e-5, 0, 100000) == 1e-5
    assert math.isclose(poly_lr(1e-5, 50000, 100000, 0.9), 1e-5 * 0.5 ** 0.9, rel_tol=1e-12)
    assert math.isclose(poly_lr(1.0, 99999, 100000, 0.9), (1e-5) ** 0.9, rel_tol=1e-9)
    assert poly_lr(1.0, 100000, 100000) == 0.0 and poly_lr(1.0, 200000, 100000) == 0.0


def test_warmup_ramps_linearly_then_leaves_the_poly_schedule_alone():
    assert [warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0  # 0 = no warm-up, the references' behaviour
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_factor(0, -1)
    with pytest.raises(ValueError, match="warmup_steps"):
        config(warmup_steps=-2)
    model = TinyNet()
    fixed = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer(groups(model) + [ParamGroup("fixed", [fixed], lr=0.3)], config())
    base = set_lrs(opt, 0.1, 1, 10, 0.9, warmup_steps=4)
    assert math.isclose(base, 0.1 * (1 - 1 / 10) ** 0.9 * 0.5, rel_tol=1e-12)
    # lr_mult on top of the warm-up; a constant-lr group stays outside both
    assert [g["lr"] for g in opt.param_groups] == [base, base * 10.0, 0.3]
    assert set_lrs(opt, 0.1, 6, 10, 0.9, warmup_steps=4) == poly_lr(0.1, 6, 10, 0.9)


def test_warmup_is_logged_per_step(tmp_path):
    train(tmp_path / "run", steps=5, max_iter=10, lr=0.1, warmup_steps=3)
    rows = read_log(tmp_path / "run" / "train_log.csv")[1:]
    expected = [0.1 * (1 - s / 10) ** 0.9 * min(1.0, (s + 1) / 3) for s in range(5)]
    assert [float(r[1]) for r in rows] == pytest.approx(expected, rel=1e-6)


def test_optimizer_groups_and_duplicates():
    model = TinyNet()
    model.bn.weight.requires_grad_(False)
    opt = build_optimizer(groups(model), config())
    assert [g["name"] for g in opt.param_groups] == ["backbone", "head"]
    assert [g["lr_mult"] for g in opt.param_groups] == [1.0, 10.0]
    assert all(p is not model.bn.weight for g in opt.param_groups for p in g["params"])  # frozen: dropped
    assert all(g["weight_decay"] == 5e-4 for g in opt.param_groups)
    with pytest.raises(ValueError, match="listed in groups"):
        build_optimizer([ParamGroup("a", [model.conv.weight]), ParamGroup("b", [model.conv.weight])], config())


def test_data_order_is_epochwise_permutation_drop_last_and_resumable():
    order = DataOrder(10, 3, seed=5)
    batches = order.take(6)  # 3 batches per epoch (drop_last), 2 epochs
    for epoch in (batches[:3], batches[3:]):
        flat = [i for b in epoch for i in b]
        assert len(flat) == 9 and len(set(flat)) == 9 and all(0 <= i < 10 for i in flat)
    assert batches[:3] != batches[3:]
    again = DataOrder(10, 3, seed=5)
    again.take(4)
    state = again.state_dict()
    resumed = DataOrder(10, 3, seed=999)
    resumed.load_state_dict(state)
    assert resumed.take(2) == batches[4:6]
    with pytest.raises(UserError, match="fewer than one batch"):
        DataOrder(2, 3, seed=0)


@pytest.mark.parametrize("workers", [0, 2])
def test_exact_resume_after_kill(tmp_path, workers):
    ref_model, ref = train(tmp_path / "ref", num_workers=workers)
    with pytest.raises(Killed):
        train(tmp_path / "run", loss=killing(noisy_loss, 5), num_workers=workers)
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [3]
    torch.rand(7)  # the resumed process's global RNG is elsewhere: the checkpoint must restore it
    model, result = train(tmp_path / "run", resume=True, init_seed=99, num_workers=workers)
    assert result.resumed_from == 3
    for (name, a), b in zip(ref_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name  # bitwise, BN running stats included
    assert read_log(tmp_path / "ref" / "train_log.csv") == read_log(tmp_path / "run" / "train_log.csv")
    header = read_log(tmp_path / "ref" / "train_log.csv")[0]
    assert header == ["step", "lr", "total", "mse", "reg"]
    final = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert all(torch.equal(final["model_state_dict"][k], v) for k, v in ref_model.state_dict().items())


def test_resume_refuses_changed_configuration(tmp_path):
    with pytest.raises(Killed):
        train(tmp_path / "run", loss=killing(noisy_loss, 4))
    with pytest.raises(UserError, match="lr: checkpoint 0.05 vs now 0.1"):
        train(tmp_path / "run", resume=True, lr=0.1)
    with pytest.raises(UserError, match="no checkpoint"):
        train(tmp_path / "empty", resume=True)
    with pytest.raises(UserError, match="already holds a training run.*--resume"):
        train(tmp_path / "run")


def test_resume_accepts_a_checkpoint_older_than_a_new_knob_only_at_its_default(tmp_path):
    """A checkpoint written before ``warmup_steps`` existed lacks the key: resuming at the default (0)
    changes nothing and is allowed; a non-default value is a real change and is refused."""
    from benchmark.methods.training import checkpoint as ckpt

    with pytest.raises(Killed):
        train(tmp_path / "run", loss=killing(noisy_loss, 4))
    path = ckpt.latest_checkpoint(tmp_path / "run")
    state = torch.load(path, weights_only=True)
    del state["config"]["warmup_steps"]
    torch.save(state, path)
    with pytest.raises(UserError, match="warmup_steps: checkpoint None vs now 2"):
        train(tmp_path / "run", resume=True, warmup_steps=2)
    _, result = train(tmp_path / "run", resume=True)
    assert result.resumed_from == 3 and result.steps == 7


def test_corrupted_checkpoint_names_file_and_keeps_previous(tmp_path):
    train(tmp_path / "run", steps=6)
    bad = checkpoint_path(tmp_path / "run", 6)
    good = checkpoint_path(tmp_path / "run", 3)
    bad.write_bytes(bad.read_bytes()[:200])  # truncated, as by a crash of a non-atomic writer
    with pytest.raises(UserError) as err:
        train(tmp_path / "run", steps=6, resume=True)
    message = str(err.value)
    assert str(bad) in message and "corrupted or truncated" in message and str(good) in message
    assert load_checkpoint_file(good)["step"] == 3  # the previous good one is intact
    bad.unlink()
    _, result = train(tmp_path / "run", steps=6, resume=True)
    assert result.resumed_from == 3


def test_non_tensor_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": TinyNet()}, path)  # a pickled module, not a state dict
    with pytest.raises(UserError, match=r"evil\.pt is not a plain tensor checkpoint.*weights_only=True"):
        load_checkpoint_file(path)
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint_file(tmp_path / "missing.pt")


def test_strict_loading_lists_missing_unexpected_and_mismatched(tmp_path):
    model = TinyNet()
    state = dict(model.state_dict())
    state.pop("head.bias")
    state["extra.weight"] = torch.zeros(1)
    state["conv.weight"] = torch.zeros(5, 3, 3, 3)
    with pytest.raises(UserError) as err:
        load_state_dict_strict(TinyNet(), state, source="x.pt")
    message = str(err.value)
    assert "x.pt" in message and "1 missing key(s): head.bias" in message
    assert "1 unexpected key(s): extra.weight" in message
    assert "conv.weight (file (5, 3, 3, 3) vs model (4, 3, 3, 3))" in message


def test_lr_schedule_applied_per_step_with_fixed_horizon(tmp_path):
    train(tmp_path / "run", steps=4, max_iter=10, lr=0.1)
    rows = read_log(tmp_path / "run" / "train_log.csv")[1:]
    for row in rows:
        step = int(row[0])
        assert math.isclose(float(row[1]), 0.1 * (1 - step / 10) ** 0.9, rel_tol=1e-6)


def test_loss_actually_decreases(tmp_path):
    torch.manual_seed(0)
    model = TinyNet(dropout=0.0)
    Trainer(model, groups, mse_loss, config(steps=30, lr=0.1, clip_grad_norm=None, max_iter=None),
            out_dir=tmp_path, seed=0).fit(TinyDataset())
    rows = read_log(tmp_path / "train_log.csv")[1:]
    first = sum(float(r[2]) for r in rows[:5])
    last = sum(float(r[2]) for r in rows[-5:])
    assert last < 0.5 * first


def test_step_decay_schedule_is_steplr_counted_in_steps(tmp_path):
    """PDiscoFormer's StepLR: base * gamma ** (step // every), the poly schedule unused."""
    train(tmp_path / "run", steps=7, lr=0.1, lr_step_every=3, lr_step_gamma=0.5)
    rows = read_log(tmp_path / "run" / "train_log.csv")[1:]
    assert [float(row[1]) for row in rows] == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]
    with pytest.raises(ValueError, match="lr_step_every"):
        config(lr_step_every=0)


def test_weight_average_follows_timm_warmup_and_resumes_exactly(tmp_path):
    from benchmark.methods.training.ema import WeightAverage, ema_decay_at

    # known answers of timm's ModelEmaV3 warm-up: 0 at the first update (a copy), 1 - n^(-2/3) after, capped
    assert ema_decay_at(0.9999, 1) == 0.0 and math.isclose(ema_decay_at(0.9999, 2), 1 - 2 ** (-2 / 3))
    assert ema_decay_at(0.5, 10) == 0.5
    net = torch.nn.Linear(2, 1)
    average = WeightAverage(net, 0.5)
    with torch.no_grad():
        net.weight.fill_(2.0)
    average.update(net)  # decay 0: the copy
    with torch.no_grad():
        net.weight.fill_(4.0)
    average.update(net)  # decay min(1 - 2^(-2/3), 0.5) = 0.37
    decay = 1 - 2 ** (-2 / 3)
    assert torch.allclose(average.module.weight, torch.full((1, 2), 2.0 * decay + 4.0 * (1 - decay)))

    ref_model, _ = train(tmp_path / "ref", ema_decay=0.9)
    with pytest.raises(Killed):
        train(tmp_path / "run", loss=killing(noisy_loss, 5), ema_decay=0.9)
    model, result = train(tmp_path / "run", resume=True, init_seed=99, ema_decay=0.9)
    assert result.resumed_from == 3
    for (name, a), b in zip(ref_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name  # the averaged weights, after an exact resume
    raw_model, _ = train(tmp_path / "raw")
    assert not all(torch.equal(a, b) for a, b in zip(raw_model.state_dict().values(), model.state_dict().values()))
    with pytest.raises(UserError, match="ema_decay: checkpoint None vs now 0.9"):
        train(tmp_path / "raw", resume=True, ema_decay=0.9, steps=9)
