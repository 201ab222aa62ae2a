"""Speed levers of the training step that do not change its numbers (each tested for equality with the
default path; their effect is measured by ``benchmark bench train-step``, see ``docs/performance.md``).

* :func:`with_sgd_implementation` -- the same SGD update computed per parameter (``for-loop``), with
  multi-tensor kernels (``foreach``; PyTorch's default on CUDA) or with one fused kernel (``fused``).
* :func:`to_channels_last` -- NHWC memory format for the network's 4-d weights, which the convolution
  kernels follow (on GPUs, the tensor-core layout under bf16).

Gradient clipping needs no lever: ``clip_grad_norm_(..., foreach=True)`` scales the gradients by a device
tensor without reading the norm back (the CUDA tests check that the step makes no host synchronisation).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.core.errors import UserError

SGD_IMPLEMENTATIONS = ("default", "for-loop", "foreach", "fused")


def with_sgd_implementation(optimizer: torch.optim.Optimizer, implementation: str) -> torch.optim.Optimizer:
    """A ``torch.optim.SGD`` equal to ``optimizer`` (same groups, hyper-parameters and state) that computes
    its update with ``implementation``; ``default`` returns ``optimizer`` itself."""
    if implementation not in SGD_IMPLEMENTATIONS:
        raise UserError(f"unknown SGD implementation {implementation!r}; choose from {', '.join(SGD_IMPLEMENTATIONS)}")
    if implementation == "default":
        return optimizer
    if type(optimizer) is not torch.optim.SGD:
        raise UserError(f"sgd={implementation} applies to torch.optim.SGD, but this method trains with "
                        f"{type(optimizer).__name__} (e.g. SCOPS's duplicated-parameter update); use sgd=default")
    flags = {"for-loop": dict(foreach=False, fused=False), "foreach": dict(foreach=True, fused=False),
             "fused": dict(foreach=False, fused=True)}[implementation]
    groups = [{**group, **flags} for group in optimizer.param_groups]
    hyper = {key: optimizer.defaults[key] for key in ("lr", "momentum", "dampening", "weight_decay", "nesterov")}
    replacement = torch.optim.SGD(groups, **hyper, **flags)
    replacement.load_state_dict(optimizer.state_dict())
    for group in replacement.param_groups:  # load_state_dict restores the old flags with the groups
        group.update(flags)
    return replacement


def to_channels_last(model: nn.Module) -> nn.Module:
    """Put ``model``'s 4-d parameters and buffers in channels-last memory format, in place."""
    return model.to(memory_format=torch.channels_last)
