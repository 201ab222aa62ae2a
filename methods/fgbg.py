"""``fgbg``: the foreground/background segmenter the paper evaluates with (a mask model, not a part method).

At test time the paper does not use ground-truth masks: it uses the binary output of a DeepLab-v2 ResNet-50
-- the same network as the part segmenter of ``ours`` -- trained for foreground/background segmentation on
each dataset. This module is that model:

* the network is :class:`benchmark.methods.segmenter.PartSegmenter` with 2 outputs (background,
  foreground; softmax cross-entropy) or 1 output (a foreground logit; binary cross-entropy), initialised
  with the ``--init`` choices of ``ours`` (``caffe:PATH``, ``torchvision``, ``random``);
* training: pixel-wise cross-entropy between the logits, upsampled bilinearly (``align_corners=False``) to
  the training crop, and the GT mask of the dataset's ``train`` view on the training split (CUB: the
  binarised segmentations in the jittered square box crops; DeepFashion: label != 0; PASCAL-Part: the
  category's objects in their training crops), through the shared trainer
  (:mod:`benchmark.methods.training`: checkpoints, exact resume, DDP, CSV log);
* prediction (:class:`MaskPredictor`): the whole image resized to the training side ``image_size`` (bilinear,
  antialiased), the foreground-minus-background logit upsampled bilinearly to the image's original size,
  foreground where it is > 0 (probability > 0.5).

Presets (see ``docs/training.md``): ``paper`` -- the appendix gives no schedule for this network, so
partbench uses DeepLab-v2's own recipe on the part segmenter's input size: 20000 steps, batch 8, 256 px,
SGD lr 2.5e-4 (classifier 10x), momentum 0.9, weight decay 5e-4, poly power 0.9, no gradient clipping,
ImageNet (torchvision) initialisation. ``tiny`` -- CPU, random initialisation: 96 px, batch 4, 180 steps,
Adam lr 1e-3 (classifier 10x) with a 15-step linear warm-up, no weight decay (about a minute on two cores;
``docs/masks.md`` gives the IoU it reaches and why cross-entropy at 64 px stays near 0.75).

The registered class is a :data:`benchmark.core.registry.MASK_MODELS` plug-in; ``benchmark train -m fgbg``
calls :meth:`FgBg.train`. Its output ``model.pt`` is what ``benchmark masks predict --checkpoint`` and
``--masks model:CKPT`` read (:func:`load_mask_model`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.core.cache import file_digest
from benchmark.core.errors import UserError
from benchmark.core.plugin import Range
from benchmark.core.plugin import Plugin
from benchmark.core.registry import register_mask_model

FORMAT = "partbench-fgbg/1"
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class FgBgConfig:
    """Everything that determines an ``fgbg`` training run (recorded in its checkpoints)."""

    preset: str = "paper"
    outputs: int = 2  # 2 = (background, foreground) softmax; 1 = one foreground logit
    steps: int = 20_000
    batch_size: int = 8
    image_size: int = 256
    lr: float = 2.5e-4
    classifier_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    optimizer: str = "sgd"  # "sgd" (momentum, the DeepLab recipe) or "adam" (betas 0.9/0.999, for tiny)
    warmup_steps: int = 0  # linear learning-rate warm-up before the poly decay
    clip_grad_norm: float | None = None
    checkpoint_every: int = 2000
    mean_order: str = "rgb"  # the input means subtracted from the channels they belong to

    def validate(self) -> "FgBgConfig":
        if self.outputs not in (1, 2):
            raise UserError(f"fgbg: outputs must be 1 (one foreground logit) or 2 (background/foreground), "
                            f"got {self.outputs!r}")
        if self.image_size < 32:
            raise UserError(f"fgbg: image_size must be >= 32 (output stride 8), got {self.image_size}")
        if self.steps < 1 or self.batch_size < 1:
            raise UserError("fgbg: steps and batch_size must be >= 1")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"fgbg: optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.warmup_steps < 0:
            raise UserError(f"fgbg: warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.mean_order not in ("rgb", "rgb_caffe_bgr_quirk"):
            raise UserError(f"fgbg: mean_order must be 'rgb' or 'rgb_caffe_bgr_quirk', got {self.mean_order!r}")
        return self


PRESETS: dict[str, FgBgConfig] = {
    "paper": FgBgConfig(),
    # CPU tests and laptops, from random weights (docs/masks.md#measured). 96 px input: at 64 px the output
    # stride of 8 leaves a 9 x 9 logit map, which fitted by cross-entropy reaches only IoU 0.75 on the synthetic
    # foreground.
    # Adam with a warm-up learns several times faster per step than the SGD recipe from random weights;
    # batch 4 gave more IoU per second than batch 8 or 2.
    "tiny": FgBgConfig(preset="tiny", steps=180, batch_size=4, image_size=96, lr=1e-3, weight_decay=0.0,
                       optimizer="adam", warmup_steps=15, checkpoint_every=1000),
}
FIELD_NAMES = tuple(f.name for f in fields(FgBgConfig))


def resolve_config(preset: str = "paper", **overrides: Any) -> FgBgConfig:
    """The preset, then the user's overrides (``None`` values are ignored)."""
    if preset not in PRESETS:
        raise UserError(f"unknown fgbg preset {preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = sorted(k for k in overrides if k not in FIELD_NAMES)
    if unknown:
        raise UserError(f"unknown fgbg option(s) {', '.join(unknown)}; known: {', '.join(FIELD_NAMES)}")
    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}).validate()


