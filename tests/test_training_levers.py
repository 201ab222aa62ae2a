"""Speed levers of the training step (methods/training/levers.py) give the default path's numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.core.errors import UserError
from benchmark.methods.training.levers import to_channels_last, with_sgd_implementation


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))


def _train(model, optimizer, steps=3, start=0):
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for i in range(start, start + steps):
        optimizer.zero_grad(set_to_none=True)
        ((model(x) - i) ** 2).mean().backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), 0.5, foreach=True)
        optimizer.step()
    return model


def _sgd(model):
    params = list(model.parameters())
    return torch.optim.SGD([{"params": params[:2], "lr": 0.1, "name": "a"}, {"params": params[2:], "lr": 0.01}],
                           lr=0.05, momentum=0.9, weight_decay=5e-4)


@pytest.mark.parametrize("implementation", ["for-loop", "foreach", "fused"])
def test_sgd_implementations_give_the_default_update(implementation):
    ref_model = _net()
    _train(ref_model, _sgd(ref_model))  # three steps of the default SGD
    model = _net()
    base = _sgd(model)
    _train(model, base, steps=1)  # momentum state exists before the switch: it must carry over
    lever = with_sgd_implementation(base, implementation)
    assert lever is not base and [g["lr"] for g in lever.param_groups] == [0.1, 0.01]
    assert lever.param_groups[0]["name"] == "a"
    assert lever.param_groups[0]["fused" if implementation == "fused" else "foreach"] is (implementation != "for-loop")
    _train(model, lever, steps=2, start=1)
    for got, want in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_default_is_the_optimizer_itself_and_others_are_refused():
    model = _net()
    optimizer = _sgd(model)
    assert with_sgd_implementation(optimizer, "default") is optimizer
    with pytest.raises(UserError, match="unknown SGD implementation"):
        with_sgd_implementation(optimizer, "turbo")
    with pytest.raises(UserError, match="applies to torch.optim.SGD"):
        with_sgd_implementation(torch.optim.Adam(model.parameters()), "fused")


def test_channels_last_gives_the_same_training():
    ref_model, model = _net(), to_channels_last(_net())
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    _train(ref_model, _sgd(ref_model))
    _train(model, _sgd(model))
    for got, want in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_ours_losses_with_channels_last_equal_the_default_path():
    from benchmark.methods.ours.bench import build_train_step

    torch.manual_seed(0)
    step = build_train_step("ours", 3, 32, None, False, torch.device("cpu"))
    with torch.no_grad():
        ref, ref_terms = step.losses(0)
        to_channels_last(step.model)
        got, got_terms = step.losses(0)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    for name in ref_terms:
        torch.testing.assert_close(got_terms[name], ref_terms[name], rtol=1e-5, atol=1e-6)
