"""Frozen self-supervised ViT backbones (DINO, DINOv2) built through timm, returning dense patch features.

::

    from benchmark.methods.vit import ViTFeatures

    vit = ViTFeatures("dino_vits8", weights="pretrained", blocks=(11,), facet="key").to(device)
    feats = vit(images)              # images: (N, 3, H, W) RGB in [0, 1]; ImageNet mean/std applied here
    feats["block11.key"].shape       # (N, 384, H/8, W/8): one 384-d descriptor per 8x8 patch
    vit.weights_id                   # "dino:dino_vits8" | "random:seed0" | "file:<sha256-16>"

Backbones (``VIT_BACKBONES``): ``dino_vits8``, ``dino_vitb8`` (DINO, Caron et al., ICCV 2021) and
``dinov2_vits14``, ``dinov2_vitb14`` (DINOv2, Oquab et al., TMLR 2024). Each is timm's own architecture
(``timm.create_model(<timm name>, num_classes=0)``, built without weights) with a state dict loaded here;
timm's ``pretrained=True`` is never called (it needs the network).

Features (``forward``), for every requested block ``b`` (0-based; ``-1`` = the last):

* ``key`` / ``query`` / ``value``: block ``b``'s attention projection ``qkv(norm1(x))`` split into its
  three parts, each ``(tokens, heads, head_dim)`` with the heads concatenated -> ``heads * head_dim``
  channels (the "facets" of Amir et al., *Deep ViT Features as Dense Visual Descriptors*, 2021).
* ``token``: block ``b``'s output tokens passed through the model's final LayerNorm (what both releases
  hand out as patch features: DINOv2's ``x_norm_patchtokens`` for the last block, and
  ``get_intermediate_layers(norm=True)`` of DINO/DINOv2 for earlier ones).

The class token is dropped; patch tokens are returned as a ``(N, C, h, w)`` map (float32).

Inputs of any size: the image is first resized (bilinear, anti-aliased) to the nearest multiple of the
patch size ``p`` in each direction, and the position embeddings are resampled to the patch grid
(bicubic, anti-aliased, ``align_corners=False`` -- timm's ``dynamic_img_size`` rule, so the features equal
timm's own dynamic-size forward; at the native grid, 28x28 for DINO at 224 px, nothing is resampled).

Overlapping patches: ``stride < p`` runs the patch embedding with that stride (the dense-descriptor
recipe; the position embeddings are resampled to the denser grid). The patch centres ``p/2 + i*stride`` no
longer tile the image, so the map is resampled (linearly, exactly at the centres, clamped at the borders) to
a grid of ``H / stride`` (rounded half up) uniform cells whose centres are ``(j + 1/2) * H / cells``: downstream code
can then treat every map as "one cell per ``H/h`` pixels", as it does for VGG (with ``stride = p`` this
resampling is the identity and is skipped).

Weights (``weights=``):

* ``"pretrained"`` (or the release name ``"dino"`` / ``"dinov2"``): the published self-supervised
  weights, read from (1) the torch hub cache, ``$TORCH_HOME/hub/checkpoints/<release file>`` (the file
  ``torch.hub.load_state_dict_from_url(<release URL>)`` leaves there), or (2) timm's Hugging Face hub cache
  (``timm/<timm name>.<tag>``, ``model.safetensors``; what ``timm.create_model(..., pretrained=True)``
  leaves). Downloaded only when ``PARTBENCH_ALLOW_DOWNLOAD=1``; otherwise one :class:`UserError` with the
  commands that fetch them. Identity ``<release>:<backbone>``.
* ``PATH``: a ``.pth``/``.pt`` (``torch.load(weights_only=True)``) or ``.safetensors`` file in either the
  original release layout or timm's; identity: the file's SHA-256 prefix.
* ``"random"``: tests only; seeded N(0, 0.02^2) weight matrices, class token and position embeddings
  (timm's ViT scale), zero biases, unit LayerNorms, LayerScale 1; a :class:`RandomWeightsWarning`.

Release -> timm key mapping (:func:`to_timm_state_dict`): the DINO and DINOv2 ViT-S/B releases already use
timm's names (``cls_token``, ``pos_embed``, ``patch_embed.proj.*``, ``blocks.N.{norm1,attn.qkv,attn.proj,
ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}.*``, ``norm.*``). The mapping drops DINOv2's ``mask_token`` (the
masked-image-modelling token, unused at inference) and leading ``module.``/``backbone.`` prefixes (a
teacher backbone saved from a wrapper); anything else must match timm's model key by key and shape by
shape. Variants with register tokens are not among the supported backbones and are refused.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.core.cache import file_digest
from benchmark.core.errors import UserError
from benchmark.core.requirements import ALLOW_DOWNLOAD_ENV, downloads_allowed  # noqa: F401  (re-exported)
from benchmark.methods import pretrained
from benchmark.methods.frozen import (IMAGENET_MEAN, IMAGENET_STD, PRECISIONS,  # noqa: F401  (re-exported)
                                      FrozenBackbone, RandomWeightsWarning)
from benchmark.methods.weights import check_state_dict, read_state_dict

FACETS = ("key", "query", "value", "token")
QKV_FACETS = ("query", "key", "value")  # the order of timm's fused qkv projection
# Bump when the input pipeline (resizing to the patch grid, normalisation, centre resampling) changes.
TRANSFORM_VERSION = "vit-patchgrid-v1"


@dataclass(frozen=True)
class ViTSpec:
    """One supported backbone: its timm architecture, its published weights and its default recipe."""

    name: str
    timm_name: str  # timm architecture (built without weights)
    timm_tag: str  # timm's pretrained tag; its Hugging Face repository is timm/<timm_name>.<timm_tag>
    release: str  # "dino" | "dinov2": the weights identity prefix
    url: str  # the original release file (facebookresearch)
    patch: int
    depth: int  # transformer blocks (checked against timm's model by the tests)
    default_facet: str
    reference: str

    @property
    def title(self) -> str:
        return {"dino": "DINO", "dinov2": "DINOv2"}[self.release]

    @property
    def hub_repo(self) -> str:
        return f"timm/{self.timm_name}.{self.timm_tag}"

    @property
    def release_file(self) -> str:
        return os.path.basename(urlparse(self.url).path)


_DINO = "Caron et al., Emerging Properties in Self-Supervised Vision Transformers, ICCV 2021"
_DINOV2 = "Oquab et al., DINOv2: Learning Robust Visual Features without Supervision, TMLR 2024"
VIT_BACKBONES: dict[str, ViTSpec] = {spec.name: spec for spec in (
    ViTSpec("dino_vits8", "vit_small_patch8_224", "dino", "dino",
            "https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
            8, 12, "key", _DINO),
    ViTSpec("dino_vitb8", "vit_base_patch8_224", "dino", "dino",
            "https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
            8, 12, "key", _DINO),
    ViTSpec("dinov2_vits14", "vit_small_patch14_dinov2", "lvd142m", "dinov2",
            "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
            14, 12, "token", _DINOV2),
    ViTSpec("dinov2_vitb14", "vit_base_patch14_dinov2", "lvd142m", "dinov2",
            "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
            14, 12, "token", _DINOV2),
)}


def vit_spec(backbone: str) -> ViTSpec:
    try:
        return VIT_BACKBONES[backbone]
    except KeyError:
        raise UserError(f"unknown ViT backbone {backbone!r}; choose one of {', '.join(VIT_BACKBONES)}") from None


# -- the network definition ---------------------------------------------------------------------------
def _timm():
    try:
        import timm
    except ImportError as exc:  # timm is a dependency; a broken environment still gets one clear line
        raise UserError(f"ViT backbones need timm ({exc}); install it with `pip install timm`") from None
    return timm


def timm_model(backbone: str, device: str | torch.device = "meta", **kwargs) -> nn.Module:
    """timm's architecture of ``backbone`` without weights (on the meta device: no memory, no init time)."""
    spec = vit_spec(backbone)
    with torch.device(device):
        model = _timm().create_model(spec.timm_name, pretrained=False, num_classes=0, **kwargs)
    if getattr(model, "reg_token", None) is not None or getattr(model, "no_embed_class", False):
        raise RuntimeError(f"timm's {spec.timm_name} has register tokens or class-free position embeddings, "
                           f"which this module does not implement")
    return model.eval()


