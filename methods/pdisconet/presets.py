"""PDiscoNet's training settings: :class:`Settings`, the presets and the release's optimisation.

The release (``main.py``, README) trains with Adam (PyTorch defaults: betas 0.9/0.999, no weight decay, no
gradient clipping) at ``lr`` = 1e-4 with three parameter groups -- ``modulation`` at 100 x lr,
``fc_class_landmarks`` at 10 x lr, everything else (the ResNet, ``fc_landmarks``) at lr -- and a ``StepLR``
that halves every rate every 5 epochs:

* ``paper`` -- CUB (README command): 448 px, batch 16, 28 epochs, ImageNet ResNet-101 (torchvision's
  ``DEFAULT``, ``IMAGENET1K_V2``);
* ``paper-partimagenet`` -- PartImageNet OOD (README command): 224 px, batch 20, 20 epochs; ``paper`` on
  the ``partimagenet`` dataset means this one (:func:`preset_for`), so one plan entry trains both as the paper;
* ``tiny`` -- CPU seconds, for the demo and the tests: ResNet-18 from random weights at 112 px (the
  presence loss needs 7 x 7 maps, i.e. 112 px at stride 16), batch 2, 4 steps at lr 1e-3.

Epochs are counted as the trainer counts them: ``len(data) // batch_size`` steps (whole batches; the release's
loader keeps the last partial batch, one step more per epoch when the split is not a multiple of the batch).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

import torch

#: The release's learning-rate factors of its parameter groups (``high_lr_layers``, ``med_lr_layers``).
LR_FACTORS = {"modulation": 100.0, "fc_class_landmarks": 10.0}


@dataclass(frozen=True)
class Settings:
    """Every knob of PDiscoNet training (a preset fills them; ``-p`` overrides any)."""

    backbone: str
    weights: str  # imagenet | random | PATH (a torchvision-format state dict of the backbone)
    image_size: int
    batch_size: int
    epochs: int
    steps: int | None  # None: epochs x (training images // batch size)
    lr: float
    lr_step_epochs: int
    lr_gamma: float
    part_dropout: float
    augment: bool  # the release's training augmentation (brightness jitter, random affine) in the step
    checkpoint_every: int


PRESETS: dict[str, Settings] = {
    "paper": Settings(backbone="resnet101", weights="imagenet", image_size=448, batch_size=16, epochs=28, steps=None,
                      lr=1e-4, lr_step_epochs=5, lr_gamma=0.5, part_dropout=0.3, augment=True,
                      checkpoint_every=1000),
    "paper-partimagenet": Settings(backbone="resnet101", weights="imagenet", image_size=224, batch_size=20,
                                   epochs=20, steps=None, lr=1e-4, lr_step_epochs=5, lr_gamma=0.5, part_dropout=0.3,
                                   augment=True, checkpoint_every=1000),
    # Random weights learn next to nothing at 1e-4 in a few steps: a larger rate, same losses and weights.
    "tiny": Settings(backbone="resnet18", weights="random", image_size=112, batch_size=2, epochs=1, steps=4,
                     lr=1e-3, lr_step_epochs=5, lr_gamma=0.5, part_dropout=0.3, augment=True, checkpoint_every=2),
}
OVERRIDABLE = tuple(f.name for f in fields(Settings))
#: The paper's settings of a dataset other than CUB's.
PAPER_BY_DATASET = {"partimagenet": "paper-partimagenet"}


def preset_for(preset: str, dataset: str | None) -> str:
    """The preset ``preset`` means on ``dataset`` (``paper`` is the release's settings of that dataset)."""
    return PAPER_BY_DATASET.get(dataset or "", preset) if preset == "paper" else preset


def preset_dicts() -> dict[str, dict[str, Any]]:
    """The presets as ``{setting: value}``; a schedule counted in epochs shows its steps as "28 epochs"."""
    out = {}
    for name, settings in PRESETS.items():
        values = dataclasses.asdict(settings)
        if values["steps"] is None:
            values["steps"] = f"{settings.epochs} epochs"
        out[name] = values
    return out


def schedule_steps(settings: Settings, num_images: int) -> tuple[int, int]:
    """``(steps, lr_step_every)`` of a training on ``num_images`` images: ``steps`` (or ``epochs`` whole
    epochs) and the StepLR period in steps (at least 1)."""
    per_epoch = max(int(num_images) // int(settings.batch_size), 1)
    steps = int(settings.steps) if settings.steps is not None else int(settings.epochs) * per_epoch
    return steps, max(int(settings.lr_step_epochs) * per_epoch, 1)


def adam(param_groups, config) -> torch.optim.Adam:
    """Adam over the trainer's groups (:func:`~benchmark.methods.training.loop.optimizer_groups` keys kept,
    PyTorch's defaults otherwise, as the release)."""
    from benchmark.methods.training.loop import optimizer_groups

    return torch.optim.Adam(optimizer_groups(param_groups, config), lr=config.lr, weight_decay=0.0)
