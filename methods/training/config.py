"""What a training run is made of: :class:`TrainConfig`, :class:`ParamGroup`, :class:`StepInfo`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass
class TrainConfig:
    """Every knob of the generic optimisation loop (the method adds its own keys under ``extra``).

    ``batch_size`` is the *global* batch: under DDP each of the ``W`` ranks processes ``batch_size / W``
    images per step. ``max_iter`` is the horizon of the poly schedule (``None`` = ``steps``; the reference
    implementations hard-code 100000 whatever the number of steps).
    """

    steps: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    max_iter: int | None = None
    # Step decay instead of the poly schedule: the learning rate is multiplied by ``lr_step_gamma`` every
    # ``lr_step_every`` steps (PDiscoFormer's StepLR, counted in steps); None = the poly schedule.
    lr_step_every: int | None = None
    lr_step_gamma: float = 0.5
    warmup_steps: int = 0  # linear warm-up of the scheduled groups over the first steps (0 = none, as the references)
    clip_grad_norm: float | None = 5.0
    checkpoint_every: int = 5000
    keep_checkpoints: int = 0  # 0 = keep every periodic checkpoint (the reference keeps them all)
    log_flush_every: int = 50  # loss values are copied to the host (one sync) every this many steps
    amp: str | None = None  # None (float32) or "bf16" (autocast)
    # An exponential moving average of the weights (methods/training/ema.py), None = none; with it the
    # final model.pt holds the averaged weights (as PDiscoFormer's trainer saves its EMA model).
    ema_decay: float | None = None
    compile: bool = False
    num_workers: int = 0
    image_size: int | None = None  # collate resizes samples to this square size when they differ
    extra: dict[str, Any] = field(default_factory=dict)  # the method's own configuration (for the record)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.lr_step_every is not None and self.lr_step_every < 1:
            raise ValueError(f"lr_step_every must be >= 1 (or None for the poly schedule), got {self.lr_step_every}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        if self.amp not in (None, "bf16"):
            raise ValueError(f"amp must be None or 'bf16', got {self.amp!r}")

    @property
    def schedule_horizon(self) -> int:
        return int(self.max_iter if self.max_iter is not None else self.steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # Keys that may change between a run and its resumption (they do not change what a step computes).
    RESUMABLE_CHANGES = ("steps", "checkpoint_every", "keep_checkpoints", "log_flush_every", "num_workers",
                         "compile")


@dataclass
class ParamGroup:
    """A named set of parameters optimised at ``lr * lr_mult`` with its own weight decay
    (``None`` = the config's). Parameters with ``requires_grad=False`` are dropped."""

    name: str
    params: list[torch.nn.Parameter]
    lr_mult: float = 1.0
    weight_decay: float | None = None
    # A group with ``lr`` set is optimised at that constant learning rate (no poly schedule, no lr_mult),
    # e.g. SCOPS's part basis at 0.01 while the network follows the poly schedule.
    lr: float | None = None
    # Gradient clipping is applied separately per clip group (SCOPS clips the network and its part basis
    # each to norm 5); groups sharing a name are clipped together.
    clip_group: str = "model"


@dataclass
class StepInfo:
    """What the loss function learns about the current step.

    ``generator`` is a fresh device generator seeded from (seed, step, rank): per-rank randomness of the
    step (augmentation of the local images). ``shared_generator`` is seeded from (seed, step) only and is
    identical on every rank (choices that must agree across ranks). Both depend only on the step, so a
    resumed run draws exactly what an uninterrupted run draws.
    """

    step: int
    generator: torch.Generator
    shared_generator: torch.Generator
    rank: int = 0
    world_size: int = 1