def fg_logit(logits: Tensor) -> Tensor:
    """(B, 1, h, w) foreground-minus-background logit: > 0 exactly where the foreground probability > 0.5."""
    return logits[:, 1:2] - logits[:, 0:1] if logits.shape[1] == 2 else logits[:, 0:1]


class FgBgObjective:
    """The ``loss_fn`` of the trainer: pixel-wise cross-entropy against ``batch.masks`` (no host syncs)."""

    def __init__(self, config: FgBgConfig):
        self.config = config

    def __call__(self, model: nn.Module, batch, info) -> tuple[Tensor, dict[str, Tensor]]:
        from benchmark.methods.segmenter import caffe_input

        if batch.masks is None:
            raise UserError("fgbg trains on foreground masks, but the training view has none; train with "
                            "--masks gt (or predicted:DIR / unsupervised:NAME)")
        logits = model(caffe_input(batch.images.float(), self.config.mean_order))
        logits = F.interpolate(logits.float(), size=batch.size, mode="bilinear", align_corners=False)
        target = batch.masks > 0.5
        if logits.shape[1] == 2:
            loss = F.cross_entropy(logits, target.long())
        else:
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], target.float())
        return loss, {"cross_entropy": loss.detach()}


def optimizer_factory(name: str):
    """The trainer's optimiser factory for ``name`` (one of :data:`OPTIMIZERS`): ``sgd`` is the trainer's own
    SGD; ``adam`` takes the same groups (L2 weight decay as in SGD; the poly schedule and warm-up still
    apply). Imported lazily: the training machinery is not needed to list or load the plug-in."""
    from benchmark.methods.training.loop import build_optimizer, optimizer_groups

    def adam(groups, train_config) -> torch.optim.Adam:
        return torch.optim.Adam(optimizer_groups(groups, train_config), lr=train_config.lr,
                                weight_decay=train_config.weight_decay)

    return {"sgd": build_optimizer, "adam": adam}[name]


