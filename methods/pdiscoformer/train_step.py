"""One PDiscoFormer training step for the shared :class:`~benchmark.methods.training.Trainer`, vectorised over
the batch and without host synchronisations.

* :func:`param_groups` -- the release's groups (``layer_group_matcher_pdisco``): the classifier
  (``fc_class_landmarks``, "scratch", lr x ``scratch_lr_factor``), the modulation (x ``modulation_lr_factor``,
  no weight decay), the prototypes (``fc_landmarks``, "finer", x ``finer_lr_factor``, no weight decay), the
  class/register tokens and position embeddings with the backbone's 1-d parameters (x 1, no weight decay,
  always trained), the backbone's other parameters (x 1; frozen with ``freeze_backbone``, as are its 1-d ones).
* :func:`adam` -- Adam (betas 0.9, 0.999) over those groups.
* :func:`random_affine` -- the release's training augmentation (``RandomAffine(90, (0.2, 0.2), (0.8, 1.2))``),
  one draw per image from the step's generator, in one ``grid_sample`` (:mod:`.warp`).
* :class:`PDiscoObjective` -- the network on the ImageNet-normalised (augmented) batch and on the batch under
  the step's rigid transform (angle in [-90, 90], translation up to 11 % of the size rounded to pixels, scale
  in [0.8, 1.4], bilinear; one draw per step, from a CPU generator seeded by the run's seed and the step),
  and the eight terms of :mod:`.losses` with the paper's weights.
"""

from __future__ import annotations


import functools

import torch
from torch import Tensor, nn

from benchmark.core.seeding import derive_seed
from benchmark.core.types import Batch
from benchmark.methods.training.class_targets import ClassTargets
from benchmark.methods.backbones import IMAGENET_MEAN, IMAGENET_STD
from benchmark.methods.pdiscoformer import losses as L
from benchmark.methods.pdiscoformer.presets import PDiscoConfig
from benchmark.methods.pdiscoformer.warp import affine_images, rigid_affine

SCRATCH, MODULATION, FINER = ("fc_class_landmarks",), ("modulation",), ("fc_landmarks",)
TOKENS = ("cls_token", "pos_embed", "reg_token")


def param_groups(model: nn.Module, config: PDiscoConfig):
    """The release's parameter groups (module docstring); sets ``requires_grad`` of the frozen backbone."""
    from benchmark.methods.training import ParamGroup

    groups: dict[str, list[nn.Parameter]] = {"backbone": [], "no_decay": [], "finer": [], "modulation": [],
                                             "scratch": []}
    for name, p in model.named_parameters():
        if name.startswith(SCRATCH):
            groups["scratch"].append(p.requires_grad_(True))
        elif name.startswith(MODULATION):
            groups["modulation"].append(p.requires_grad_(True))
        elif name.startswith(FINER):
            groups["finer"].append(p.requires_grad_(True))
        elif name in TOKENS:
            groups["no_decay"].append(p.requires_grad_(True))
        else:
            p.requires_grad_(not config.freeze_backbone)
            groups["no_decay" if p.ndim == 1 else "backbone"].append(p)
    wd = config.weight_decay
    return [ParamGroup("backbone", groups["backbone"], 1.0, wd),
            ParamGroup("no_decay", groups["no_decay"], 1.0, 0.0),
            ParamGroup("finer", groups["finer"], config.finer_lr_factor, 0.0),
            ParamGroup("modulation", groups["modulation"], config.modulation_lr_factor, 0.0),
            ParamGroup("scratch", groups["scratch"], config.scratch_lr_factor, wd)]


def adam(groups, train_config) -> torch.optim.Adam:
    """Adam (the release's ``--optimizer_type adam``, betas 0.9/0.999) over :func:`param_groups`."""
    from benchmark.methods.training.loop import optimizer_groups

    return torch.optim.Adam(optimizer_groups(groups, train_config), lr=train_config.lr, betas=(0.9, 0.999),
                            weight_decay=train_config.weight_decay)


