"""SCOPS's optimisation (docs/training.md, "SCOPS"), including its duplicated-parameter quirk.

The reference builds the backbone's SGD group by walking ``module.modules()`` of ``conv1, bn1,
layer1..layer4`` and yielding ``module.parameters()`` (recursive) for *every* module of the walk, so a
parameter appears once per module between its stage and its owner: ``conv1.weight`` once,
``layer1.0.conv1.weight`` 3 times, ``layer1.0.downsample.0.weight`` 4 times -- i.e. ``len(name.split('.')) - 1``
times. With PyTorch 0.4.0 (SCOPS's ``requirements.txt``) ``SGD.step`` then applies, for each listing and in
place, ``grad += wd * p; buf = momentum * buf + grad; p -= lr * buf`` (the weight decay accumulates into
the gradient and the momentum buffer is advanced once per listing). :class:`DuplicatedSGD` reproduces that
exactly with ``foreach`` ops, one pass per multiplicity level, keeping one momentum buffer per parameter.
The classifier group is listed once (``layer5.parameters()``).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn


def reference_multiplicity(name: str) -> int:
    """How often the reference lists the backbone parameter ``name`` (e.g. ``layer1.0.conv1.weight`` -> 3)."""
    return max(len(name.split(".")) - 1, 1)


class DuplicatedSGD(torch.optim.Optimizer):
    """SGD (momentum, weight decay, no dampening/nesterov) where a parameter ``p`` with multiplicity
    ``m = repeats[p]`` receives the PyTorch-0.4 update ``m`` times per step (see the module docstring).
    With every multiplicity 1 this is exactly ``torch.optim.SGD``.

    Param-group keys other than ``params``/``lr``/``momentum``/``weight_decay`` are kept (the generic
    trainer stores ``lr_mult``, ``constant_lr``, ``clip_group``, ``name`` there)."""

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 repeats: dict[int, int] | None = None):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        self._repeats = dict(repeats or {})  # id(param) -> multiplicity

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
            grads = [p.grad for p in params]
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:  # zeros then (0 * m + grad): the 0.4.0 initialisation
                    state["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(state["momentum_buffer"])
            counts = [self._repeats.get(id(p), 1) for p in params]
            for level in range(1, max(counts) + 1):
                idx = [i for i, c in enumerate(counts) if c >= level]
                ps, gs, bs = [params[i] for i in idx], [grads[i] for i in idx], [bufs[i] for i in idx]
                if wd != 0:
                    torch._foreach_add_(gs, ps, alpha=wd)  # in place on the gradient, as 0.4.0 did
                if momentum != 0:
                    torch._foreach_mul_(bs, momentum)
                    torch._foreach_add_(bs, gs)
                    torch._foreach_add_(ps, bs, alpha=-lr)
                else:
                    torch._foreach_add_(ps, gs, alpha=-lr)
        return loss


def backbone_repeats(model: nn.Module, backbone_params: Iterable[Tensor]) -> dict[int, int]:
    """``id(param) -> reference multiplicity`` for the backbone parameters of ``model`` (by name)."""
    wanted = {id(p) for p in backbone_params}
    return {id(p): reference_multiplicity(name) for name, p in model.named_parameters() if id(p) in wanted}


def scops_optimizer_factory(segmenter: nn.Module, *, duplicate_params: bool = True):
    """An ``optimizer_factory`` for :class:`benchmark.methods.training.Trainer`: the generic SGD over the
    groups, or (``duplicate_params``, the reference) :class:`DuplicatedSGD` with the segmenter's backbone
    parameters repeated as the reference lists them. Groups, learning rates and clipping are the trainer's."""

    def factory(param_groups, config):
        from benchmark.methods.training.loop import build_optimizer

        optimizer = build_optimizer(param_groups, config)  # validates the groups, sets their keys
        if not duplicate_params:
            return optimizer
        repeats = backbone_repeats(segmenter, segmenter.backbone_parameters())
        return DuplicatedSGD(optimizer.param_groups, lr=config.lr, momentum=config.momentum,
                             weight_decay=config.weight_decay, repeats=repeats)

    return factory