def resolve_blocks(backbone: str, blocks: int | str | Sequence[int | str] | None) -> tuple[int, ...]:
    """Block indices as non-negative ints (``None`` -> the last block; ``-1`` counts from the end)."""
    n = vit_spec(backbone).depth
    if blocks is None:
        return (n - 1,)
    if isinstance(blocks, (int, str)):
        blocks = (blocks,)
    out = []
    for block in blocks:
        text = str(block).strip()
        if text.startswith("block"):
            text = text[len("block"):]
        try:
            index = int(text)
        except ValueError:
            raise UserError(f"{backbone} reads transformer blocks by index: pass -p layers=B with B in 0..{n - 1} "
                            f"(or -1 for the last block), got {block!r}") from None
        if not -n <= index < n:
            raise UserError(f"{backbone} has blocks 0..{n - 1} (or -1 for the last); got {block!r}")
        out.append(index % n)
    if len(set(out)) != len(out):
        raise UserError(f"duplicate blocks in {tuple(blocks)}")
    return tuple(out)


def resolve_facet(backbone: str, facet: str | None) -> str:
    if facet is None:
        return vit_spec(backbone).default_facet
    if facet not in FACETS:
        raise UserError(f"unknown ViT facet {facet!r}; choose one of {', '.join(FACETS)}")
    return facet


