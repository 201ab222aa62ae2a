"""``scops``: SCOPS (Hung et al., CVPR 2019) trained or loaded in partbench (docs/training.md, "SCOPS").

The network is the shared DeepLab-v2 ResNet-50 2-branch :class:`~benchmark.methods.segmenter.PartSegmenter`
with ``K + 1`` outputs, channel 0 = background. :meth:`SCOPS.predict` returns those logits
(``PartMaps(has_background=True, kind="logits")``); the harness evaluates parts on channels 1..K and takes
the background from the run's mask policy (channel 0 with ``--masks method``).

Presets (``-p preset=...``; every setting of :class:`Settings` can be overridden with ``-p name=value``,
e.g. ``-p steps=60000 -p vgg_weights=PATH``):

* ``paper`` -- the reference (``exps/SCOPS_K8_retrain.json`` + the CUB model's GT silhouettes): 256x256,
  batch 6, 100000 steps, SGD lr 1e-5 (classifier 10x), momentum 0.9, wd 5e-4, poly 0.9 over the steps,
  clip 5; the part basis W by its own SGD at a constant 0.01 (momentum 0.9, wd 5e-4, clip 5); losses
  10 L_con + 1e3 L_eqv + 1e2 L_lmeqv + 1e4 L_sc + 0.1 L_orth; VGG19 relu5_2+relu5_4 ImageNet features;
  RandTPS (affine, sigma 0.01, scale 0.7-2.0) and ColorJitter(0.3, 0.3, 0.2, 0.2) for equivariance.
* ``tiny`` -- for ``benchmark demo`` and tests: 48x48, batch 4, 10 steps at lr 2.5e-4 (random weights
  learn nothing at 1e-5 in 10 steps; 2e-3 and above degrade the maps), random segmenter and VGG weights.

Reference quirks, each a switch whose default (``True``) is the reference behaviour:

* ``quirk_concentration_b2`` -- the concentration loss is divided by ``B**2`` (intended: ``B``).
* ``quirk_duplicate_params`` -- backbone parameters listed 1-4 times in the SGD group, each listing
  applying a PyTorch-0.4 SGD update (see :mod:`.optim`); ``False`` lists each parameter once.
* ``quirk_mean_swap`` -- the trainer rebuilds [0, 1] images by adding the Caffe means in BGR order to
  RGB-mean-subtracted tensors (R - 18.7/255, B + 18.7/255): the VGG features and the colour-jittered
  branch see those shifted colours; ``False`` uses the true image.

Input normalisation: SCOPS subtracts the RGB means (R 122.7, G 116.7, B 104.0) from 0-255 RGB
(``mean_order="rgb"``). The unsup-parts notebooks fed SCOPS checkpoints with the BGR means on RGB
(``-p mean_order=rgb_caffe_bgr_quirk`` reproduces that evaluation).

Object masks replace saliency maps: when the training view has masks (``--masks gt`` for training, the
paper's setting), the VGG features are multiplied by them before the semantic-consistency loss.

Training and checkpoints: ``benchmark train --method scops`` calls :meth:`SCOPS.train` (the generic
trainer of :mod:`benchmark.methods.training`: checkpoints, exact resume, CSV log, DDP, ``amp``/``compile``).
``fit`` (what ``benchmark run`` calls) trains into ``context.cache_dir/scops/<key>`` and reuses that model
when the same training (settings, switches, weights, dataset, seed) is asked for again. ``-p
checkpoint=PATH`` (or ``--checkpoint``) instead loads an official SCOPS raw state dict strictly, or a
``model.pt`` written by partbench's training; no training happens then.

Known deviation: the reference jitters a uint8 PIL image (per-operation rounding); here the jitter runs on
float tensors and is quantised to 8-bit levels once (see :mod:`benchmark.methods.ours.augment`).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.core.errors import UserError
from benchmark.core.plugin import Range
from benchmark.core.registry import register_method
from benchmark.core.types import Batch, PartMaps
from benchmark.methods.scops import losses
from benchmark.methods.training.method import (TRAINING_RANGES, StepEstimate, TrainableMethod,
                                               source_identity)

VGG_LAYERS = ("relu5_2", "relu5_4")
TRAIN_CODE_VERSION = "scops-train-v2"  # bump when a change alters what training produces (invalidates caches)
# The Caffe means the SCOPS trainer adds back in tensor order (B, G, R values on an RGB tensor).
CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)


@dataclass(frozen=True)
class Settings:
    """Every knob of SCOPS training (a preset fills them; ``-p`` overrides any)."""

    image_size: int
    batch_size: int
    steps: int
    lr: float
    lr_basis: float
    momentum: float
    weight_decay: float
    poly_power: float
    clip: float
    lambda_con: float
    lambda_eqv: float
    lambda_lmeqv: float
    lambda_sc: float
    lambda_orth: float
    init: str
    vgg_weights: str
    checkpoint_every: int
    tps_sigma: float = 0.01
    scale_low: float = 0.7
    scale_high: float = 2.0
    jitter: tuple[float, float, float, float] = (0.3, 0.3, 0.2, 0.2)


PRESETS: dict[str, Settings] = {
    "paper": Settings(image_size=256, batch_size=6, steps=100000, lr=1e-5, lr_basis=0.01, momentum=0.9,
                      weight_decay=5e-4, poly_power=0.9, clip=5.0, lambda_con=10.0, lambda_eqv=1e3,
                      lambda_lmeqv=1e2, lambda_sc=1e4, lambda_orth=0.1, init="torchvision",
                      vgg_weights="imagenet", checkpoint_every=5000),
    # Random weights learn nothing at lr 1e-5 in a few steps: a larger rate, same losses and weights.
    "tiny": Settings(image_size=48, batch_size=4, steps=10, lr=2.5e-4, lr_basis=0.01, momentum=0.9,
                     weight_decay=5e-4, poly_power=0.9, clip=5.0, lambda_con=10.0, lambda_eqv=1e3,
                     lambda_lmeqv=1e2, lambda_sc=1e4, lambda_orth=0.1, init="random",
                     vgg_weights="random", checkpoint_every=5),  # a killed tiny run resumes
}
OVERRIDABLE = tuple(f.name for f in fields(Settings))


class SCOPSNet(nn.Module):
    """What is trained: the segmenter (K+1 outputs) and the part basis ``W`` (K x C, used as ReLU(W)).

    ``forward(x, x_warped)`` runs the segmenter on both inputs (one call, so DDP sees one forward per
    backward) and returns ``(logits, logits_warped, ReLU(W))``."""

    def __init__(self, num_parts: int, feature_dim: int):
        super().__init__()
        from benchmark.methods.segmenter import PartSegmenter

        self.segmenter = PartSegmenter(num_parts + 1)
        # init |N(0, 1)| as the reference's PartBasisGenerator (from the caller's seeded global stream)
        self.basis = nn.Parameter(torch.randn(num_parts, feature_dim).abs())

    def forward(self, x: Tensor, x_warped: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.segmenter(x), self.segmenter(x_warped), losses.part_basis(self.basis)


@register_method("scops")
class SCOPS(TrainableMethod):
    """SCOPS: self-supervised co-part segmentation (K+1 channels, channel 0 = background)."""

    requires_training = True
    provides_background = True
    supervision = "fg-masks"  # trains on the foreground masks of the training view
    code_version = TRAIN_CODE_VERSION
    checkpoint_label = "scops-checkpoint"
    param_ranges = {**TRAINING_RANGES, "lr_basis": Range(0, low_open=True), "momentum": Range(0, 1),
                    "weight_decay": Range(0), "poly_power": Range(0), "clip": Range(0, low_open=True),
                    "lambda_con": Range(0), "lambda_eqv": Range(0)}

    def __init__(self, num_parts: int = 4, preset: str = "paper", checkpoint: str | None = None,
                 mean_order: str = "rgb", quirk_concentration_b2: bool = True,
                 quirk_duplicate_params: bool = True, quirk_mean_swap: bool = True, mask_features: bool = True,
                 image_size: int | None = None, batch_size: int | None = None, steps: int | None = None,
                 lr: float | None = None, lr_basis: float | None = None, momentum: float | None = None,
                 weight_decay: float | None = None, poly_power: float | None = None, clip: float | None = None,
                 lambda_con: float | None = None, lambda_eqv: float | None = None,
                 lambda_lmeqv: float | None = None, lambda_sc: float | None = None,
                 lambda_orth: float | None = None, init: str | None = None, vgg_weights: str | None = None,
                 checkpoint_every: int | None = None, tps_sigma: float | None = None,
                 scale_low: float | None = None, scale_high: float | None = None,
                 jitter: tuple[float, float, float, float] | None = None, amp: str | None = None,
                 compile: bool = False):
        self.num_parts = num_parts
        self.preset = preset
        self.checkpoint = checkpoint
        self.mean_order = mean_order
        self.quirk_concentration_b2 = quirk_concentration_b2
        self.quirk_duplicate_params = quirk_duplicate_params
        self.quirk_mean_swap = quirk_mean_swap
        self.mask_features = mask_features
        # Settings: None = the preset's value.
        self.image_size = image_size
        self.batch_size = batch_size
        self.steps = steps
        self.lr = lr
        self.lr_basis = lr_basis
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.poly_power = poly_power
        self.clip = clip
        self.lambda_con = lambda_con
        self.lambda_eqv = lambda_eqv
        self.lambda_lmeqv = lambda_lmeqv
        self.lambda_sc = lambda_sc
        self.lambda_orth = lambda_orth
        self.init = init
        self.vgg_weights = vgg_weights
        self.checkpoint_every = checkpoint_every
        self.tps_sigma = tps_sigma
        self.scale_low = scale_low
        self.scale_high = scale_high
        self.jitter = jitter
        self.amp = amp  # None (float32) or "bf16" autocast for training
        self.compile = compile  # torch.compile the network for training

    # -- description -----------------------------------------------------------------------------------
    @classmethod
    def weights_needed(cls, params: dict[str, Any] | None = None):
        from benchmark.methods.pretrained import segmenter_init, vgg_backbone

        params = params or {}
        if params.get("checkpoint"):
            return []  # a trained model: neither the training's VGG nor the segmenter's initialisation is read
        preset = PRESETS.get(str(params.get("preset", "paper")), PRESETS["paper"])
        return (vgg_backbone("vgg19", str(params.get("vgg_weights") or preset.vgg_weights), "vgg_weights")
                + segmenter_init(str(params.get("init") or preset.init)))

    @classmethod
    def step_estimate(cls, params: dict[str, Any], device: str) -> StepEstimate:
        """The preset's length with the parameters' overrides, and one measured training step (random
        weights, synthetic batch)."""
        import benchmark.methods.scops.bench  # noqa: F401  (registers the SCOPS step builder)
        from benchmark.methods.ours.bench import measure_step_ms

        preset = PRESETS.get(str(params.get("preset", "paper")), PRESETS["paper"])
        steps = int(params.get("steps") or preset.steps)
        batch = int(params.get("batch_size") or preset.batch_size)
        size = int(params.get("image_size") or preset.image_size)
        ms = measure_step_ms("scops", batch, size, device=device, preset=str(params.get("preset", "paper")))
        return StepEstimate(f"{steps:,} steps of batch {batch} at {size} px", steps, ms, "train-step")

    @classmethod
    def random_weights_params(cls) -> dict[str, Any]:
        return {"init": "random", "vgg_weights": "random"}

    @classmethod
    def demo_params(cls) -> dict[str, Any]:
        return {"preset": "tiny"}

    @classmethod
    def train_presets(cls) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(settings) for name, settings in PRESETS.items()}

    def settings(self) -> Settings:
        """The preset with every parameter that is not ``None`` put in its place."""
        if self.preset not in PRESETS:
            raise UserError(f"unknown SCOPS preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        overrides = {name: getattr(self, name) for name in OVERRIDABLE if getattr(self, name) is not None}
        if "jitter" in overrides:
            jitter = tuple(float(v) for v in overrides["jitter"])
            if len(jitter) != 4:
                raise UserError(f"jitter needs 4 values (brightness, contrast, saturation, hue), got {jitter}")
            overrides["jitter"] = jitter
        return dataclasses.replace(PRESETS[self.preset], **overrides)

    def effective_params(self) -> dict[str, Any]:
        """The parameters with the preset's settings in place of those left ``None``."""
        given = {name: value for name, value in self.get_params().items() if value is not None}
        return {**dataclasses.asdict(self.settings()), **given}

    # -- the TrainableMethod hooks ------------------------------------------------------------------------
    def weight_sources(self) -> dict[str, str]:
        s = self.settings()
        return {"init": s.init, "vgg19": s.vgg_weights}

    def training_record(self, data) -> dict[str, Any]:
        return {"settings": dataclasses.asdict(self.settings()), "num_parts": self.num_parts,
                "quirks": [self.quirk_concentration_b2, self.quirk_duplicate_params, self.quirk_mean_swap],
                "mask_features": self.mask_features, "amp": self.amp}

    # -- building ----------------------------------------------------------------------------------------
    def check_params(self) -> None:
        if not isinstance(self.num_parts, int) or self.num_parts < 1:
            raise UserError(f"scops needs a positive number of parts, got {self.num_parts!r}")
        from benchmark.methods.segmenter import MEAN_ORDERS

        if self.mean_order not in MEAN_ORDERS:
            raise UserError(f"unknown mean_order {self.mean_order!r}; choose one of {', '.join(sorted(MEAN_ORDERS))}")

    def load_network(self, path: str | Path) -> nn.Module:
        """The segmenter from an official raw SCOPS state dict or a partbench ``model.pt``."""
        from benchmark.methods.segmenter import PartSegmenter, load_segmenter_state
        from benchmark.methods.training.checkpoint import MODEL_FORMAT
        from benchmark.methods.weights import read_weights

        path = Path(path).expanduser()
        state = read_weights(path, what="SCOPS checkpoint",
                             fix="pass an official SCOPS .pth or a model.pt from `benchmark train`")
        if isinstance(state, dict) and state.get("format") == MODEL_FORMAT:  # partbench's own model.pt
            own = {k[len("segmenter."):]: v for k, v in state["model_state_dict"].items() if k.startswith("segmenter.")}
            if not own:
                raise UserError(f"{path} is a partbench checkpoint but not of `scops` (no segmenter.* keys); "
                                "pass a checkpoint trained with --method scops")
            model = PartSegmenter.for_loading(self.num_parts + 1)
            load_segmenter_state(model, own, source=str(path))
        else:
            model = PartSegmenter.load_official(path)
            outputs = model.num_outputs
            if outputs != self.num_parts + 1:
                raise UserError(f"{path} has {outputs} output channels (background + {outputs - 1} parts) but "
                                f"--num-parts is {self.num_parts}; pass --num-parts {outputs - 1}")
        return model

    def trained_network(self) -> nn.Module:
        return self.net_.segmenter

    # -- training ------------------------------------------------------------------------------------------
    def trainer(self, data, *, out_dir, seed: int, device, keep_checkpoints: int = 0):
        """The configured :class:`~benchmark.methods.training.Trainer` (not yet run); ``self.net_`` is the
        :class:`SCOPSNet` it trains."""
        from benchmark.core.seeding import derive_seed
        from benchmark.methods.backbones import RandomWeightsWarning, VGGFeatures
        from benchmark.methods.segmenter import init_segmenter
        from benchmark.methods.training import ParamGroup, TrainConfig, Trainer
        from benchmark.methods.scops.optim import scops_optimizer_factory

        s = self.settings()
        if self.amp not in (None, "bf16"):
            raise UserError(f"amp must be bf16 (or absent for float32), got {self.amp!r}")
        device = torch.device(device)
        with warnings.catch_warnings():
            if s.vgg_weights == "random" and s.init == "random":
                warnings.simplefilter("ignore", RandomWeightsWarning)  # the demo/tests: recorded in weights_id
            vgg = VGGFeatures("vgg19", weights=s.vgg_weights, layers=VGG_LAYERS,
                              precision="bf16" if self.amp == "bf16" else "fp32")
        feature_dim = sum(vgg.channels(layer) for layer in VGG_LAYERS)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "scops-init"))
            net = SCOPSNet(self.num_parts, feature_dim)  # basis ~ |N(0, 1)| from the same seeded stream
            report = init_segmenter(net.segmenter, s.init, mean_order="rgb")
        self.init_report_ = report.summary()

        def groups(model: SCOPSNet) -> list[ParamGroup]:
            seg = model.segmenter
            return [ParamGroup("backbone", list(seg.backbone_parameters())),
                    ParamGroup("classifier", list(seg.classifier_parameters()), lr_mult=10.0),
                    # the basis: its own SGD in the reference (constant lr 0.01, own clip), same momentum/wd
                    ParamGroup("basis", [model.basis], lr=s.lr_basis, clip_group="basis")]

        config = TrainConfig(steps=s.steps, batch_size=s.batch_size, lr=s.lr, momentum=s.momentum,
                             weight_decay=s.weight_decay, poly_power=s.poly_power, max_iter=None,
                             clip_grad_norm=s.clip, checkpoint_every=s.checkpoint_every,
                             keep_checkpoints=keep_checkpoints, amp=self.amp, compile=bool(self.compile),
                             num_workers=self.context.num_workers, image_size=s.image_size,
                             extra={"method": "scops", "settings": dataclasses.asdict(s),
                                    "num_parts": self.num_parts, "quirk_concentration_b2": self.quirk_concentration_b2,
                                    "quirk_duplicate_params": self.quirk_duplicate_params,
                                    "quirk_mean_swap": self.quirk_mean_swap, "mask_features": self.mask_features,
                                    "init": source_identity(s.init), "vgg": source_identity(s.vgg_weights)})
        loss_fn = StepLoss(vgg.to(device), s, concentration_b2=self.quirk_concentration_b2,
                           mean_swap=self.quirk_mean_swap, mask_features=self.mask_features)
        self.net_ = net
        return Trainer(net, groups, loss_fn, config, out_dir=out_dir, device=device, seed=seed,
                       progress=self.context.progress, description=f"scops/{getattr(data, 'name', 'data')}",
                       optimizer_factory=scops_optimizer_factory(net.segmenter,
                                                                 duplicate_params=self.quirk_duplicate_params))

    # -- prediction ----------------------------------------------------------------------------------------
    def predict_with(self, network: nn.Module, batch: Batch) -> PartMaps:
        from benchmark.methods.segmenter import caffe_input

        logits = network(caffe_input(batch.images, mean_order=self.mean_order))
        # Coarse logits; the harness upsamples bilinearly (align_corners=False, as the notebooks) then argmaxes.
        return PartMaps(logits, image_size=batch.size, kind="logits", has_background=True, align_corners=False)


