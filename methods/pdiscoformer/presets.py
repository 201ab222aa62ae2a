"""Training presets of ``pdiscoformer`` (documented for users in ``docs/pdiscoformer.md``, "Training").

``paper`` is the release's training command (``training_instructions.md`` of ``ananthu-aniraj/pdiscoformer``)
for CUB at any K (the paper trains K = 4, 8 and 16 with one recipe): DINOv2-reg ViT-B/14 at 518 px, global
batch 32 (4 GPUs x 8), Adam (0.9, 0.999) at 1.414e-6 for the backbone (1e-6 at batch 16, square-root
scaling), the learning-rate factors 1e4 (classifier, "scratch"), 1e4 (modulation) and 1e3 (prototypes,
"finer"), no weight decay, the rate halved every 4 epochs, 28 epochs, gradient norm clipped to 2, part
dropout 0.3, Gumbel softmax (tau 1), frozen backbone (its class/register tokens and position embeddings
train), no EMA and no AMP (the command sets neither ``--averaging_type`` nor ``--use_amp``).

The release counts its schedule in epochs of ``len(train) // batch`` steps (``drop_last``); so do the
presets: ``steps`` and ``decay_every`` left at ``None`` are ``epochs`` and ``decay_epochs`` times the
training view's steps per epoch (CUB: 5994 // 32 = 187, 5,236 steps, halved every 748).

Dataset overrides (the release's dataset-specific parameters): PartImageNet (OOD and Seg) and Flowers-102
train at 224 px with the recommended global batch 128, so the backbone rate is 1e-6 * sqrt(128 / 16) =
2.828e-6. NABirds is CUB's recipe.

``tiny`` is for tests and ``benchmark demo`` on a CPU: timm's 0.27 M-parameter ``test_vit`` (64-d, 6 blocks)
with random weights, 8 px patches at 64 px (8 x 8 maps), batch 8, 60 steps, the rate halved every 10. A
frozen *random* ViT gives features no prototype can separate into parts (FG-NMI <= 0.15 on the synthetic
data), and the paper's factors (a head 1e3-1e4 times faster than the backbone) cannot train both a random
backbone and the head; so ``tiny`` trains the whole ViT, every group at the same rate 1e-3. It still
collapses to the background channel for some initialisations (4 of 8 runs tried; seed 0 learns, FG-NMI
0.2): see docs/pdiscoformer.md, "Training".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from benchmark.core.errors import UserError
from benchmark.methods.pdiscoformer.network import DEFAULT_BACKBONE


@dataclass(frozen=True)
class PDiscoConfig:
    """Everything that determines a PDiscoFormer training run (recorded in checkpoints and cache keys)."""

    preset: str = "paper"
    num_parts: int = 4
    backbone: str = DEFAULT_BACKBONE
    patch_size: int | None = None  # None: the backbone's own
    image_size: int = 518
    batch_size: int = 32  # global (the release's per-GPU batch times its GPUs)
    epochs: int = 28
    steps: int | None = None  # None: epochs x the training view's steps per epoch
    lr: float = 1.414e-6
    scratch_lr_factor: float = 1e4  # fc_class_landmarks
    modulation_lr_factor: float = 1e4  # modulation
    finer_lr_factor: float = 1e3  # fc_landmarks (the prototypes)
    decay_epochs: int = 4
    decay_every: int | None = None  # steps; None: decay_epochs x steps per epoch
    decay_gamma: float = 0.5
    weight_decay: float = 0.0
    clip_grad_norm: float = 2.0
    part_dropout: float = 0.3
    gumbel: bool = True
    gumbel_tau: float = 1.0
    freeze_backbone: bool = True
    # the equivariance transform of every step (one per step, as the release draws it)
    degrees: float = 90.0
    translate: float = 0.11
    scale_low: float = 0.8
    scale_high: float = 1.4
    # the release's training augmentation (its RandomAffine), per image
    augment: bool = True
    augment_degrees: float = 90.0
    augment_translate: float = 0.2
    augment_scale_low: float = 0.8
    augment_scale_high: float = 1.2
    ema_decay: float | None = None  # the release's --averaging_type ema uses 0.9999 (with warm-up)
    checkpoint_every: int | None = None  # steps; None: every epoch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS = {
    "paper": PDiscoConfig(),
    "tiny": PDiscoConfig(preset="tiny", backbone="test_vit", patch_size=8, image_size=64, batch_size=8, steps=60,
                         lr=1e-3, scratch_lr_factor=1.0, modulation_lr_factor=1.0, finer_lr_factor=1.0,
                         decay_every=10, freeze_backbone=False, augment=False, checkpoint_every=20),
}

#: The release's dataset-specific parameters over ``paper`` (224 px, batch 128, lr 1e-6 * sqrt(128 / 16)).
_SMALL_IMAGES = {"image_size": 224, "batch_size": 128, "lr": 2.828e-6}
DATASET_OVERRIDES: dict[str, dict[str, Any]] = {"partimagenet": _SMALL_IMAGES, "flowers102": _SMALL_IMAGES}

#: The method parameters that override a preset field of the same name.
OVERRIDABLE = ("num_parts", "steps", "batch_size", "image_size", "lr", "backbone", "checkpoint_every", "ema_decay")


def resolve_config(preset: str, dataset: str | None = None, **overrides: Any) -> PDiscoConfig:
    """The preset, then its dataset overrides (``paper`` only), then the parameters that are not ``None``."""
    if preset not in PRESETS:
        raise UserError(f"unknown pdiscoformer preset {preset!r}; choose one of {', '.join(PRESETS)}")
    config = PRESETS[preset]
    if preset == "paper" and dataset in DATASET_OVERRIDES:
        config = replace(config, **DATASET_OVERRIDES[dataset])
    known = {f.name for f in fields(PDiscoConfig)}
    given = {k: v for k, v in overrides.items() if v is not None and k in known}
    try:
        config = replace(config, **given)
        config = replace(config, num_parts=int(config.num_parts), batch_size=int(config.batch_size),
                         image_size=int(config.image_size), lr=float(config.lr),
                         steps=None if config.steps is None else int(config.steps),
                         checkpoint_every=None if config.checkpoint_every is None else int(config.checkpoint_every),
                         ema_decay=None if config.ema_decay is None else float(config.ema_decay))
    except (TypeError, ValueError) as exc:
        raise UserError(f"pdiscoformer: a training setting is not a number ({exc})") from None
    if min(config.batch_size, config.num_parts, config.steps or 1, config.checkpoint_every or 1) < 1:
        raise UserError("pdiscoformer needs -p steps, batch_size, checkpoint_every and --num-parts >= 1")
    if config.ema_decay is not None and not 0.0 < config.ema_decay < 1.0:
        raise UserError(f"pdiscoformer -p ema_decay must be in (0, 1) (the release's is 0.9999), got {config.ema_decay}")
    return config


@dataclass(frozen=True)
class Schedule:
    """A configuration's schedule in steps, for a training view of a given size."""

    steps: int
    decay_every: int
    checkpoint_every: int


def schedule(config: PDiscoConfig, num_images: int) -> Schedule:
    """``steps``/``decay_every``/``checkpoint_every`` of ``config`` on ``num_images`` training images (the
    epoch-counted fields converted at ``num_images // batch_size`` steps per epoch, ``drop_last``)."""
    per_epoch = num_images // config.batch_size
    counted = {"steps": config.steps, "decay_every": config.decay_every, "checkpoint_every": config.checkpoint_every}
    if per_epoch < 1 and None in counted.values():
        raise UserError(f"pdiscoformer: the training view has {num_images} images, fewer than one batch of "
                        f"{config.batch_size}; pass a smaller -p batch_size (or -p steps)")
    steps = config.steps if config.steps is not None else config.epochs * per_epoch
    decay = config.decay_every if config.decay_every is not None else config.decay_epochs * per_epoch
    every = config.checkpoint_every if config.checkpoint_every is not None else per_epoch
    return Schedule(int(steps), max(int(decay), 1), max(int(every), 1))
