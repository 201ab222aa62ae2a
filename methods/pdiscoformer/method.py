"""The registered ``pdiscoformer`` method: train PDiscoFormer, or load a checkpoint, and predict its part maps
(``docs/pdiscoformer.md``).

The life cycle is :class:`~benchmark.methods.training.TrainableMethod`'s: ``fit`` loads ``checkpoint`` (a
release file or a ``model.pt`` written by ``train``), or trains on the training view through the shared
trainer (presets :mod:`.presets`, the step :mod:`.train_step`: the dataset's class labels are required) and
caches the result.

Prediction, as the release's part evaluation (``evaluate_parts.py``) does it:

* the batch's images are resized (bilinear, anti-aliased) to the network's square input size when they
  have another size -- the whole-image protocol already hands over ``image_size`` x ``image_size`` views, so
  this is the identity there -- and fed **without** ImageNet normalisation (``normalize="none"``: the release's
  evaluation transforms are ``Resize, CenterCrop, ToTensor``; its training and classification transforms do
  normalise, which ``normalize="imagenet"`` selects);
* the network's ``K + 1`` softmax maps (plain softmax: the evaluation builds the network without Gumbel
  noise) are returned as probabilities on the patch grid, the background moved from the release's last
  channel to the suite's channel 0; the harness upsamples them bilinearly (``align_corners=False``) before
  the argmax, as the release does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.core.errors import UserError
from benchmark.core.registry import register_method
from benchmark.core.types import Batch, PartMaps
from benchmark.core.plugin import Range
from benchmark.methods.pdiscoformer.checkpoint import (backbone_weights_needed, checkpoint_shape,
                                                      load_backbone_weights, load_checkpoint,
                                                      read_checkpoint_with_record)
from benchmark.methods.pdiscoformer.network import DEFAULT_BACKBONE, PDiscoFormerNet, build_network
from benchmark.methods.pdiscoformer.presets import PRESETS, PDiscoConfig, resolve_config, schedule
from benchmark.methods.pdiscoformer.train_step import imagenet_normalize
from benchmark.methods.training.method import TRAINING_RANGES, StepEstimate, TrainableMethod

NORMALIZATIONS = ("none", "imagenet")
TRAIN_CODE_VERSION = "pdiscoformer-train-v1"  # bump when a change alters what training produces


def background_first(maps: torch.Tensor) -> torch.Tensor:
    """``(N, K + 1, h, w)`` with the release's background (last channel) moved to channel 0."""
    return torch.cat([maps[:, -1:], maps[:, :-1]], dim=1)


def load_network(path: str | Path, *, num_parts: int, backbone: str | None = None,
                 image_size: int | None = None) -> PDiscoFormerNet:
    """The network of a checkpoint file, every key checked (see :mod:`.checkpoint`), in eval mode. ``backbone``
    ``None``: the one a partbench ``model.pt`` records, else the release's."""
    path = Path(path).expanduser()
    source = f"pdiscoformer checkpoint {path}"
    state, record = read_checkpoint_with_record(path)
    backbone = backbone or record.get("backbone") or DEFAULT_BACKBONE
    patch = int(state["patch_embed.proj.weight"].shape[-1]) if "patch_embed.proj.weight" in state else 0
    if patch < 1:
        raise UserError(f"{source} is not a PDiscoFormer checkpoint: it lacks patch_embed.proj.weight; pass a "
                        f"PDiscoFormer release file or a model.pt written by partbench")
    shape = checkpoint_shape(state, source=source, patch=patch)
    if shape.num_parts != int(num_parts):
        raise UserError(f"{source} predicts K={shape.num_parts} parts (plus background) but the run asks for "
                        f"K={num_parts}; pass --num-parts {shape.num_parts}")
    size = shape.grid[0] * patch
    if image_size not in (None, "", "none", "None") and int(image_size) != size:
        raise UserError(f"{source} was trained at {size} px (its position embeddings cover {shape.grid[0]}x"
                        f"{shape.grid[1]} patches of {patch} px) but -p image_size={image_size}; omit -p image_size")
    network = build_network(backbone, size, shape.num_parts, shape.num_classes, modulation=shape.modulation,
                            patch_size=patch)
    load_checkpoint(network, state, source=source,
                    target=f"PDiscoFormer on {backbone} at {size} px (K={shape.num_parts}, "
                           f"{shape.num_classes} classes, {shape.modulation} modulation); pass -p backbone=<the "
                           f"checkpoint's timm ViT>")
    return network.eval()