class StepLoss:
    """One SCOPS training step's loss (the five terms of :mod:`.losses`): ``(total, {term: weighted value})``."""

    def __init__(self, vgg: nn.Module, settings: Settings, *, concentration_b2: bool, mean_swap: bool,
                 mask_features: bool):
        from benchmark.methods.ours.augment import JitterParams
        from benchmark.methods.ours.warp import WarpParams

        self.vgg = vgg
        self.s = settings
        # SCOPS: ColorJitter(0.3, 0.3, 0.2, 0.2) always applied, no grayscale; the same random warp as ``ours``.
        b, c, sat, hue = settings.jitter
        self.jitter_params = JitterParams(p_jitter=1.0, brightness=b, contrast=c, saturation=sat, hue=hue,
                                          p_grayscale=0.0)
        self.warp_params = WarpParams(scale_low=settings.scale_low, scale_high=settings.scale_high,
                                      sigma=settings.tps_sigma)
        self.concentration_b2 = concentration_b2
        self.mean_swap = mean_swap
        self.mask_features = mask_features

    def _rebuilt_images(self, images01: Tensor) -> Tensor:
        """The [0, 1] images the reference trainer rebuilds from its network input (the ``quirk_mean_swap``
        switch: it adds the means back in the wrong channel order)."""
        if not self.mean_swap:
            return images01
        # Per-channel scalars, not a tensor built from Python data: that would be a host-to-device copy
        # (a stream synchronisation) in every training step.
        shift = [(added - subtracted) / 255.0 for added, subtracted in zip(CAFFE_MEAN_BGR, CAFFE_MEAN_BGR[::-1])]
        return torch.stack([images01[:, c] + shift[c] for c in range(3)], dim=1)

    def __call__(self, model: nn.Module, batch: Batch, info) -> tuple[Tensor, dict[str, Tensor]]:
        from benchmark.methods.ours import warp
        from benchmark.methods.ours.augment import color_jitter
        from benchmark.methods.segmenter import caffe_input

        s = self.s
        images01 = batch.images
        size = images01.shape[-2:]
        x = caffe_input(images01, mean_order="rgb")
        rebuilt = self._rebuilt_images(images01)

        # Reference features: VGG19 relu5_2 + relu5_4, bilinear (align_corners=True) to the input size.
        feats = self.vgg(rebuilt)
        features = torch.cat([F.interpolate(feats[name], size=size, mode="bilinear", align_corners=True)
                              for name in VGG_LAYERS], dim=1)
        if self.mask_features and batch.masks is not None:  # object masks in place of saliency maps
            features = features * batch.masks[:, None].to(features.dtype)

        # Equivariance branch: colour jitter (of the rebuilt image, clipped to [0, 1] as the reference's
        # ToPILImage does), then the random warp, zero padding.
        jittered = color_jitter(rebuilt.clamp(0, 1), self.jitter_params, generator=info.generator)
        if self.mean_swap:  # re-subtract the means in tensor order, as the reference does
            x_cj = torch.stack([jittered[:, c] * 255.0 - CAFFE_MEAN_BGR[c] for c in range(3)], dim=1)
        else:
            x_cj = caffe_input(jittered, mean_order="rgb")
        grid = warp.random_warp_grid(len(images01), int(size[0]), int(size[1]), self.warp_params,
                                     generator=info.generator, device=images01.device)
        x_tps = warp.apply(x_cj, grid)

        logits_low, logits_tps_low, basis = model(x, x_tps)
        pred = F.interpolate(logits_low, size=size, mode="bilinear", align_corners=True)
        pred_tps = F.interpolate(logits_tps_low, size=size, mode="bilinear", align_corners=True)
        warped_target = warp.apply(pred.detach(), grid)  # T(logits), the KL target
        warped_pred = warp.apply(pred, grid)  # T(logits) not detached, for the landmark loss

        terms = {
            "con": s.lambda_con * losses.concentration_loss(pred, divide_by_batch_twice=self.concentration_b2),
            "eqv": s.lambda_eqv * losses.equivariance_kl_loss(pred_tps, warped_target),
            "lmeqv": s.lambda_lmeqv * losses.landmark_equivariance_loss(pred_tps, warped_pred),
            "sc": s.lambda_sc * losses.semantic_consistency_loss(pred, features, basis),
            "orth": s.lambda_orth * losses.orthonormality_loss(basis),
        }
        total = terms["con"] + terms["eqv"] + terms["lmeqv"] + terms["sc"] + terms["orth"]
        return total, terms