@functools.lru_cache(maxsize=None)
def _normalisation(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """ImageNet's mean and std on ``device``, made once (not copied to the device at every step)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=dtype).view(1, 3, 1, 1).to(device)
    return mean, torch.tensor(IMAGENET_STD, dtype=dtype).view(1, 3, 1, 1).to(device)


def imagenet_normalize(images: Tensor) -> Tensor:
    mean, std = _normalisation(images.device, images.dtype)
    return (images - mean) / std


def random_affine(images: Tensor, config: PDiscoConfig, generator: torch.Generator) -> Tensor:
    """Each image under its own random rotation, translation and scale (torchvision's ``RandomAffine`` draws:
    uniform angle in +-``augment_degrees``, shift in +-``augment_translate`` of the side rounded to whole pixels,
    uniform scale; nearest, zero fill), drawn from the step's device generator and applied in one pass."""
    n, _, height, width = images.shape
    u = torch.rand(n, 4, device=images.device, generator=generator, dtype=torch.float32)
    angle = (2 * u[:, 0] - 1) * config.augment_degrees
    shift = torch.stack([(2 * u[:, 1] - 1) * (config.augment_translate * width),
                         (2 * u[:, 2] - 1) * (config.augment_translate * height)], dim=1).round()
    scale = config.augment_scale_low + (config.augment_scale_high - config.augment_scale_low) * u[:, 3]
    return affine_images(images, angle, shift, scale)


class PDiscoObjective:
    """``(model, batch, info) -> (total, terms)`` for the shared trainer (terms already weighted)."""

    def __init__(self, config: PDiscoConfig, targets: ClassTargets, *, seed: int):
        self.config = config
        self.targets = targets
        self.seed = int(seed)

    def rigid_params(self, step: int, size: tuple[int, int]) -> tuple[float, tuple[int, int], float]:
        """The step's equivariance transform, as the release's ``generate_affine_trans_params`` (uniform angle,
        translation rounded to whole pixels, uniform scale), drawn on the host from a generator seeded by
        the run's seed and the step: a resumed run draws the same, every rank draws the same, no sync."""
        c = self.config
        g = torch.Generator().manual_seed(derive_seed(self.seed, "pdiscoformer-equivariance", step))
        u = torch.rand(4, generator=g, dtype=torch.float64).tolist()
        angle = -c.degrees + 2 * c.degrees * u[0]
        max_dx, max_dy = c.translate * size[0], c.translate * size[1]
        translate = (int(round(-max_dx + 2 * max_dx * u[1])), int(round(-max_dy + 2 * max_dy * u[2])))
        scale = c.scale_low + (c.scale_high - c.scale_low) * u[3]
        return angle, translate, scale

    def __call__(self, model: nn.Module, batch: Batch, info) -> tuple[Tensor, dict[str, Tensor]]:
        targets = self.targets(batch)
        x = batch.images.float()
        if self.config.augment:
            x = random_affine(x, self.config, info.generator)
        x = imagenet_normalize(x)
        out = model(x)
        angle, translate, scale = self.rigid_params(info.step, (x.shape[-2], x.shape[-1]))
        moved = rigid_affine(x, angle=angle, translate=translate, scale=scale, mode="bilinear")
        equiv_maps = model(moved).maps
        maps = out.maps.float()
        w = L.PAPER_WEIGHTS
        terms = {
            "classification": L.classification_loss(out.scores.float(), targets) * w["classification"],
            "presence": L.presence_loss(maps) * w["presence"],
            "equivariance": L.equivariance_loss(maps, equiv_maps.float(), image_width=x.shape[-1], angle=angle,
                                                translate=translate, scale=scale) * w["equivariance"],
            "orthogonality": L.orthogonality_loss(out.features.float()) * w["orthogonality"],
            "total_variation": L.total_variation_loss(maps) * w["total_variation"],
            "enforced_presence": L.enforced_presence_loss(maps) * w["enforced_presence"],
            "pixel_entropy": L.pixel_entropy_loss(maps) * w["pixel_entropy"],
        }
        if w["concentration"]:
            terms["concentration"] = L.concentration_loss(maps) * w["concentration"]
        return sum(terms.values()), terms

