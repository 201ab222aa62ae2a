"""Training presets of ``ours`` and the switches of the reference's quirks (method-spec.md §1.4-1.6,
decisions.md).

``paper`` is the reference training (``trainer_ours.py`` + ``configs/config.yaml``) exactly, quirks
included; every quirk is a named field whose other value fixes it:

=========================  =====================  ======================================================
field                      paper (reference)      fixed
=========================  =====================  ======================================================
``feature_reduction``      ``"sum"``: L_f summed  ``"mean"``: batch mean like L_v/L_e (its weight then
                           over the batch (§8.3)  does not change with the batch size)
``legacy_positive``        ``True``: position 0   ``False``: the positive is drawn from all B-1 other
                           of the positive list   images (B = 2 then works)
                           is never drawn (§8.4)
``mean_order``             ``"rgb_caffe_bgr_      ``"rgb"``: the means subtracted from the channels they
                           quirk"``: the Caffe    belong to (what the Caffe backbone expects)
                           BGR means subtracted
                           from R,G,B (§8.6)
``max_iter``               ``100000`` whatever    ``None``: the poly schedule decays over the steps run
                           the number of steps
                           (§8.5)
=========================  =====================  ======================================================

``tiny`` is for ``benchmark demo`` and tests on CPU: 64 px images, batch 4, 20 steps (a checkpoint every 5,
so that ``--resume`` after a kill has something to resume from), from random
weights (segmenter and VGG), learning rate 0.02 (the paper's 1e-5 moves random weights nowhere in 20
steps), the poly horizon = the steps, batch-mean L_f (its weight then does not depend on the batch size).
Same losses, lambdas, warp and augmentation as ``paper``. Tuned on the synthetic demo data (seed 0, FG-NMI
on the fg test view): 20 steps at lr 2e-3 -> 20.1, 12 steps at 3e-2 -> 26.8, 20 at 2e-2 -> 36.4, 20 at 5e-2
-> 29.5; a 1-step model gives 12.6 and ``random`` 0.0. About 80 s on one busy CPU core.

Dataset-specific overrides: PASCAL-Part trains with λ_e = 5.7e4 (the appendix; the reference has one
config file, this value must be passed as an override there).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from benchmark.core.errors import UserError

LOSS_TERMS = ("feature", "color", "contrastive", "equivariance")


@dataclass(frozen=True)
class OursConfig:
    """Everything that determines an ``ours`` training run (recorded in checkpoints and cache keys)."""

    preset: str = "paper"
    num_parts: int = 4
    # schedule and optimiser (§1.6)
    steps: int = 100_000
    batch_size: int = 6
    image_size: int = 256
    lr: float = 1e-5
    classifier_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    max_iter: int | None = 100_000
    clip_grad_norm: float | None = 5.0
    checkpoint_every: int = 5000
    # losses (§1.4)
    lambda_feature: float = 5.0  # lambda_sc
    lambda_color: float = 30.0  # lambda_rgb
    lambda_contrastive: float = 2.3e3
    lambda_equivariance: float = 5.7e3  # lambda_eqv (PASCAL-Part: 5.7e4)
    temperature: float = 0.19
    ref_layers: tuple[str, ...] = ("relu3_2", "relu5_4")
    ref_weights: tuple[float, ...] = (0.33, 1.0)
    use_lab: bool = True
    ablate: tuple[str, ...] = ()
    # quirks (see the module docstring)
    feature_reduction: str = "sum"
    legacy_positive: bool = True
    mean_order: str = "rgb_caffe_bgr_quirk"
    # augmentation (§1.1, the code's values) and warp (§1.5)
    jitter_p: float = 0.8
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.2
    hue: float = 0.2
    grayscale_p: float = 0.2
    warp_rotation_deg: float = 60.0
    warp_scale: tuple[float, float] = (0.7, 2.0)  # random_scale_low/high; rho ~ U(1/high, 1/low)
    warp_translation: float = 0.1
    tps_sigma: float = 0.01

    def validate(self) -> "OursConfig":
        bad = [t for t in self.ablate if t not in LOSS_TERMS]
        if bad:
            raise UserError(f"unknown loss term(s) to ablate: {', '.join(bad)}; choose from {', '.join(LOSS_TERMS)}")
        if len(set(self.ablate)) == len(LOSS_TERMS):
            raise UserError("--ablate removes every loss term; keep at least one")
        if self.feature_reduction not in ("sum", "mean"):
            raise UserError(f"feature_reduction must be 'sum' (paper) or 'mean', got {self.feature_reduction!r}")
        if self.mean_order not in ("rgb_caffe_bgr_quirk", "rgb"):
            raise UserError(f"mean_order must be 'rgb_caffe_bgr_quirk' (paper quirk) or 'rgb', got {self.mean_order!r}")
        if self.num_parts < 2:
            raise UserError(f"num_parts must be >= 2, got {self.num_parts}")
        if self.image_size < 32:
            raise UserError(f"image_size must be >= 32 (output stride 8), got {self.image_size}")
        if "contrastive" not in self.ablate and self.legacy_positive and self.batch_size < 3:
            raise UserError(
                f"batch size {self.batch_size} is too small for the reference's positive sampling: it draws "
                "the positive of each prototype from positions 1..B-2 of the other B-1 images "
                "(randint(1, B-1)), an empty range for B < 3 (the reference crashes there). Use "
                "a training batch of 3 or more (--train-batch-size with `benchmark train`, -p batch_size=N with "
                "`benchmark run`), or -p legacy_positive=false to draw from all other images")
        if not self.legacy_positive and "contrastive" not in self.ablate and self.batch_size < 2:
            raise UserError("the contrastive loss needs at least 2 images per batch; use a training batch of 2 or "
                            "more (--train-batch-size with `benchmark train`, -p batch_size=N with `benchmark run`)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(t for t in LOSS_TERMS if t not in self.ablate)


PRESETS: dict[str, OursConfig] = {
    "paper": OursConfig(),
    "tiny": OursConfig(preset="tiny", steps=20, batch_size=4, image_size=64, lr=2e-2, max_iter=None,
                       checkpoint_every=5, feature_reduction="mean"),  # often enough for --resume
}

# Per-dataset overrides applied unless the user sets the field explicitly.
DATASET_OVERRIDES: dict[str, dict[str, Any]] = {
    "pascal-part": {"lambda_equivariance": 5.7e4},
}

FIELD_NAMES = tuple(f.name for f in fields(OursConfig))


def resolve_config(preset: str = "paper", *, dataset: str | None = None, **overrides: Any) -> OursConfig:
    """The preset, then the dataset's overrides, then the user's (``None`` values are ignored)."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = sorted(k for k in overrides if k not in FIELD_NAMES)
    if unknown:
        raise UserError(f"unknown ours training option(s) {', '.join(unknown)}; known: {', '.join(FIELD_NAMES)}")
    config = PRESETS[preset]
    if dataset in DATASET_OVERRIDES:
        config = replace(config, **DATASET_OVERRIDES[dataset])
    given = {k: v for k, v in overrides.items() if v is not None}
    for key in ("ablate", "ref_layers", "ref_weights", "warp_scale"):
        if key in given:
            given[key] = tuple(given[key])
    return replace(config, **given).validate()
