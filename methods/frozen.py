"""What every frozen feature backbone shares (VGG in :mod:`.backbones`, DINO/DINOv2 ViTs in :mod:`.vit`).

:class:`FrozenBackbone` holds, once:

* the ImageNet mean/std buffers and :meth:`~FrozenBackbone.normalise` (both families were trained on
  ``(x - mean) / std`` of RGB in ``[0, 1]``);
* the frozen state: no gradients, ``eval()`` at construction, and a ``train()`` that never leaves eval mode
  (a frozen extractor inside a training model must not switch dropout or normalisation statistics);
* ``device`` (where the buffers are);
* the precision policy: ``"fp32"`` (exact), ``"tf32"`` (TF32 convolutions and matrix products on CUDA; the
  default there, ``"auto"``) or ``"bf16"`` (autocast on CUDA; opt-in). On a CPU every choice is ``fp32``.
  Outputs are float32 either way; the resolved precision is part of each subclass's ``identity()``, so
  caches never mix features computed at different precisions.

Subclasses set up their network, call :meth:`~FrozenBackbone.freeze` at the end of ``__init__``, and run
their forward pass inside :meth:`~FrozenBackbone.precision_context`.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

from benchmark.core.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRECISIONS = ("auto", "fp32", "tf32", "bf16")


class RandomWeightsWarning(UserWarning):
    """Features come from a randomly initialised backbone (tests / synthetic demo only)."""


class FrozenBackbone(nn.Module):
    """A frozen feature extractor: ``forward(images)`` with RGB in ``[0, 1]`` -> ``{name: (N, C, h, w)}``."""

    def __init__(self, precision: str = "auto"):
        super().__init__()
        if precision not in PRECISIONS:
            raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def freeze(self) -> None:
        """No gradients, eval mode: call at the end of the subclass's ``__init__``."""
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenBackbone":
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def normalise(self, images: Tensor) -> Tensor:
        """ImageNet mean/std normalisation of float RGB in ``[0, 1]`` (moved to this module's device)."""
        return (images.to(self.device, torch.float32, non_blocking=True) - self.mean) / self.std

    def resolved_precision(self) -> str:
        if self.precision != "auto":
            return self.precision if self.device.type == "cuda" else "fp32"
        return "tf32" if self.device.type == "cuda" else "fp32"

    @contextlib.contextmanager
    def precision_context(self) -> Iterator[None]:
        """The resolved precision for the forward pass; the global TF32 flags are restored afterwards."""
        precision = self.resolved_precision()
        if self.device.type != "cuda":
            yield
            return
        previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision in ("tf32", "bf16")
        try:
            if precision == "bf16":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    yield
            else:
                yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous
