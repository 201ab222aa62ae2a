"""The backbone choice of the training-free methods (``kmeans``, ``dff``): ``-p backbone=NAME``.

One place that knows every backbone name, resolves a method's ``layers``/``facet``/``stride`` parameters
into a validated recipe, builds the frozen feature module and names its weights:

* VGG (``vgg19``, ``vgg16``; :mod:`benchmark.methods.backbones`): named layer taps (``relu5_4`` ...);
  ``facet`` and ``stride`` do not apply. Weights ``pretrained`` = ``imagenet``.
* ViT (``dino_vits8``, ``dino_vitb8``, ``dinov2_vits14``, ``dinov2_vitb14``; :mod:`benchmark.methods.vit`):
  transformer blocks by index and a facet (``key``, ``query``, ``value``, ``token``); ``stride`` below the
  patch size gives overlapping patches. Weights ``pretrained`` = the DINO/DINOv2 release.

Both are :class:`~benchmark.methods.frozen.FrozenBackbone` s with one interface: ``module(images) -> {name:
(N, C, h, w)}``, ``.layers`` (the output names), ``.device``, ``.identity()``, ``.weights_id``. The weights
files each backbone and ``-p weights`` value read are declared in :mod:`benchmark.methods.pretrained`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from benchmark.core.errors import UserError
from benchmark.methods import backbones as vgg
from benchmark.methods import vit

BACKBONES = vgg.ARCHS[::-1] + tuple(vit.VIT_BACKBONES)  # vgg19 first: the paper's backbone
VGG_PRETRAINED = "imagenet"


def is_vit(backbone: str) -> bool:
    return backbone in vit.VIT_BACKBONES


def check_backbone(backbone: str) -> None:
    if backbone not in BACKBONES:
        raise UserError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)} (-p backbone=NAME)")


@dataclass(frozen=True)
class Recipe:
    """What a method reads from a backbone: VGG layer names, or ViT block indices with a facet and stride."""

    backbone: str
    layers: tuple[Any, ...]  # VGG layer names | ViT block indices (non-negative)
    facet: str | None = None  # ViT only
    stride: int | None = None  # ViT only (the patch size = no overlap)

    def describe(self) -> str:
        if self.facet is None:
            return f"{self.backbone} {'+'.join(self.layers)}"
        blocks = "+".join(str(b) for b in self.layers)
        return f"{self.backbone} block {blocks} {self.facet}s, stride {self.stride}"


def _as_tuple(value) -> tuple:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def resolve(backbone: str, layers: Any, facet: str | None, stride: Any,
            vgg_default: Sequence[str]) -> Recipe:
    """Validate a method's backbone parameters; ``None`` means the backbone's default (``vgg_default`` for
    VGG -- each method has its own taps --, the last block's keys for DINO and its tokens for DINOv2)."""
    check_backbone(backbone)
    if is_vit(backbone):
        return Recipe(backbone, vit.resolve_blocks(backbone, None if layers is None else _as_tuple(layers)),
                      vit.resolve_facet(backbone, facet), vit.resolve_stride(backbone, stride))
    for name, value in (("facet", facet), ("stride", stride)):
        if value is not None:
            raise UserError(f"-p {name}={value} applies to ViT backbones only; {backbone} reads named layers "
                            f"(-p layers=NAME, e.g. {vgg_default[-1]})")
    names = tuple(vgg_default) if layers is None else tuple(str(name) for name in _as_tuple(layers))
    known = vgg.available_layers(backbone)
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise UserError(f"{backbone} has no layer(s) {', '.join(map(repr, unknown)) or '(none given)'}; available: "
                        f"{', '.join(known)}")
    return Recipe(backbone, names)


def _vgg_weights(backbone: str, weights: str) -> str:
    if weights == "pretrained":
        return VGG_PRETRAINED
    if weights in ("dino", "dinov2"):
        raise UserError(f"-p weights={weights} names a ViT release; {backbone} has ImageNet weights "
                        f"(weights=pretrained or imagenet), or pass -p backbone=dino_vits8 / dinov2_vits14")
    return weights


def _vit_weights(backbone: str, weights: str) -> str:
    if weights == "imagenet":
        spec = vit.vit_spec(backbone)
        raise UserError(f"{backbone} has self-supervised {spec.release.upper()} weights, not ImageNet-supervised "
                        f"ones: use -p weights=pretrained (or {spec.release}), random or PATH")
    return weights


def weights_needed(params: dict[str, Any] | None = None):
    """The weights files ``kmeans``/``dff`` read with these ``-p`` parameters (the chosen backbone's published
    weights, or the ``-p weights=PATH`` file), from the catalogue in :mod:`benchmark.methods.pretrained`."""
    from benchmark.methods.pretrained import feature_backbone

    params = params or {}
    return feature_backbone(str(params.get("backbone", "vgg19")), str(params.get("weights", "pretrained")))


def weights_identity(backbone: str, weights: str, seed: int = 0) -> str:
    """The weights identity recorded in result rows (``imagenet:vgg19``, ``dino:dino_vits8``, ...)."""
    check_backbone(backbone)
    if is_vit(backbone):
        return vit.weights_identity(backbone, _vit_weights(backbone, weights), seed)
    return vgg.weights_identity(backbone, _vgg_weights(backbone, weights), seed)


def build(recipe: Recipe, weights: str, seed: int = 0, precision: str = "auto"):
    """The frozen feature module of ``recipe`` (CPU; move it with ``.to(device)``)."""
    if is_vit(recipe.backbone):
        return vit.ViTFeatures(recipe.backbone, _vit_weights(recipe.backbone, weights), blocks=recipe.layers,
                               facet=recipe.facet, stride=recipe.stride, seed=seed, precision=precision)
    return vgg.VGGFeatures(recipe.backbone, _vgg_weights(recipe.backbone, weights), layers=recipe.layers,
                           seed=seed, precision=precision)
