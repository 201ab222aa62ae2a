"""The registered ``ours`` method: train (or load) the part segmenter, predict part logits.

The life cycle is :class:`~benchmark.methods.training.TrainableMethod`'s:

* ``fit(data, seed=, device=)``: with ``checkpoint`` the weights are loaded (an official unsup-parts
  ``model_*.pth``, a SCOPS-format state dict of the same network with K outputs, or partbench's own
  ``model.pt`` / training checkpoint; strict key checking) and nothing is trained. Otherwise the segmenter
  is trained on ``data`` (the training view of the training split, with GT masks), or a model cached under
  ``context.cache_dir/ours/<key>`` is reused, where the key covers the full training configuration, the
  initial weights, the VGG weights, the dataset's identity and the seed. An interrupted cached training
  resumes from its last checkpoint.
* ``train(data, out_dir=, resume=, seed=, device=)``: what ``benchmark train`` calls.
* ``predict(batch)``: eval mode, Caffe-style input, logits at output stride 8 (upsampled by the harness
  with ``align_corners=False``, as the evaluation notebooks do; see docs/training.md).
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch

from benchmark.core.errors import UserError
from benchmark.core.plugin import Range
from benchmark.core.registry import register_method
from benchmark.core.types import Batch, PartMaps
from benchmark.methods.ours.presets import PRESETS, OursConfig, resolve_config
from benchmark.methods.training.method import (TRAINING_RANGES, StepEstimate, TrainableMethod,
                                               source_identity)

TRAIN_CODE_VERSION = "ours-train-v2"  # bump when a change alters what training produces (invalidates caches)


@register_method("ours")
class Ours(TrainableMethod):
    """Contrastive-reconstruction part segmenter (Choudhury et al. 2021): DeepLab ResNet-50 + 4 losses."""

    requires_training = True
    uses_masks = True
    supervision = "fg-masks"  # trains on the foreground masks of the training view (the paper: GT masks)
    code_version = TRAIN_CODE_VERSION
    # A learning rate > 0, weights of loss terms >= 0, counts >= 1 (a negative lr is no training).
    param_ranges = {**TRAINING_RANGES, "max_iter": Range(0), **{f"lambda_{term}": Range(0) for term in
                                          ("feature", "color", "contrastive", "equivariance")}}

    def __init__(self, num_parts: int = 4, preset: str = "paper", steps: int | None = None,
                 batch_size: int | None = None, image_size: int | None = None, lr: float | None = None,
                 init: str = "torchvision", checkpoint: str | None = None, ablate: Sequence[str] = (),
                 amp: str | None = None, compile: bool = False, vgg_weights: str = "imagenet",
                 lambda_feature: float | None = None, lambda_color: float | None = None,
                 lambda_contrastive: float | None = None, lambda_equivariance: float | None = None,
                 feature_reduction: str | None = None, legacy_positive: bool | None = None,
                 mean_order: str | None = None, max_iter: int | None = None,
                 checkpoint_every: int | None = None, use_lab: bool | None = None):
        self.num_parts = num_parts
        self.preset = preset
        self.steps = steps
        self.batch_size = batch_size
        self.image_size = image_size
        self.lr = lr
        self.init = init
        self.checkpoint = checkpoint
        self.ablate = ablate
        self.amp = amp
        self.compile = compile
        self.vgg_weights = vgg_weights
        self.lambda_feature = lambda_feature
        self.lambda_color = lambda_color
        self.lambda_contrastive = lambda_contrastive
        self.lambda_equivariance = lambda_equivariance
        self.feature_reduction = feature_reduction
        self.legacy_positive = legacy_positive
        self.mean_order = mean_order
        self.max_iter = max_iter  # None = the preset's; 0 = the number of steps (fixes the 100k quirk)
        self.checkpoint_every = checkpoint_every
        self.use_lab = use_lab

    # -- description -------------------------------------------------------------------------------------
    @classmethod
    def weights_needed(cls, params: dict[str, Any] | None = None):
        from benchmark.methods.pretrained import segmenter_init, vgg_backbone

        params = params or {}
        if params.get("checkpoint"):
            return []  # a trained model: neither the training's VGG nor the segmenter's initialisation is read
        return (vgg_backbone("vgg19", str(params.get("vgg_weights") or "imagenet"), "vgg_weights")
                + segmenter_init(str(params.get("init") or "torchvision")))

    @classmethod
    def random_weights_params(cls) -> dict[str, Any]:
        return {"init": "random", "vgg_weights": "random"}

    @classmethod
    def step_estimate(cls, params: dict[str, Any], device: str) -> StepEstimate:
        """The resolved configuration's length, and one training step measured after a warm-up step (random
        weights, a synthetic batch)."""
        from benchmark.methods.ours.bench import measure_step_ms

        known = {k: v for k, v in params.items() if k in cls.param_names()}
        config = cls(**known).config_for(None)
        ms = measure_step_ms("ours", config.batch_size, config.image_size, device=device, preset=config.preset)
        return StepEstimate(f"{config.steps:,} steps of batch {config.batch_size} at {config.image_size} px "
                            f"(preset {config.preset})", config.steps, ms, "train-step")

    @classmethod
    def demo_params(cls) -> dict[str, Any]:
        """The ``tiny`` preset from random weights (no downloads): ``benchmark demo`` on 2 CPU cores."""
        return {"preset": "tiny", "init": "random", "vgg_weights": "random"}

    @classmethod
    def train_presets(cls) -> dict[str, dict[str, Any]]:
        return {name: config.to_dict() for name, config in PRESETS.items()}

    def config_for(self, dataset: str | None = None) -> OursConfig:
        """The resolved training configuration (preset -> dataset overrides -> parameters)."""
        max_iter = self.max_iter
        overrides = dict(num_parts=self.num_parts, steps=self.steps, batch_size=self.batch_size,
                         image_size=self.image_size, lr=self.lr, ablate=tuple(self.ablate or ()),
                         lambda_feature=self.lambda_feature, lambda_color=self.lambda_color,
                         lambda_contrastive=self.lambda_contrastive, lambda_equivariance=self.lambda_equivariance,
                         feature_reduction=self.feature_reduction, legacy_positive=self.legacy_positive,
                         mean_order=self.mean_order, checkpoint_every=self.checkpoint_every, use_lab=self.use_lab)
        config = resolve_config(self.preset, dataset=dataset, **overrides)
        if max_iter is not None:
            config = replace(config, max_iter=None if int(max_iter) == 0 else int(max_iter))
        if self.amp not in (None, "bf16"):
            raise UserError(f"--amp must be bf16 (or absent for float32), got {self.amp!r}")
        return config

    # -- the TrainableMethod hooks ------------------------------------------------------------------------
    def weight_sources(self) -> dict[str, str]:
        return {"init": self.init, "vgg": self.vgg_weights}

    def training_record(self, data) -> dict[str, Any]:
        return {"config": self.config_for(getattr(data, "name", None)).to_dict(), "amp": self.amp}

    def init_identity(self) -> str:
        return source_identity(self.init, option="--init")

    def _vgg(self, config: OursConfig, device: torch.device):
        from benchmark.methods.backbones import RandomWeightsWarning, VGGFeatures

        precision = "bf16" if self.amp == "bf16" else "fp32"
        with warnings.catch_warnings():
            if self.vgg_weights == "random" and self.init == "random":
                warnings.simplefilter("ignore", RandomWeightsWarning)  # the demo: recorded in weights_id
            vgg = VGGFeatures("vgg19", weights=self.vgg_weights, layers=config.ref_layers, precision=precision)
        return vgg.to(device)

    def _fresh_model(self, config: OursConfig, seed: int):
        from benchmark.core.seeding import derive_seed
        from benchmark.methods.segmenter import PartSegmenter, init_segmenter

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "ours-init"))
            model = PartSegmenter(config.num_parts)
            report = init_segmenter(model, self.init, mean_order=config.mean_order)
        self.init_report_ = report.summary()
        return model

    def load_network(self, path: str | Path):
        from benchmark.methods.segmenter import PartSegmenter

        self.config_ = self.config_for(None)
        model = PartSegmenter.load_official(path)
        outputs = int(model.layer5.conv2d_list[0].weight.shape[0])
        if outputs != self.num_parts:
            raise UserError(f"checkpoint {path} has {outputs} part outputs but --num-parts is {self.num_parts}; "
                            f"pass --num-parts {outputs} (a SCOPS checkpoint has K+1 outputs: use --method scops)")
        return model

    def trainer(self, data, *, out_dir, seed: int, device, keep_checkpoints: int = 0) -> "Any":
        """The configured :class:`~benchmark.methods.training.Trainer` for ``data`` (not yet run)."""
        from benchmark.methods.ours.train_step import OursObjective, segmenter_param_groups
        from benchmark.methods.training import Trainer, TrainConfig

        from benchmark.methods.training.distributed import local_device

        config = self.config_for(getattr(data, "name", None))
        device = local_device(device)  # cuda:LOCAL_RANK under torchrun
        model = self._fresh_model(config, seed)
        objective = OursObjective(config, self._vgg(config, device) if {"feature", "contrastive"} & set(config.terms) else None)
        train_config = TrainConfig(
            steps=config.steps, batch_size=config.batch_size, lr=config.lr, momentum=config.momentum,
            weight_decay=config.weight_decay, poly_power=config.poly_power, max_iter=config.max_iter,
            clip_grad_norm=config.clip_grad_norm, checkpoint_every=config.checkpoint_every,
            keep_checkpoints=keep_checkpoints, amp=self.amp,
            compile=bool(self.compile), num_workers=self.context.num_workers, image_size=config.image_size,
            extra={"method": "ours", "ours": config.to_dict(), "init": self.init_identity(),
                   "vgg_weights": self.vgg_weights})
        self.model_ = model
        self.config_ = config
        return Trainer(model, lambda m: segmenter_param_groups(m, config), objective, train_config,
                       out_dir=out_dir, device=device, seed=seed, progress=self.context.progress,
                       description=f"ours/{getattr(data, 'name', 'data')}")

    def trained_network(self):
        return self.model_

    def predict_with(self, network, batch: Batch) -> PartMaps:
        from benchmark.methods.segmenter import caffe_input

        logits = network(caffe_input(batch.images.float(), self.config_.mean_order))
        # Coarse logits; the harness upsamples them with align_corners=False, as the evaluation notebooks do.
        return PartMaps(logits.float(), image_size=batch.size, kind="logits", align_corners=False)
