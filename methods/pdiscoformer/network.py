"""The PDiscoFormer network (Aniraj, Dantas, Hoiem, Oymak, ECCV 2024; the release's ``IndividualLandmarkViT``).

A timm ViT (``vit_base_patch14_reg4_dinov2`` by default: DINOv2 ViT-B/14 with 4 register tokens) followed by
a part head:

1. Tokens: patch embedding, class and register tokens, position embeddings (timm's rule for the model:
   added before the prefix tokens are prepended when the model has ``no_embed_class``, as DINOv2-reg does),
   ``norm_pre``, the blocks, the final LayerNorm. The patch tokens form a ``(N, D, h, w)`` map ``x``. The
   position embeddings are those of the fixed input size (``image_size``, 518 px for the CUB releases):
   inputs must have that size.
2. Part assignment: ``K + 1`` prototypes ``a_k`` (the rows of ``fc_landmarks``, a bias-free 1x1 convolution),
   the squared distances ``d_k = |x|^2 - 2 a_k.x + |a_k|^2`` at every patch, and ``softmax_k(-d_k)`` (Gumbel
   softmax when training with ``gumbel=True``). The **last** channel is the background.
3. Part features: ``f_k = mean over the patches of maps_k * x`` (``(N, D, K + 1)``), then the modulation:
   ``"layer_norm"`` (PDiscoFormer; a LayerNorm over the whole ``(D, K + 1)`` matrix with an affine weight per
   entry) or ``"original"`` (PDiscoNet's per-entry scale, initialised to 1).
4. Classification: part dropout (``Dropout1d`` over the K foreground parts; active in training only) and a
   bias-free linear classifier shared by the parts, giving ``(N, classes, K)`` scores; the image's logits are
   their mean over the parts (what the release's evaluation and its classification loss use).

The module's ``state_dict`` keys are the release's (``cls_token``, ``reg_token``, ``pos_embed``,
``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``, ``fc_landmarks.weight``, ``modulation.*``,
``fc_class_landmarks.weight``): a released checkpoint loads key for key, and a checkpoint written here loads
in the release.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.core.errors import UserError

DEFAULT_BACKBONE = "vit_base_patch14_reg4_dinov2"
MODULATIONS = ("layer_norm", "original")


class PartOutput(NamedTuple):
    """What :meth:`PDiscoFormerNet.forward` returns (the release's 4-tuple, named; a tuple, so DDP reads it)."""

    features: Tensor  # (N, D, K + 1) part features (modulated when ``modulation_orth``, as the release returns)
    maps: Tensor  # (N, K + 1, h, w) part assignment probabilities; channel K (the last) is the background
    scores: Tensor  # (N, classes, K) class scores of every foreground part
    dist: Tensor  # (N, K + 1, h, w) squared distances of the patch features to the K + 1 prototypes

    @property
    def logits(self) -> Tensor:
        """(N, classes): the image's class logits, the mean of the parts' scores."""
        return self.scores.mean(dim=-1)


def _timm():
    try:
        import timm
    except ImportError as exc:  # timm is a dependency; a broken environment still gets one clear line
        raise UserError(f"pdiscoformer needs timm ({exc}); install it with `pip install timm`") from None
    return timm


def build_vit(backbone: str, image_size: int, *, patch_size: int | None = None, device: str | torch.device = "cpu",
              drop_path: float = 0.0) -> nn.Module:
    """timm's ``backbone`` architecture for ``image_size`` px inputs (patches of ``patch_size`` px, ``None``: the
    architecture's own), without weights (never downloads)."""
    timm = _timm()
    extra = {} if patch_size is None else {"patch_size": int(patch_size)}
    try:
        with torch.device(device):
            model = timm.create_model(backbone, pretrained=False, img_size=int(image_size), num_classes=0,
                                      drop_path_rate=float(drop_path), dynamic_img_size=False, **extra)
    except (RuntimeError, ValueError, TypeError, AssertionError) as exc:
        raise UserError(f"pdiscoformer backbone {backbone!r} at {image_size} px is not a timm ViT it can build "
                        f"({str(exc)[:160]}); pass -p backbone=<timm ViT name> such as {DEFAULT_BACKBONE}") from None
    needed = ("patch_embed", "blocks", "norm", "pos_embed", "cls_token", "num_prefix_tokens")
    if not all(hasattr(model, name) for name in needed) or model.pos_embed is None:
        raise UserError(f"pdiscoformer backbone {backbone!r} is not a timm VisionTransformer with learned position "
                        f"embeddings; pass -p backbone=<timm ViT name> such as {DEFAULT_BACKBONE}")
    return model


class PDiscoFormerNet(nn.Module):
    """ViT + part head + classifier (see the module docstring); the release's parameter names."""

    def __init__(self, vit: nn.Module, num_parts: int, num_classes: int, *, modulation: str = "layer_norm",
                 part_dropout: float = 0.3, gumbel: bool = True, gumbel_tau: float = 1.0, modulation_orth: bool = True):
        super().__init__()
        if modulation not in MODULATIONS:
            raise UserError(f"pdiscoformer modulation must be one of {', '.join(MODULATIONS)}, got {modulation!r}")
        self.num_parts = int(num_parts)
        self.num_classes = int(num_classes)
        self.num_prefix_tokens = int(vit.num_prefix_tokens)
        self.no_embed_class = bool(getattr(vit, "no_embed_class", False))
        self.feature_dim = int(vit.embed_dim)
        # The backbone's pieces are attributes of this module (not a submodule) so that the keys are the release's.
        self.cls_token = vit.cls_token
        self.reg_token = getattr(vit, "reg_token", None)
        self.patch_embed = vit.patch_embed
        self.pos_embed = vit.pos_embed
        self.pos_drop = vit.pos_drop
        self.norm_pre = vit.norm_pre
        self.blocks = vit.blocks
        self.norm = vit.norm
        self.grid = tuple(int(s) for s in vit.patch_embed.grid_size)
        self.image_size = tuple(int(s) for s in vit.patch_embed.img_size)
        slots = self.num_parts + 1
        self.fc_landmarks = nn.Conv2d(self.feature_dim, slots, 1, bias=False)
        self.modulation_type = modulation
        if modulation == "layer_norm":
            self.modulation = nn.LayerNorm([self.feature_dim, slots])
        else:
            self.modulation = nn.Parameter(torch.ones(1, self.feature_dim, slots))
        self.modulation_orth = bool(modulation_orth)
        self.dropout_full_landmarks = nn.Dropout1d(float(part_dropout))
        self.fc_class_landmarks = nn.Linear(self.feature_dim, self.num_classes, bias=False)
        nn.init.trunc_normal_(self.fc_class_landmarks.weight, std=0.02)
        self.gumbel = bool(gumbel)
        self.gumbel_tau = float(gumbel_tau)

    # -- pieces ---------------------------------------------------------------------------------------------
    def patch_features(self, images: Tensor) -> Tensor:
        """``(N, 3, H, W)`` normalised images at ``image_size`` -> ``(N, D, h, w)`` final-normed patch tokens."""
        if tuple(images.shape[-2:]) != self.image_size:
            raise ValueError(f"PDiscoFormerNet takes {self.image_size} inputs (its position embeddings), got "
                             f"{tuple(images.shape[-2:])}")
        x = self.patch_embed(images)
        prefix = [self.cls_token.expand(x.shape[0], -1, -1)]
        if self.reg_token is not None:
            prefix.append(self.reg_token.expand(x.shape[0], -1, -1))
        if self.no_embed_class:  # the position embeddings cover the patches only (DINOv2 with registers)
            x = torch.cat(prefix + [x + self.pos_embed], dim=1)
        else:
            x = torch.cat(prefix + [x], dim=1) + self.pos_embed
        x = self.norm_pre(self.pos_drop(x))
        x = self.norm(self.blocks(x))
        n = x.shape[0]
        return x[:, self.num_prefix_tokens:].reshape(n, *self.grid, -1).permute(0, 3, 1, 2).contiguous()

    def distances(self, x: Tensor) -> Tensor:
        """``(N, K + 1, h, w)`` squared distances of the patch features to the prototypes (the release's
        expansion ``|x|^2 - 2 a.x + |a|^2``, not clamped)."""
        proto = self.fc_landmarks.weight.flatten(1)  # (K + 1, D)
        cross = torch.einsum("nchw,kc->nkhw", x, proto)
        return x.pow(2).sum(1, keepdim=True) - 2 * cross + proto.pow(2).sum(1)[None, :, None, None]

    def forward(self, images: Tensor) -> PartOutput:
        x = self.patch_features(images)
        dist = self.distances(x)
        if self.training and self.gumbel:
            maps = F.gumbel_softmax(-dist, tau=self.gumbel_tau, dim=1)
        else:
            maps = (-dist).softmax(dim=1)
        features = torch.einsum("nkhw,nchw->nck", maps, x) / (x.shape[-2] * x.shape[-1])  # mean over patches
        if self.modulation_type == "layer_norm":
            modulated = self.modulation(features)
        else:
            modulated = features * self.modulation
        parts = self.dropout_full_landmarks(modulated[..., :-1].transpose(1, 2))  # (N, K, D), background left out
        scores = self.fc_class_landmarks(parts).transpose(1, 2)  # (N, classes, K)
        return PartOutput(modulated if self.modulation_orth else features, maps, scores, dist)


def build_network(backbone: str, image_size: int, num_parts: int, num_classes: int, *, modulation: str = "layer_norm",
                  part_dropout: float = 0.3, gumbel: bool = True, gumbel_tau: float = 1.0, modulation_orth: bool = True,
                  patch_size: int | None = None, device: str | torch.device = "cpu") -> PDiscoFormerNet:
    vit = build_vit(backbone, image_size, patch_size=patch_size, device=device)
    with torch.device(device):
        return PDiscoFormerNet(vit, num_parts, num_classes, modulation=modulation, part_dropout=part_dropout,
                               gumbel=gumbel, gumbel_tau=gumbel_tau, modulation_orth=modulation_orth)
