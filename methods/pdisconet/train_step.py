"""One PDiscoNet training step for the shared :class:`~benchmark.methods.training.Trainer`, vectorised over the
batch; the only host work is drawing the step's rigid transformation from a CPU generator (no device sync).

* :func:`param_groups` -- the release's three groups (:data:`~.presets.LR_FACTORS`).
* :func:`augment` -- the release's per-image training augmentation after the view's resize, crop and flip:
  ``ColorJitter(brightness=0.1)`` then ``RandomAffine(degrees=90, translate=(0.2, 0.2), scale=(0.8, 1.2))``
  (nearest, zero fill), one draw per image from the step's generator, in one ``grid_sample``.
* :class:`PDiscoNetObjective` -- the network on the (augmented) batch, again on the batch under the step's
  rigid transformation (the release's ``equiv_loss``: one draw per step), and the five terms of :mod:`.losses`
  with the release's weights.
"""

from __future__ import annotations


import torch
from torch import Tensor, nn

from benchmark.core.seeding import derive_seed
from benchmark.core.types import Batch
from benchmark.methods.training.class_targets import ClassTargets
from benchmark.methods.pdisconet import losses as L
from benchmark.methods.pdisconet.presets import LR_FACTORS

BRIGHTNESS, DEGREES, TRANSLATE, SCALE = 0.1, 90.0, 0.2, (0.8, 1.2)


def param_groups(model: nn.Module):
    """``modulation`` (lr x 100), ``fc_class_landmarks`` (lr x 10), the rest (lr), by top-level name as the
    release splits them."""
    from benchmark.methods.training import ParamGroup

    groups: dict[str, list] = {"modulation": [], "fc_class_landmarks": [], "rest": []}
    for name, p in model.named_parameters():
        top = name.split(".")[0]
        groups[top if top in LR_FACTORS else "rest"].append(p)
    return [ParamGroup(name, params, lr_mult=LR_FACTORS.get(name, 1.0), weight_decay=0.0)
            for name, params in groups.items()]


def augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """Brightness factor in [0.9, 1.1] (clamped to [0, 1]), then rotation in [-90, 90] degrees, translation up to
    20 % of the size and scale in [0.8, 1.2] about the centre (nearest, zero fill), each image its own draw
    (the shared batched warp, :func:`benchmark.methods.pdiscoformer.warp.affine_images`)."""
    from benchmark.methods.pdiscoformer.warp import affine_images

    n, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    u = torch.rand(n, 5, device=images.device, generator=generator, dtype=torch.float32)
    bright = 1 - BRIGHTNESS + 2 * BRIGHTNESS * u[:, 0]
    x = (images * bright.view(n, 1, 1, 1).to(images.dtype)).clamp(0, 1)
    angle = (2 * u[:, 1] - 1) * DEGREES
    size = torch.tensor([w, h], device=images.device, dtype=torch.float32)
    shift = (2 * u[:, 2:4] - 1) * TRANSLATE * size  # pixels
    scale = SCALE[0] + (SCALE[1] - SCALE[0]) * u[:, 4]
    return affine_images(x, angle, shift, scale, mode="nearest")


class PDiscoNetObjective:
    """``(model, batch, info) -> (total, terms)`` for the shared trainer (terms already weighted)."""

    def __init__(self, targets: ClassTargets, *, seed: int, augment: bool = True,
                 weights: dict[str, float] | None = None):
        self.targets = targets
        self.seed = int(seed)
        self.augment = bool(augment)
        self.weights = dict(weights or L.PAPER_WEIGHTS)

    def rigid_params(self, step: int) -> tuple[float, tuple[int, int], float]:
        """The step's equivariance transformation, drawn on the host from a generator seeded by the run's seed
        and the step: a resumed run draws the same, and the draw costs no device synchronisation."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "pdisconet-equivariance", step))
        return L.random_rigid_transform(generator)

    def __call__(self, model: nn.Module, batch: Batch, info) -> tuple[Tensor, dict[str, Tensor]]:
        targets = self.targets(batch)
        x = batch.images.float()
        if self.augment:
            x = augment(x, info.generator)
        out = model(x)
        angle, translate, scale = self.rigid_params(info.step)
        equiv_maps = model(L.rigid_warp(x, angle=angle, translate=translate, scale=scale)).maps
        maps = out.maps.float()
        w = self.weights
        terms = {
            "concentration": L.concentration_loss(maps) * w["concentration"],
            "presence": L.presence_loss(maps) * w["presence"],
            "orthogonality": L.orthogonality_loss(out.features.float()) * w["orthogonality"],
            "equivariance": L.equivariance_loss(maps, equiv_maps.float(), image_width=x.shape[-1], angle=angle,
                                                translate=translate, scale=scale) * w["equivariance"],
            "classification": L.classification_loss(out.scores.float(), targets) * w["classification"],
        }
        return sum(terms.values()), terms