@register_method("pdiscoformer")
class PDiscoFormer(TrainableMethod):
    """PDiscoFormer (Aniraj et al., ECCV 2024): DINOv2-reg ViT-B + part head, trained with class labels."""

    provides_background = True
    supervision = "class-labels"
    code_version = TRAIN_CODE_VERSION
    checkpoint_label = "pdiscoformer"
    prediction_output = "maps"  # the network also returns the training's features, class scores and distances
    param_ranges = {**TRAINING_RANGES, "ema_decay": Range(0, 0.999999, low_open=True)}

    def __init__(self, num_parts: int = 4, preset: str = "paper", steps: int | None = None,
                 batch_size: int | None = None, image_size: int | None = None, lr: float | None = None,
                 checkpoint: str | None = None, backbone: str | None = None, backbone_weights: str = "pretrained",
                 normalize: str = "none", amp: str | None = None, ema_decay: float | None = None,
                 compile: bool = False, checkpoint_every: int | None = None):
        self.num_parts = num_parts
        self.preset = preset
        self.steps = steps
        self.batch_size = batch_size
        self.image_size = image_size
        self.lr = lr
        self.checkpoint = checkpoint
        self.backbone = backbone
        self.backbone_weights = backbone_weights
        self.normalize = normalize
        self.amp = amp
        self.ema_decay = ema_decay
        self.compile = compile
        self.checkpoint_every = checkpoint_every

    # -- description -------------------------------------------------------------------------------------
    @classmethod
    def weights_needed(cls, params: dict[str, Any] | None = None):
        params = params or {}
        if params.get("checkpoint"):
            return []  # a trained model: the backbone's starting weights are not read
        preset = PRESETS.get(str(params.get("preset") or "paper"), PRESETS["paper"])
        return backbone_weights_needed(str(params.get("backbone") or preset.backbone),
                                       str(params.get("backbone_weights") or "pretrained"))

    @classmethod
    def random_weights_params(cls) -> dict[str, Any]:
        return {"backbone_weights": "random"}

    @classmethod
    def demo_params(cls) -> dict[str, Any]:
        """The ``tiny`` preset from a random test ViT (no downloads)."""
        return {"preset": "tiny", "backbone_weights": "random"}

    @classmethod
    def train_presets(cls) -> dict[str, dict[str, Any]]:
        """The presets; a schedule counted in epochs (``paper``) is shown as such."""
        shown = {}
        for name, config in PRESETS.items():
            values = config.to_dict()
            if values["steps"] is None:
                values["steps"] = f"{config.epochs} epochs"
            if values["checkpoint_every"] is None:
                values["checkpoint_every"] = "epoch"
            shown[name] = values
        return shown

    @classmethod
    def step_estimate(cls, params: dict[str, Any], device: str) -> StepEstimate:
        """The resolved configuration's length, and for small configurations (``tiny``) one measured step; a
        paper step (ViT-B at 518 px) is not timed here: it takes minutes on a CPU."""
        from benchmark.methods.step_timing import CHEAP_STEP_PIXELS

        known = {k: v for k, v in params.items() if k in cls.param_names()}
        method = cls(**known)
        config = method.config_for(None)
        length = f"{config.steps:,} steps" if config.steps is not None else f"{config.epochs} epochs"
        what = f"{length} of batch {config.batch_size} at {config.image_size} px on {config.backbone} (preset " \
               f"{config.preset})"
        ms = None
        if config.steps is not None and config.batch_size * config.image_size ** 2 <= CHEAP_STEP_PIXELS:
            from benchmark.methods.pdiscoformer.bench import step_ms

            ms = step_ms(config.preset, config.batch_size, config.image_size, config.num_parts, config.backbone,
                         config.patch_size, method.amp, str(device))
        return StepEstimate(what, config.steps, ms, "pdiscoformer")

    def config_for(self, dataset: str | None = None) -> PDiscoConfig:
        """The resolved training configuration (preset -> dataset overrides -> parameters)."""
        return resolve_config(str(self.preset), dataset, num_parts=self.num_parts, steps=self.steps,
                              batch_size=self.batch_size, image_size=self.image_size, lr=self.lr,
                              backbone=self.backbone, checkpoint_every=self.checkpoint_every,
                              ema_decay=self.ema_decay)

    # -- the TrainableMethod hooks ------------------------------------------------------------------------
    def check_params(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise UserError(f"pdiscoformer normalize must be one of {', '.join(NORMALIZATIONS)}, got "
                            f"{self.normalize!r}")
        if self.amp not in (None, "bf16"):
            raise UserError(f"--amp must be bf16 (or absent for float32), got {self.amp!r}")
        if not self.checkpoint:
            self.config_for()

    def weight_sources(self) -> dict[str, str]:
        if self.backbone_weights == "pretrained":
            from benchmark.methods.pretrained import timm_repo

            return {"backbone": "timm:" + timm_repo(self.config_for().backbone)}
        return {"backbone": str(self.backbone_weights)}

    def training_record(self, data) -> dict[str, Any]:
        from benchmark.methods.training.class_targets import ClassTargets

        config = self.config_for(getattr(data, "name", None))
        return {"config": config.to_dict(), "schedule": vars(schedule(config, len(data))), "amp": self.amp,
                "classes": list(ClassTargets(data, "pdiscoformer").index)}

    def trainer(self, data, *, out_dir, seed: int, device, keep_checkpoints: int = 0):
        from benchmark.core.seeding import derive_seed
        from benchmark.methods.training.class_targets import ClassTargets
        from benchmark.methods.pdiscoformer.train_step import PDiscoObjective, adam, param_groups
        from benchmark.methods.training import Trainer, TrainConfig
        from benchmark.methods.training.distributed import local_device

        config = self.config_for(getattr(data, "name", None))
        plan = schedule(config, len(data))
        targets = ClassTargets(data, "pdiscoformer")
        device = local_device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "pdiscoformer-init"))
            model = build_network(config.backbone, config.image_size, config.num_parts, targets.num_classes,
                                  part_dropout=config.part_dropout, gumbel=config.gumbel, gumbel_tau=config.gumbel_tau,
                                  patch_size=config.patch_size)
        if min(model.grid) < 4 or tuple(s * model.patch_embed.patch_size[0] for s in model.grid) != model.image_size:
            raise UserError(f"pdiscoformer trains at a multiple of its {model.patch_embed.patch_size[0]} px patches "
                            f"giving at least 4x4 of them (its enforced presence loss pools 3x3), got "
                            f"-p image_size={config.image_size}")
        backbone_identity = load_backbone_weights(model, str(self.backbone_weights), config.backbone)
        train_config = TrainConfig(
            steps=plan.steps, batch_size=config.batch_size, lr=config.lr, weight_decay=config.weight_decay,
            lr_step_every=plan.decay_every, lr_step_gamma=config.decay_gamma, clip_grad_norm=config.clip_grad_norm,
            checkpoint_every=plan.checkpoint_every, keep_checkpoints=keep_checkpoints, amp=self.amp,
            ema_decay=config.ema_decay, compile=bool(self.compile), num_workers=self.context.num_workers,
            image_size=config.image_size,
            extra={"method": "pdiscoformer", "pdiscoformer": config.to_dict(), "classes": list(targets.index),
                   "backbone_weights": backbone_identity})
        self.model_ = model
        return Trainer(model, lambda m: param_groups(m, config), PDiscoObjective(config, targets, seed=seed),
                       train_config, out_dir=out_dir, device=device, seed=seed, progress=self.context.progress,
                       description=f"pdiscoformer/{getattr(data, 'name', 'data')}", optimizer_factory=adam)

    def trained_network(self) -> PDiscoFormerNet:
        return self.model_

    def load_network(self, path: str | Path) -> PDiscoFormerNet:
        return load_network(path, num_parts=int(self.num_parts), backbone=self.backbone, image_size=self.image_size)

    def predict_with(self, network, batch: Batch) -> PartMaps:
        """``network`` gives the part assignment maps alone (:attr:`prediction_output`)."""
        x = batch.images.float()
        if tuple(x.shape[-2:]) != network.image_size:
            x = F.interpolate(x, size=network.image_size, mode="bilinear", align_corners=False, antialias=True)
        if self.normalize == "imagenet":
            x = imagenet_normalize(x)
        maps = network(x)
        return PartMaps(background_first(maps).float(), image_size=batch.size, kind="probs", has_background=True)