def resolve_stride(backbone: str, stride: int | str | None) -> int:
    patch = vit_spec(backbone).patch
    if stride is None:
        return patch
    try:
        value = int(stride)
    except (TypeError, ValueError):
        raise UserError(f"stride must be an integer in 1..{patch} for {backbone}, got {stride!r}") from None
    if not 1 <= value <= patch:
        raise UserError(f"stride must be in 1..{patch} (the patch size) for {backbone}, got {stride!r}")
    return value


# -- weights --------------------------------------------------------------------------------------------
def release_weights_path(backbone: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url(<release URL>)`` keeps the release file."""
    return pretrained.torch_hub_checkpoint(vit_spec(backbone).url)


def timm_hub_weights_path(backbone: str) -> Path | None:
    """timm's cached file for ``backbone`` (see :func:`benchmark.methods.pretrained.hf_hub_file`), or ``None``."""
    return pretrained.hf_hub_file(vit_spec(backbone).hub_repo)


def missing_weights_message(backbone: str) -> str:
    need = pretrained.vit_weights(backbone)
    return f"{need.what} are not available offline: {need.fix}."


def read_weights_file(path: Path) -> dict[str, Tensor]:
    """A state dict from a ``.safetensors`` or ``torch.save`` file, through the one loader of
    :mod:`benchmark.methods.weights` (a DINO training checkpoint's ``teacher`` is unwrapped)."""
    return read_state_dict(path, what="weights file", unwrap=("teacher",),
                           fix="pass the release .pth file (a state dict) or timm's model.safetensors")


def to_timm_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a DINO/DINOv2 release state dict (or a timm one: unchanged) onto timm's key names (see the module
    docstring): strip ``module.``/``backbone.`` prefixes, drop ``mask_token`` and DINO's projection head."""
    if "register_tokens" in state:
        raise UserError("this state dict has register tokens (a DINOv2 '_reg' variant); partbench supports "
                        f"{', '.join(VIT_BACKBONES)} without registers")
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        if key == "mask_token" or key.startswith("head."):
            continue
        out[key] = value
    return out


def _load_pretrained(backbone: str) -> tuple[dict[str, Tensor], str]:
    spec = vit_spec(backbone)
    path = pretrained.vit_weights(backbone).found()  # the release file first, then timm's cache
    if path is not None:
        title = spec.title if path == release_weights_path(backbone) else "timm"
        return read_weights_file(path), f"{title} weights file {path}"
    if downloads_allowed():
        try:
            state = torch.hub.load_state_dict_from_url(spec.url, map_location="cpu", weights_only=True)
        except Exception as exc:  # network errors come in many types; the fix is the same
            raise UserError(f"downloading {spec.url} failed ({exc}). " + missing_weights_message(backbone)) from None
        return state, f"downloaded {spec.url}"
    raise UserError(missing_weights_message(backbone))


def _pretrained_names(backbone: str) -> tuple[str, ...]:
    return ("pretrained", vit_spec(backbone).release)