@register_mask_model("fgbg")
class FgBg(Plugin):
    """Foreground/background DeepLab-v2 ResNet-50 (the part segmenter of `ours` with 2 classes or 1 logit).

    Train it with `benchmark train -m fgbg`, use it with `benchmark masks predict` or `--masks model:CKPT`."""

    #: the view ``benchmark train`` trains on: whole images, the images :class:`MaskPredictor` predicts on
    #: (PASCAL-Part's views are its object crops)
    train_view = "full"
    param_ranges = {"steps": Range(1), "batch_size": Range(1), "image_size": Range(16, 4096),
                    "lr": Range(0, low_open=True), "checkpoint_every": Range(1), "warmup_steps": Range(0),
                    "outputs": Range(1, 2)}

    def __init__(self, preset: str = "paper", outputs: int | None = None, steps: int | None = None,
                 batch_size: int | None = None, image_size: int | None = None, lr: float | None = None,
                 init: str = "torchvision", amp: str | None = None, compile: bool = False,
                 checkpoint_every: int | None = None, optimizer: str | None = None,
                 warmup_steps: int | None = None, num_parts: int | None = None):
        self.preset = preset
        self.outputs = outputs
        self.steps = steps
        self.batch_size = batch_size
        self.image_size = image_size
        self.lr = lr
        self.init = init
        self.amp = amp
        self.compile = compile
        self.checkpoint_every = checkpoint_every
        self.optimizer = optimizer
        self.warmup_steps = warmup_steps
        if num_parts is not None:
            raise UserError("fgbg segments foreground from background; it has no number of parts (drop -k)")
        self.num_parts = None
        from benchmark.core.method import RunContext

        self.context = RunContext()

    # -- the training capability (as a part method's, see benchmark.core.method) -------------------------
    @classmethod
    def trainable(cls) -> bool:
        return True

    @classmethod
    def train_presets(cls) -> dict[str, dict[str, Any]]:
        """Every setting each preset fixes (``benchmark train --help``, docs/training.md)."""
        return {name: {k: v for k, v in asdict(config).items() if k != "preset"} for name, config in PRESETS.items()}

    @classmethod
    def weights_needed(cls, params: dict[str, Any] | None = None):
        """The file ``--init`` reads (the ImageNet ResNet-50 by default), as :meth:`Method.weights_needed`."""
        from benchmark.methods.pretrained import segmenter_init

        return segmenter_init(str((params or {}).get("init") or "torchvision"), "--init ")

    @classmethod
    def missing_weights(cls, params: dict[str, Any] | None = None) -> str | None:
        from benchmark.core.requirements import describe_missing

        return describe_missing(cls.weights_needed(params))

    @classmethod
    def random_weights_params(cls) -> dict[str, Any]:
        """The parameters that start the segmenter from random weights, as a part method declares them (the
        warning of ``benchmark train`` names them; unlike a part method's, they are never filled in for a
        missing weights file)."""
        return {"init": "random"}

    @classmethod
    def param_names(cls) -> list[str]:
        import inspect

        return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "num_parts")]

    def config(self) -> FgBgConfig:
        return resolve_config(self.preset, outputs=self.outputs, steps=self.steps, batch_size=self.batch_size,
                              image_size=self.image_size, lr=self.lr, checkpoint_every=self.checkpoint_every,
                              optimizer=self.optimizer, warmup_steps=self.warmup_steps)

    def init_identity(self) -> str:
        if self.init.startswith("caffe:"):
            path = Path(self.init[len("caffe:"):])
            if not path.is_file():
                raise UserError(f"--init caffe:{path}: no such file; pass the DeepLab ResNet-50 caffe weights")
            return f"caffe:{file_digest(path)}"
        if self.init not in ("torchvision", "random"):
            raise UserError(f"unknown --init {self.init!r}; use caffe:PATH, torchvision or random")
        return "torchvision:IMAGENET1K_V1" if self.init == "torchvision" else "random"

    def _fresh_model(self, config: FgBgConfig, seed: int) -> nn.Module:
        from benchmark.core.seeding import derive_seed
        from benchmark.methods.segmenter import PartSegmenter, init_segmenter

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "fgbg-init"))
            model = PartSegmenter(config.outputs)
            self.init_report_ = init_segmenter(model, self.init, mean_order=config.mean_order).summary()
        return model

    def train(self, data, *, out_dir: str | Path | None, resume: bool = False, seed: int = 0,
              device: str = "cpu", keep_checkpoints: int = 0):
        """Train on ``data`` (the ``train`` view of the training split, with masks) writing checkpoints, the
        loss log and ``model.pt`` to ``out_dir``; returns the trainer's ``TrainResult``."""
        from benchmark.methods.training import ParamGroup, Trainer, TrainConfig
        from benchmark.methods.training.distributed import local_device

        config = self.config()
        if self.amp not in (None, "bf16"):
            raise UserError(f"--amp must be bf16 (or absent for float32), got {self.amp!r}")
        device = local_device(device)
        model = self._fresh_model(config, seed)
        train_config = TrainConfig(
            steps=config.steps, batch_size=config.batch_size, lr=config.lr, momentum=config.momentum,
            weight_decay=config.weight_decay, poly_power=config.poly_power, max_iter=None,
            warmup_steps=config.warmup_steps,
            clip_grad_norm=config.clip_grad_norm, checkpoint_every=config.checkpoint_every,
            keep_checkpoints=keep_checkpoints, amp=self.amp, compile=bool(self.compile),
            num_workers=self.context.num_workers, image_size=config.image_size,
            extra={"method": "fgbg", "format": FORMAT, "fgbg": asdict(config), "init": self.init_identity(),
                   "masks": data.masks.spec, "dataset": getattr(data, "name", "?")})

        def groups(m):
            return [ParamGroup("backbone", list(m.backbone_parameters()), lr_mult=1.0),
                    ParamGroup("classifier", list(m.classifier_parameters()), lr_mult=config.classifier_lr_mult)]

        trainer = Trainer(model, groups, FgBgObjective(config), train_config, out_dir=out_dir, device=device,
                          seed=seed, progress=self.context.progress,
                          optimizer_factory=optimizer_factory(config.optimizer),
                          description=f"fgbg/{getattr(data, 'name', 'data')}")
        result = trainer.fit(data, resume=resume)
        self.model_ = model.eval()
        self.config_ = config
        return result


