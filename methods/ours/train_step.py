"""One training step of ``ours`` (docs/training.md, "What the paper preset reproduces"): data preparation on the device and the
four losses, vectorised over the batch, without host synchronisations.

:class:`OursObjective` is the ``loss_fn`` of :class:`benchmark.methods.training.Trainer`::

    objective = OursObjective(config, vgg)            # config: presets.OursConfig, vgg: VGGFeatures
    total, terms = objective(model, batch, info)      # batch.images in [0, 1], batch.masks (GT) required

Per batch (all on the batch's device, randomness from ``info``'s generators):

1. two independently colour-jittered copies ``cj1``, ``cj2`` of the images, turned into the
   Caffe-style network input (``caffe_input``; ``mean_order`` switches the BGR-on-RGB quirk);
2. the frozen VGG19 reference features of the un-jittered image: relu3_2 x 0.33 and relu5_4 x 1.0,
   bilinearly upsampled (``align_corners=True``) to the input size, concatenated (C = 768) and masked;
3. the colour target: CIE-Lab of the un-jittered image (``use_lab``), else ``RGB*255 - 128``;
4. main pass: logits on ``cj1``, upsampled (``align_corners=True``) to the input size, softmax over parts,
   masked assignment ``a = m * s``;
5. L_f = region variance of the features (batch SUM in the paper preset, mean with
   ``feature_reduction="mean"``), L_v = batch mean of the Lab region variance, L_c = contrastive loss on the
   part prototypes, L_e = KL between the logits on T(cj2) and T(detached main logits), weighted by T(m);
6. total = λ_e L_e + λ_f L_f + λ_v L_v + λ_c L_c over the terms not ablated (ablated terms are not
   computed at all; with ``equivariance`` ablated the second network pass is skipped).

Under DDP each rank holds ``B/W`` images: the batch-summed L_f is multiplied by ``W`` (gradients are
averaged over ranks, so the sum over the global batch is recovered) and L_c is computed on the prototypes
gathered from all ranks (differentiable ``all_gather``; the positive draws use the generator shared by all
ranks), so the loss equals the single-process loss on the global batch. BatchNorm statistics are per rank.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.core.errors import UserError
from benchmark.methods.ours import augment, losses, warp
from benchmark.methods.ours.presets import OursConfig
from benchmark.methods.segmenter import caffe_input

if TYPE_CHECKING:
    from benchmark.core.types import Batch
    from benchmark.methods.backbones import VGGFeatures
    from benchmark.methods.training import StepInfo


# -- the building blocks of oursnet, behind one call each ------------------------------------------------------
def jitter_params(config: OursConfig) -> augment.JitterParams:
    return augment.JitterParams(p_jitter=config.jitter_p, brightness=config.brightness, contrast=config.contrast,
                                saturation=config.saturation, hue=config.hue, p_grayscale=config.grayscale_p)


def warp_params(config: OursConfig) -> warp.WarpParams:
    return warp.WarpParams(rotation_deg=config.warp_rotation_deg, scale_low=config.warp_scale[0],
                           scale_high=config.warp_scale[1], translation=config.warp_translation,
                           sigma=config.tps_sigma)


# -- the step ---------------------------------------------------------------------------------------------------
def reference_features(vgg: "VGGFeatures", images01: Tensor, config: OursConfig) -> Tensor:
    """The reference features: weighted VGG taps, bilinearly upsampled (align_corners=True) to the image size, concatenated."""
    size = images01.shape[-2:]
    taps = vgg(images01)
    parts = [F.interpolate(taps[name] * weight, size=size, mode="bilinear", align_corners=True)
             for name, weight in zip(config.ref_layers, config.ref_weights)]
    return torch.cat(parts, dim=1)


class OursObjective:
    """The ``ours`` training loss for one batch (see the module docstring)."""

    def __init__(self, config: OursConfig, vgg: "VGGFeatures | None"):
        self.config = config
        self.vgg = vgg
        self.jitter = jitter_params(config)
        self.warp = warp_params(config)
        self.needs_features = bool({"feature", "contrastive"} & set(config.terms))
        if self.needs_features and vgg is None:
            raise ValueError("the feature and contrastive losses need the VGG reference network")

    def prepare(self, batch: "Batch", generator: torch.Generator) -> dict[str, Tensor]:
        """Network inputs and targets of the reference's training sample, on the batch's device."""
        cfg = self.config
        if batch.masks is None:
            raise UserError("training ours needs foreground masks (the training view must provide masks; "
                            "use --masks gt)")
        images = batch.images.float()
        mask = batch.masks.float()[:, None]
        jitter = self.jitter
        out = {"mask": mask, "x1": caffe_input(augment.color_jitter(images, jitter, generator=generator), cfg.mean_order)}
        if "equivariance" in cfg.terms:
            out["x2"] = caffe_input(augment.color_jitter(images, jitter, generator=generator), cfg.mean_order)
        if self.needs_features:
            with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
                out["features"] = reference_features(self.vgg, images, cfg) * mask
        if "color" in cfg.terms:
            with torch.autocast(images.device.type, enabled=False):
                out["color"] = augment.rgb_to_lab(images) if cfg.use_lab else (images * 255.0).round() - 128.0
        return out

    def __call__(self, model: nn.Module, batch: "Batch", info: "StepInfo") -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.config
        data = self.prepare(batch, info.generator)
        mask = data["mask"]
        n, _, height, width = mask.shape
        logits = F.interpolate(model(data["x1"]), size=(height, width), mode="bilinear", align_corners=True)
        assign = logits.float().softmax(dim=1) * mask  # losses.masked_assignment, keeping the upsampled logits
        terms: dict[str, Tensor] = {}
        weighted: list[Tensor] = []

        if "feature" in cfg.terms:
            per_image = losses.region_variance(assign, data["features"], mask, center=False)
            if cfg.feature_reduction == "sum":
                # The reference adds per-image losses; under DDP x W recovers the global sum (grads are averaged).
                terms["feature"] = per_image.sum() * info.world_size
            else:
                terms["feature"] = per_image.mean()
            weighted.append(cfg.lambda_feature * terms["feature"])
        if "color" in cfg.terms:
            terms["color"] = losses.color_loss(assign, data["color"], mask)
            weighted.append(cfg.lambda_color * terms["color"])
        if "contrastive" in cfg.terms:
            prototypes = losses.part_prototypes(assign, data["features"])
            if info.world_size > 1:
                prototypes = _gather_prototypes(prototypes)
            terms["contrastive"] = losses.contrastive_loss(prototypes, cfg.temperature,
                                                           legacy_positive=cfg.legacy_positive,
                                                           generator=info.shared_generator)
            weighted.append(cfg.lambda_contrastive * terms["contrastive"])
        if "equivariance" in cfg.terms:
            grid = warp.random_warp_grid(n, height, width, self.warp, generator=info.generator, device=mask.device)
            warped_input = warp.apply(data["x2"], grid)
            logits_on_warped = F.interpolate(model(warped_input), size=(height, width), mode="bilinear",
                                             align_corners=True)
            warped_logits = warp.apply(logits.detach().float(), grid)
            warped_mask = warp.apply(mask, grid)
            terms["equivariance"] = losses.equivariance_loss(logits_on_warped.float(), warped_logits, warped_mask)
            weighted.append(cfg.lambda_equivariance * terms["equivariance"])
        total = torch.stack(weighted).sum()
        return total, terms


def _gather_prototypes(prototypes: Tensor) -> Tensor:
    """All ranks' prototypes, concatenated in rank order, differentiable. The backward of this all_gather
    sums the gradients of every rank's (identical) loss, i.e. W x the gradient of the local slice; DDP's
    averaging over the W ranks then yields exactly the gradient of the global-batch loss."""
    import warnings

    import torch.distributed.nn.functional as dist_fn

    with warnings.catch_warnings():
        # Deprecated in favour of a private module; the public function is kept for its documented autograd.
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(dist_fn.all_gather(prototypes), dim=0)


def segmenter_param_groups(model: nn.Module, config: OursConfig):
    """The reference's groups: backbone (conv1, bn1, layer1-4 trainable params) at lr, classifier layer5 at 10x lr; weight
    decay on every trainable parameter (biases and shortcut-BN affine params included)."""
    from benchmark.methods.training import ParamGroup

    return [ParamGroup("backbone", list(model.backbone_parameters()), lr_mult=1.0),
            ParamGroup("classifier", list(model.classifier_parameters()), lr_mult=config.classifier_lr_mult)]