def weights_identity(backbone: str, weights: str, seed: int = 0) -> str:
    """The ``weights_id`` a :class:`ViTFeatures` with these arguments will have (without building it)."""
    spec = vit_spec(backbone)
    if weights == "random":
        return f"random:seed{int(seed)}"
    if weights in _pretrained_names(backbone):
        return f"{spec.release}:{backbone}"
    path = Path(str(weights)).expanduser()
    if not path.is_file():
        raise UserError(f"weights {weights!r} for {backbone} is neither 'pretrained' ({spec.title}'s "
                        f"published weights), 'random' nor an existing file; pass -p weights=PATH to "
                        f"{spec.release_file} or to timm's {spec.hub_repo} model.safetensors")
    return f"file:{file_digest(path)}"


def _random_init(model: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, param in model.named_parameters():  # network order: deterministic
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "gamma":  # LayerScale
                param.fill_(1.0)
            elif leaf == "bias":
                param.zero_()
            elif param.ndim == 1:  # LayerNorm weights
                param.fill_(1.0)
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)


# -- geometry ---------------------------------------------------------------------------------------------
def interpolate_pos_embed(pos_embed: Tensor, num_prefix: int, old_grid: tuple[int, int],
                          new_grid: tuple[int, int]) -> Tensor:
    """Position embeddings ``(1, prefix + h*w, C)`` resampled to ``new_grid`` (bicubic, anti-aliased,
    ``align_corners=False``); the prefix (class token) entries are kept as they are."""
    if tuple(new_grid) == tuple(old_grid):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    channels = grid.shape[-1]
    grid = grid.float().reshape(1, old_grid[0], old_grid[1], channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", align_corners=False, antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, channels).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


def patch_grid_size(size: int, patch: int) -> int:
    """The input length (pixels) the image is resized to: the nearest multiple of ``patch`` (halves round up;
    at least one patch)."""
    return max(1, math.floor(size / patch + 0.5)) * patch


def centre_resample_matrix(cells: int, patches: int, length: int, patch: int, stride: int,
                           device=None) -> Tensor:
    """``(cells, patches)`` linear interpolation from patch centres ``patch/2 + i*stride`` to the centres
    ``(j + 1/2) * length / cells`` of ``cells`` uniform cells (clamped to the first/last patch)."""
    centres = (torch.arange(cells, device=device, dtype=torch.float64) + 0.5) * length / cells
    t = ((centres - patch / 2) / stride).clamp(0, patches - 1)
    low = t.floor().long().clamp(max=patches - 1)
    high = (low + 1).clamp(max=patches - 1)
    frac = (t - low).float()
    matrix = torch.zeros(cells, patches, device=device)
    rows = torch.arange(cells, device=device)
    matrix.index_put_((rows, low), 1 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix


# -- the module -----------------------------------------------------------------------------------------
class ViTFeatures(FrozenBackbone):
    """A frozen DINO/DINOv2 ViT returning per-patch facets of chosen blocks (see the module docstring).

    ``forward(images)`` takes ``(N, 3, H, W)`` float RGB in ``[0, 1]`` and returns
    ``{"block{b}.{facet}": (N, C, h, w) float32}`` for the requested blocks, from one pass that stops at the
    deepest of them.
    """

    def __init__(self, backbone: str = "dino_vits8", weights: str = "pretrained",
                 blocks: int | Sequence[int] | None = None, facet: str | None = None, stride: int | None = None,
                 seed: int = 0, precision: str = "auto"):
        super().__init__(precision)
        spec = vit_spec(backbone)
        self.arch = backbone
        self.spec = spec
        self.blocks = resolve_blocks(backbone, blocks)
        self.facet = resolve_facet(backbone, facet)
        self.stride = resolve_stride(backbone, stride)
        self.patch = spec.patch
        self.seed = int(seed)
        self.layers = tuple(f"block{b}.{self.facet}" for b in self.blocks)
        self.weights_id = weights_identity(backbone, weights, self.seed)

        model = timm_model(backbone).to_empty(device="cpu")
        if weights == "random":
            _random_init(model, self.seed)
            warnings.warn(f"{backbone} backbone uses RANDOM weights (seed {self.seed}): features are not "
                          f"{spec.title} features; use this only for tests", RandomWeightsWarning,
                          stacklevel=2)
        else:
            if weights in _pretrained_names(backbone):
                state, source = _load_pretrained(backbone)
            else:
                path = Path(str(weights)).expanduser()
                state, source = read_weights_file(path), f"weights file {path}"
            state = to_timm_state_dict(state)
            check_state_dict(model.state_dict(), state, source=source, target=f"timm's {backbone}",
                             fix=f"pass the release file {spec.release_file} or timm's {spec.hub_repo} weights")
            model.load_state_dict(state, strict=True)
        self.weights = weights
        self.model = model
        self.num_prefix = int(model.num_prefix_tokens)
        self.native_grid = tuple(int(s) for s in model.patch_embed.grid_size)
        self.freeze()

    def identity(self) -> dict:
        """Everything about the backbone that determines its outputs (a cache-key component)."""
        return {"backbone": self.arch, "weights": self.weights_id, "layers": list(self.layers),
                "stride": self.stride, "precision": self.resolved_precision(), "transform": TRANSFORM_VERSION}

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The size an ``height`` x ``width`` image is resized to before the patch embedding."""
        return patch_grid_size(height, self.patch), patch_grid_size(width, self.patch)

    def embed(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Normalised images -> tokens ``(N, prefix + h*w, C)`` with position embeddings, and the grid."""
        model = self.model
        proj = model.patch_embed.proj
        f = F.conv2d(x, proj.weight, proj.bias, stride=self.stride)
        grid = (int(f.shape[-2]), int(f.shape[-1]))
        tokens = model.patch_embed.norm(f.flatten(2).transpose(1, 2))
        pos = interpolate_pos_embed(model.pos_embed, self.num_prefix, self.native_grid, grid)
        tokens = torch.cat([model.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + pos
        return model.norm_pre(model.patch_drop(model.pos_drop(tokens))), grid

    def _qkv(self, block: nn.Module, tokens: Tensor) -> Tensor:
        attn = block.attn
        n, t, _ = tokens.shape
        qkv = attn.qkv(block.norm1(tokens)).reshape(n, t, 3, attn.num_heads, attn.head_dim)
        which = QKV_FACETS.index(self.facet)
        part = qkv[:, :, which].transpose(1, 2)  # (N, heads, T, head_dim), timm's layout
        if self.facet == "query":
            part = attn.q_norm(part)
        elif self.facet == "key":
            part = attn.k_norm(part)
        return part.transpose(1, 2).reshape(n, t, attn.num_heads * attn.head_dim)

    @torch.no_grad()
    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"ViTFeatures expects (N, 3, H, W) RGB images, got shape {tuple(images.shape)}")
        x = images.to(self.device, torch.float32, non_blocking=True)
        size = self.input_size(int(x.shape[-2]), int(x.shape[-1]))
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        x = self.normalise(x)
        out: dict[int, Tensor] = {}
        last = max(self.blocks)
        with self.precision_context():
            tokens, grid = self.embed(x)
            for index, block in enumerate(self.model.blocks[:last + 1]):
                if index in self.blocks and self.facet != "token":
                    out[index] = self._qkv(block, tokens)
                    if index == last:
                        break
                tokens = block(tokens)
                if index in self.blocks and self.facet == "token":
                    out[index] = self.model.norm(tokens)
        return {f"block{b}.{self.facet}": self._to_map(out[b], grid, size) for b in self.blocks}

    def _to_map(self, tokens: Tensor, grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
        n, _, c = tokens.shape
        f = tokens[:, self.num_prefix:].float().reshape(n, grid[0], grid[1], c).permute(0, 3, 1, 2)
        if self.stride == self.patch:
            return f.contiguous()
        cells = tuple(max(1, math.floor(s / self.stride + 0.5)) for s in size)
        ay = centre_resample_matrix(cells[0], grid[0], size[0], self.patch, self.stride, f.device)
        ax = centre_resample_matrix(cells[1], grid[1], size[1], self.patch, self.stride, f.device)
        return torch.einsum("yi,ncij,xj->ncyx", ay, f, ax).contiguous()

    def extra_repr(self) -> str:
        return (f"backbone={self.arch!r}, weights={self.weights_id!r}, layers={self.layers}, "
                f"stride={self.stride}")


def nonnegative_parts(f: Tensor, eps: float = 1e-12) -> Tensor:
    """``(N, C, h, w)`` signed features -> ``(N, 2C, h, w)`` non-negative ``[max(u, 0), max(-u, 0)]`` of the
    per-position L2-normalised ``u`` (NMF needs a non-negative matrix; ``u = pos - neg`` loses nothing)."""
    u = F.normalize(f.float(), dim=1, eps=eps)
    return torch.cat([u.clamp_min(0), (-u).clamp_min(0)], dim=1)


# -- speed benchmark (``benchmark bench features -p arch=dinov2_vits14``; registered in methods/bench.py) ----
def bench_vit_features(images: int = 8, size: int = 256, batch_size: int = 8, arch: str = "dinov2_vits14",
                       layers: str | None = None, facet: str | None = None, stride: int | None = None,
                       device: str = "cpu", precision: str = "auto", split_size: int = 5794, seed: int = 0) -> str:
    """Batched ViT facet extraction through :class:`FeatureExtractor` (one pass stopping at the deepest block)
    vs a plain timm forward (``dynamic_img_size=True``, the whole network) image by image, with hooks."""
    import time

    from benchmark.methods.features import FeatureExtractor

    spec = vit_spec(arch)
    if stride is not None and int(stride) != spec.patch:
        raise UserError(f"bench features compares against timm's own forward, which has no overlapping patches; "
                        f"omit -p stride (the patch size, {spec.patch}, is used)")
    images, size, batch_size, split_size = int(images), int(size), int(batch_size), int(split_size)
    blocks = None if layers in (None, "") else tuple(part for part in str(layers).split(",") if part.strip())
    device = torch.device(device)
    with warnings.catch_warnings():  # speed does not depend on the weights' values
        warnings.simplefilter("ignore", RandomWeightsWarning)
        backbone = ViTFeatures(arch, "random", blocks=blocks, facet=facet, seed=int(seed),
                               precision=precision).to(device)
    extractor = FeatureExtractor(backbone)
    data = torch.rand(images, 3, size, size, generator=torch.Generator().manual_seed(int(seed)))

    baseline = timm_model(arch, device="cpu", dynamic_img_size=True)
    baseline.load_state_dict(backbone.model.state_dict())
    baseline = baseline.to(device)
    captured: dict[int, Tensor] = {}
    for b in backbone.blocks:
        if backbone.facet == "token":
            baseline.blocks[b].register_forward_hook(
                lambda _m, _i, out, b=b: captured.__setitem__(b, baseline.norm(out)))
        else:
            which = QKV_FACETS.index(backbone.facet)
            baseline.blocks[b].attn.qkv.register_forward_hook(
                lambda _m, _i, out, b=b, which=which: captured.__setitem__(b, out.chunk(3, dim=-1)[which]))
    grid = tuple(s // spec.patch for s in backbone.input_size(size, size))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    extractor(data[:1].to(device))  # warm-up (allocator, kernels)
    sync()
    start = time.perf_counter()
    for i in range(0, images, batch_size):
        ours = extractor(data[i:i + batch_size].to(device))
    sync()
    t_ours = time.perf_counter() - start

    start = time.perf_counter()
    with torch.no_grad():
        for i in range(images):
            x = data[i:i + 1].to(device)
            x = F.interpolate(x, size=backbone.input_size(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
            baseline.forward_features((x - backbone.mean) / backbone.std)
            plain = {b: captured[b][:, backbone.num_prefix:].float().cpu() for b in backbone.blocks}
    sync()
    t_base = time.perf_counter() - start
    worst = 0.0
    for b, name in zip(backbone.blocks, backbone.layers):
        expected = plain[b].reshape(1, grid[0], grid[1], -1).permute(0, 3, 1, 2)
        mine = ours[name][-1:].cpu()
        worst = max(worst, float((mine - expected).abs().max() / expected.abs().max().clamp_min(1e-12)))
    return "\n".join([
        f"features bench: {arch} {backbone.facet} of block(s) {','.join(map(str, backbone.blocks))} "
        f"({spec.depth} blocks), {images} images of {size}x{size} -> {grid[0]}x{grid[1]} patches, device={device}, "
        f"precision={backbone.resolved_precision()}",
        f"  partbench (batches of {batch_size}, one pass stopping at block {max(backbone.blocks)}): {t_ours:.2f} s = "
        f"{images / t_ours:.2f} images/s -> {split_size / images * t_ours:.0f} s per split of {split_size} images",
        f"  baseline (timm forward_features, dynamic_img_size=True, image by image, hooks): {t_base:.2f} s = "
        f"{images / t_base:.2f} images/s -> {split_size / images * t_base:.0f} s per split",
        f"  speed-up: {t_base / t_ours:.2f}x; max relative difference of the last image's features {worst:.1e} "
        f"(float16 rounding{', reduced precision' if backbone.resolved_precision() != 'fp32' else ''})",
    ])