# --------------------------------------------------------------------------------------------------
# prediction
# --------------------------------------------------------------------------------------------------
class MaskPredictor:
    """A trained fg/bg network and the input rule it was trained with (see the module docstring)."""

    def __init__(self, model: nn.Module, config: FgBgConfig, identity: str):
        self.model = model.eval()
        self.config = config
        self.identity = identity  # content digest of the checkpoint (cache keys, result rows)

    @property
    def input_size(self) -> int:
        return self.config.image_size

    def to(self, device) -> "MaskPredictor":
        self.model = self.model.to(device)
        return self

    @torch.inference_mode()
    def coarse(self, images01: Tensor) -> Tensor:
        """(B, 1, h, w) foreground logits at output stride 8 for images already at ``input_size``."""
        from benchmark.methods.segmenter import caffe_input

        return fg_logit(self.model(caffe_input(images01.float(), self.config.mean_order)).float())

    @staticmethod
    def upsample(coarse: Tensor, size: tuple[int, int]) -> Tensor:
        """Binary (N, H, W) masks from coarse logits of images whose original size is ``size``."""
        return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)[:, 0] > 0


def load_mask_model(path: str | Path, map_location: str | torch.device = "cpu") -> MaskPredictor:
    """The fg/bg model of a ``model.pt`` (or training checkpoint) written by ``benchmark train -m fgbg``."""
    from benchmark.methods.segmenter import PartSegmenter, load_segmenter_state
    from benchmark.methods.training.checkpoint import load_checkpoint_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"fg/bg checkpoint {path} does not exist; train one with `benchmark train -m fgbg -d "
                        f"DATASET ...` and pass its model.pt")
    state = load_checkpoint_file(path, what="fg/bg checkpoint",
                                 fix="pass the model.pt written by `benchmark train -m fgbg`")
    extra = state.get("config", {}).get("extra", {}) if isinstance(state, dict) else {}
    if not isinstance(extra, dict) or extra.get("method") != "fgbg":
        raise UserError(f"{path} is not an fg/bg model (its configuration names method "
                        f"{extra.get('method') if isinstance(extra, dict) else None!r}); pass the model.pt "
                        f"written by `benchmark train -m fgbg`")
    config = FgBgConfig(**{k: v for k, v in extra["fgbg"].items() if k in FIELD_NAMES})
    model = PartSegmenter.for_loading(config.outputs)
    load_segmenter_state(model, state["model_state_dict"], source=str(path))
    return MaskPredictor(model.to(map_location), config, identity=f"fgbg:{file_digest(path)}")
