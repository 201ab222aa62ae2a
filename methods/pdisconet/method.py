"""The registered ``pdisconet`` method: PDiscoNet trained (or loaded), then its part maps (``docs/pdisconet.md``).

Training (``benchmark train -m pdisconet``, or ``fit`` of ``benchmark run``, which trains into the cache and
reuses that model) goes through the shared trainer with the release's optimisation and losses
(:mod:`.presets`, :mod:`.train_step`); it reads the dataset's image-level class labels (``class_ids()``,
``meta["class_id"]``) and refuses a dataset without them. ``-p checkpoint=PATH`` (or ``--checkpoint``)
instead loads a file in the release's layout or a partbench ``model.pt`` (:mod:`.checkpoint`).

Prediction, as the release's part evaluation (``evaluate_cub.py``, ``evaluate_partimagenet.py``) does it:

* the batch's images go in as they come, RGB in ``[0, 1]`` **without** ImageNet normalisation (the release's
  transforms end in ``ToDtype(float32, scale=True)``, in training and in evaluation); the network is fully
  convolutional, so the view's size is the input size (the whole-image protocol hands over the short side
  resized and centre-cropped to ``image_size``, 448 px for CUB, as the release's test transform);
* the ``K + 1`` softmax maps on the stride-16 grid are returned as probabilities, the background moved from
  the release's last channel to the suite's channel 0; the harness upsamples them bilinearly
  (``align_corners=False``) before the argmax, as the release does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.core.errors import UserError
from benchmark.core.plugin import Range
from benchmark.core.registry import register_method
from benchmark.core.types import Batch, PartMaps
from benchmark.methods.pdiscoformer.method import background_first  # the same channel order in both releases
from benchmark.methods.pdisconet import checkpoint as ckpt
from benchmark.methods.pdisconet.presets import (OVERRIDABLE, PRESETS, Settings, adam, preset_dicts, preset_for,
                                                 schedule_steps)
from benchmark.methods.training.method import TRAINING_RANGES, StepEstimate, TrainableMethod

TRAIN_CODE_VERSION = "pdisconet-train-v2"  # bump when a change alters what training produces (invalidates caches)


@register_method("pdisconet")
class PDiscoNet(TrainableMethod):
    """PDiscoNet (van der Klis et al., ICCV 2023): ResNet-101 + part head, trained with class labels."""

    provides_background = True
    supervision = "class-labels"
    code_version = TRAIN_CODE_VERSION
    checkpoint_label = "pdisconet"
    prediction_output = "maps"  # predict_with reads the part maps of the network's outputs
    param_ranges = {key: value for key, value in TRAINING_RANGES.items() if key != "image_size"} | {
        "epochs": Range(1), "lr_step_epochs": Range(1), "lr_gamma": Range(0, 1, low_open=True),
        "part_dropout": Range(0, 1)}

    # The training resolution is the preset's (no ``image_size`` parameter): the presence loss needs maps of
    # at least 7 x 7, i.e. inputs of 112 px and more, which every preset has.
    def __init__(self, num_parts: int = 4, preset: str = "paper", checkpoint: str | None = None,
                 backbone: str | None = None, weights: str | None = None, batch_size: int | None = None,
                 epochs: int | None = None, steps: int | None = None, lr: float | None = None,
                 lr_step_epochs: int | None = None, lr_gamma: float | None = None, part_dropout: float | None = None,
                 augment: bool | None = None, checkpoint_every: int | None = None, amp: str | None = None,
                 channels_last: bool = False):
        self.num_parts = num_parts
        self.preset = preset
        self.checkpoint = checkpoint
        # Settings: None = the preset's value.
        self.backbone = backbone
        self.weights = weights
        self.batch_size = batch_size
        self.epochs = epochs
        self.steps = steps
        self.lr = lr
        self.lr_step_epochs = lr_step_epochs
        self.lr_gamma = lr_gamma
        self.part_dropout = part_dropout
        self.augment = augment
        self.checkpoint_every = checkpoint_every
        # partbench's speed configuration, not the release's (float32, NCHW): bf16 autocast of the step, and
        # the ResNet's weights in channels-last layout (what oneDNN's and cuDNN's fastest convolutions take)
        self.amp = amp
        self.channels_last = channels_last

    # -- description -----------------------------------------------------------------------------------
    @classmethod
    def weights_needed(cls, params: dict[str, Any] | None = None):
        from benchmark.methods.pretrained import resnet_backbone

        params = params or {}
        if params.get("checkpoint"):
            return []  # a trained model: the ImageNet backbone is not read
        preset = PRESETS.get(str(params.get("preset", "paper")), PRESETS["paper"])
        return resnet_backbone(str(params.get("backbone") or preset.backbone),
                               str(params.get("weights") or preset.weights))

    @classmethod
    def step_estimate(cls, params: dict[str, Any], device: str) -> StepEstimate:
        """The resolved settings' length, and for small configurations (``tiny``) one measured step; a paper
        step (ResNet-101 at 448 px) is not timed here: it takes minutes on a CPU."""
        from benchmark.methods.step_timing import CHEAP_STEP_PIXELS

        known = {k: v for k, v in params.items() if k in cls.param_names()}
        method = cls(**known)
        s = method.settings()
        length = f"{s.steps:,} steps" if s.steps is not None else f"{s.epochs} epochs"
        ms = None
        if s.steps is not None and s.batch_size * s.image_size ** 2 <= CHEAP_STEP_PIXELS:
            from benchmark.methods.pdisconet.bench import step_ms

            ms = step_ms(method.preset, s.batch_size, s.image_size, int(method.num_parts), s.backbone, method.amp,
                         bool(method.channels_last), str(device))
        return StepEstimate(f"{length} of batch {s.batch_size} at {s.image_size} px on a {s.backbone}", s.steps,
                            ms, "pdisconet")

    @classmethod
    def random_weights_params(cls) -> dict[str, Any]:
        return {"weights": "random"}

    @classmethod
    def demo_params(cls) -> dict[str, Any]:
        return {"preset": "tiny"}

    @classmethod
    def train_presets(cls) -> dict[str, dict[str, Any]]:
        return preset_dicts()

    def settings(self, dataset: str | None = None) -> Settings:
        """The preset (``paper`` on ``dataset`` = PartImageNet: ``paper-partimagenet``, the release's settings
        there) with every parameter that is not ``None`` put in its place."""
        if self.preset not in PRESETS:
            raise UserError(f"unknown pdisconet preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        overrides = {name: getattr(self, name) for name in OVERRIDABLE if getattr(self, name, None) is not None}
        return dataclasses.replace(PRESETS[preset_for(self.preset, dataset)], **overrides)

    def effective_params(self) -> dict[str, Any]:
        given = {name: value for name, value in self.get_params().items() if value is not None}
        return {**dataclasses.asdict(self.settings()), **given}

    # -- the TrainableMethod hooks ------------------------------------------------------------------------
    def check_params(self) -> None:
        from benchmark.methods.pdisconet.network import check_backbone

        if not isinstance(self.num_parts, int) or self.num_parts < 1:
            raise UserError(f"pdisconet needs a positive number of parts, got {self.num_parts!r}")
        check_backbone(self.settings().backbone)
        if self.amp not in (None, "bf16"):
            raise UserError(f"pdisconet --amp must be bf16 (or absent for float32), got {self.amp!r}")

    def weight_sources(self) -> dict[str, str]:
        return {"backbone": self.settings().weights}

    def training_record(self, data) -> dict[str, Any]:
        record = {"settings": dataclasses.asdict(self.settings(getattr(data, "name", None))),
                  "num_parts": self.num_parts}
        # runs without them keep the record (and cache key) they had before these settings existed
        if self.amp is not None:
            record["amp"] = self.amp
        if self.channels_last:
            record["channels_last"] = True
        return record

    def load_network(self, path: str | Path) -> nn.Module:
        return ckpt.load_network(path, num_parts=int(self.num_parts))

    def trainer(self, data, *, out_dir, seed: int, device, keep_checkpoints: int = 0):
        from benchmark.core.seeding import derive_seed
        from benchmark.methods.pdisconet.network import build_network, init_backbone
        from benchmark.methods.training.class_targets import ClassTargets
        from benchmark.methods.pdisconet.train_step import PDiscoNetObjective, param_groups
        from benchmark.methods.training import TrainConfig, Trainer

        import os

        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # DDP marks every parameter ready once per backward; the release's step runs the network twice
            raise UserError("pdisconet trains in one process (its step runs the network twice before the backward "
                            "pass, which DDP does not allow); run `benchmark train` without torchrun")
        s = self.settings(getattr(data, "name", None))
        targets = ClassTargets(data, "pdisconet")
        steps, lr_step_every = schedule_steps(s, len(data))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "pdisconet-init"))
            net = build_network(s.backbone, int(self.num_parts), targets.num_classes, part_dropout=s.part_dropout)
        init_backbone(net, s.backbone, s.weights)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)  # the convolutions then run (and return) NHWC
        config = TrainConfig(steps=steps, batch_size=s.batch_size, lr=s.lr, weight_decay=0.0, lr_step_every=lr_step_every,
                             lr_step_gamma=s.lr_gamma, clip_grad_norm=None, checkpoint_every=s.checkpoint_every,
                             keep_checkpoints=keep_checkpoints, num_workers=self.context.num_workers,
                             image_size=s.image_size, amp=self.amp,
                             extra={"method": "pdisconet", "settings": dataclasses.asdict(s),
                                    "num_parts": int(self.num_parts), "classes": [str(c) for c in targets.index]})
        self.net_ = net
        objective = PDiscoNetObjective(targets, seed=seed, augment=s.augment)
        return Trainer(net, param_groups, objective, config, out_dir=out_dir, device=device, seed=seed,
                       progress=self.context.progress, description=f"pdisconet/{getattr(data, 'name', 'data')}",
                       optimizer_factory=adam)

    def trained_network(self) -> nn.Module:
        return self.net_

    def predict_with(self, network: nn.Module, batch: Batch) -> PartMaps:
        maps = network(batch.images.float())  # the maps (prediction_output) of the network
        return PartMaps(background_first(maps).float(), image_size=batch.size, kind="probs", has_background=True)
