"""An exponential moving average of a model's weights (``TrainConfig.ema_decay``): timm's ``ModelEmaV3``
with its warm-up, which PDiscoFormer's trainer uses with ``--averaging_type ema``.

After the ``n``-th optimiser update (1-based) every floating-point entry of the state dict (parameters and
buffers) moves as ``avg = decay_n * avg + (1 - decay_n) * current`` with
``decay_n = min(decay, 1 - n ** (-2/3))`` (0 at the first update, so the average starts as a copy); other
entries are copied. One multi-tensor ``lerp`` per update, the decay a host float: no synchronisation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay_at(decay: float, update: int) -> float:
    """The decay applied at the 1-based ``update`` (module docstring)."""
    since = max(0, int(update) - 1)
    return 0.0 if since == 0 else min(1.0 - (1.0 + since) ** (-2.0 / 3.0), float(decay))


class WeightAverage:
    """The averaged copy of ``model`` (:attr:`module`, not trained, in eval mode)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        weight = 1.0 - ema_decay_at(self.decay, self.updates)
        averaged, current = [], []
        for avg, value in zip(self.module.state_dict().values(), model.state_dict().values()):
            if avg.is_floating_point():
                averaged.append(avg)
                current.append(value)
            else:
                avg.copy_(value)
        torch._foreach_lerp_(averaged, current, weight)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "decay": self.decay, "model_state_dict": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["model_state_dict"])
