"""Frozen VGG feature backbones with named layer taps (the reference features of ``ours``/``scops`` and
the features of ``dff``/``kmeans``).

::

    from benchmark.methods.backbones import VGGFeatures, available_layers

    vgg = VGGFeatures("vgg19", weights="imagenet", layers=("relu3_2", "relu5_4")).to(device)
    feats = vgg(images)            # images: (N, 3, H, W) RGB in [0, 1]; ImageNet mean/std applied here
    feats["relu5_4"].shape         # (N, 512, H/16, W/16)
    vgg.weights_id                 # "imagenet:vgg19" | "random:seed0" | "file:<sha256-16>"

Layer names (``conv{b}_{i}``, ``relu{b}_{i}``, ``pool{b}``) are derived by walking torchvision's own network
definition (``torchvision.models.vgg19().features``), never from hand-typed indices; ``available_layers(arch)``
lists them. One cascaded pass runs up to the deepest requested layer only, and every requested layer is
returned from that same pass (the reference computes relu3_2 and relu5_4 this way).

Weights:

* ``"imagenet"`` -- torchvision's ``IMAGENET1K_V1`` state dict, read from the local torch hub cache
  (``torch.hub.get_dir()/checkpoints/<file name of the torchvision URL>``; ``TORCH_HOME`` moves it). It is
  downloaded only when ``PARTBENCH_ALLOW_DOWNLOAD=1``; otherwise a missing file raises one
  :class:`~benchmark.core.errors.UserError` with the three ways to provide it. There is no silent fallback.
* ``PATH`` -- a torchvision-format VGG state dict (``features.N.weight`` ... ``classifier.*``), loaded with
  ``torch.load(weights_only=True)``; every ``features.*`` tensor must be present with the right shape, unknown
  keys are an error, missing ``classifier.*`` keys are accepted (they are never used). Identity: the file's
  SHA-256 prefix.
* ``"random"`` -- for tests and the synthetic demo only: a seeded, deterministic He initialisation
  (weights ~ N(0, 2 / fan_in), zero biases; the gain that keeps ReLU activations at a constant scale through
  depth, so relu5_x is not all zero as it often is with torchvision's default init). A
  :class:`RandomWeightsWarning` is emitted and the identity ``random:seed<seed>`` is recorded.

Precision: ``"fp32"`` (exact), ``"tf32"`` (TF32 convolutions on CUDA; the default there) or ``"bf16"``
(autocast on CUDA; opt-in). Outputs are always float32. The resolved precision is part of
:meth:`VGGFeatures.identity`, so caches never mix features computed at different precisions.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from benchmark.core.cache import file_digest
from benchmark.core.errors import UserError
from benchmark.core.requirements import ALLOW_DOWNLOAD_ENV, downloads_allowed  # noqa: F401  (re-exported)
from benchmark.methods import pretrained
from benchmark.methods.frozen import (IMAGENET_MEAN, IMAGENET_STD, PRECISIONS,  # noqa: F401  (re-exported)
                                      FrozenBackbone, RandomWeightsWarning)
from benchmark.methods.pretrained import imagenet_weights_path  # noqa: F401  (re-exported: where the file is read)
from benchmark.methods.weights import check_state_dict as check_keys
from benchmark.methods.weights import read_state_dict

ARCHS = ("vgg16", "vgg19")
# Bump when the input pipeline (normalisation, resizing conventions) changes: invalidates feature caches.
TRANSFORM_VERSION = "imagenet-meanstd-v1"


# -- the network definition ---------------------------------------------------------------------------
def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise UserError(f"unknown backbone architecture {arch!r}; choose one of {', '.join(ARCHS)}")


def _torchvision_vgg(arch: str, device: str | torch.device = "meta") -> nn.Module:
    """torchvision's VGG (no weights); on the meta device it costs no memory and no initialisation time."""
    import torchvision

    _check_arch(arch)
    with torch.device(device):
        return getattr(torchvision.models, arch)(weights=None)


@lru_cache(maxsize=None)
def _layer_table(arch: str) -> tuple[tuple[str, int, int, int], ...]:
    """``(name, index in .features, channels, stride)`` for every module of torchvision's ``features``."""
    features = _torchvision_vgg(arch).features
    table = []
    block, conv, channels, stride = 1, 0, 3, 1
    for index, module in enumerate(features):
        if isinstance(module, nn.Conv2d):
            conv += 1
            channels = module.out_channels
            name = f"conv{block}_{conv}"
        elif isinstance(module, nn.ReLU):
            name = f"relu{block}_{conv}"
        elif isinstance(module, nn.MaxPool2d):
            stride *= 2
            name = f"pool{block}"
            block, conv = block + 1, 0
        else:  # a torchvision change we do not understand: fail loudly rather than mis-name layers
            raise RuntimeError(f"unexpected module {type(module).__name__} in torchvision {arch}.features[{index}]")
        table.append((name, index, channels, stride))
    return tuple(table)


def available_layers(arch: str = "vgg19") -> tuple[str, ...]:
    """Names of all tappable layers of ``arch``, in network order (``conv1_1``, ``relu1_1``, ..., ``pool5``)."""
    return tuple(row[0] for row in _layer_table(arch))


def layer_info(arch: str, layer: str) -> tuple[int, int]:
    """``(channels, stride)`` of a layer: its output has ``channels`` maps at ``1/stride`` of the input size
    (for sizes divisible by ``stride``; VGG's max-pools floor odd sizes)."""
    for name, _, channels, stride in _layer_table(arch):
        if name == layer:
            return channels, stride
    raise UserError(f"{arch} has no layer {layer!r}; available: {', '.join(available_layers(arch))}")


# -- weights --------------------------------------------------------------------------------------------
def _load_imagenet(arch: str) -> tuple[dict[str, Tensor], str]:
    """torchvision's ImageNet state dict of ``arch`` from the place the catalogue names (downloaded only when
    allowed), and the source to name in errors."""
    import torchvision

    need = pretrained.imagenet_weights(arch)
    path = need.found()
    if path is not None:
        return _torch_load(path), f"ImageNet weights file {path}"
    missing = f"{need.what} are not available offline: {need.paths[0]} does not exist. Either {need.fix}."
    if downloads_allowed():
        url = torchvision.models.get_model_weights(arch).IMAGENET1K_V1.url
        try:
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
        except Exception as exc:  # network errors come in many types; the fix is the same
            raise UserError(f"downloading {url} failed ({exc}). {missing}") from None
        return state, f"downloaded {url}"
    raise UserError(missing)


_VGG_FIX = "pass a torchvision-format VGG state dict saved with torch.save(model.state_dict(), PATH)"


def _torch_load(path: Path) -> dict[str, Tensor]:
    return read_state_dict(path, what="weights file", fix=_VGG_FIX, unwrap=())


def _random_init(features: nn.Sequential, seed: int) -> None:
    """Seeded He (fan_in, ReLU gain) normal weights and zero biases, layer by layer in network order."""
    generator = torch.Generator().manual_seed(int(seed))
    for module in features:
        if isinstance(module, nn.Conv2d):
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            weight = torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
            module.weight.data.copy_(weight)
            module.bias.data.zero_()


def weights_identity(arch: str, weights: str, seed: int = 0) -> str:
    """The ``weights_id`` a :class:`VGGFeatures` built with these arguments will have, without building it
    (for result rows written before or without a fit). Raises :class:`UserError` for a missing file."""
    _check_arch(arch)
    if weights == "random":
        return f"random:seed{int(seed)}"
    if weights == "imagenet":
        return f"imagenet:{arch}"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"weights {weights!r} is neither 'imagenet', 'random' nor an existing file; "
                        f"pass -p weights=PATH to a torchvision-format {arch} state dict")
    return f"file:{file_digest(path)}"


# -- the module -----------------------------------------------------------------------------------------
class VGGFeatures(FrozenBackbone):
    """A frozen torchvision VGG returning named layer outputs from one cascaded pass (see module docstring).

    ``forward(images)`` takes ``(N, 3, H, W)`` float RGB in ``[0, 1]`` on the module's device, applies the
    ImageNet mean/std itself, and returns ``{layer: (N, C, h, w) float32}`` for the requested layers.
    """

    def __init__(self, arch: str = "vgg19", weights: str = "imagenet",
                 layers: Sequence[str] = ("relu3_2", "relu5_4"), seed: int = 0, precision: str = "auto"):
        super().__init__(precision)
        _check_arch(arch)
        if isinstance(layers, str):
            layers = (layers,)
        layers = tuple(layers)
        if not layers:
            raise UserError("VGGFeatures needs at least one layer name")
        known = available_layers(arch)
        unknown = [name for name in layers if name not in known]
        if unknown:
            raise UserError(f"{arch} has no layer(s) {', '.join(map(repr, unknown))}; available: {', '.join(known)}")
        if len(set(layers)) != len(layers):
            raise UserError(f"duplicate layer names in {layers}")
        self.arch = arch
        self.layers = layers
        self.seed = int(seed)

        index_of = {row[0]: row[1] for row in _layer_table(arch)}
        self._taps = {index_of[name]: name for name in layers}
        cut = max(self._taps) + 1

        # Build torchvision's definition and keep the prefix we need (indices, hence state-dict keys, unchanged).
        # Built on the meta device and materialised empty: every parameter is then set by the load or init.
        features = nn.Sequential(*list(_torchvision_vgg(arch).features)[:cut]).to_empty(device="cpu")
        for index, module in enumerate(features):
            # An in-place ReLU would overwrite a tapped conv output before we return it.
            if isinstance(module, nn.ReLU) and (index - 1) in self._taps:
                module.inplace = False

        self.weights_id = weights_identity(arch, weights, self.seed)
        if weights == "random":
            _random_init(features, self.seed)
            warnings.warn(f"{arch} backbone uses RANDOM weights (seed {self.seed}): features are not ImageNet "
                          f"features; use this only for tests and the synthetic demo", RandomWeightsWarning,
                          stacklevel=2)
        else:
            if weights == "imagenet":
                state, source = _load_imagenet(arch)
            else:
                path = Path(weights).expanduser()
                state = _torch_load(path)
                source = f"weights file {path}"
            check_keys(_torchvision_vgg(arch).state_dict(), state, source=source, target=f"torchvision {arch}",
                       optional=lambda key: key.startswith("classifier."),  # the head is never used
                       fix=f"pass the state_dict() of torchvision.models.{arch} (keys features.N.weight/bias, "
                           f"classifier.*)")
            features.load_state_dict({k[len("features."):]: v for k, v in state.items()
                                      if k.startswith("features.") and int(k.split(".")[1]) < cut})
        self.weights = weights
        self.features = features
        self.freeze()

    def channels(self, layer: str) -> int:
        return layer_info(self.arch, layer)[0]

    def stride(self, layer: str) -> int:
        return layer_info(self.arch, layer)[1]

    def identity(self) -> dict:
        """Everything about the backbone that determines its outputs (a cache-key component)."""
        return {"backbone": self.arch, "weights": self.weights_id, "layers": list(self.layers),
                "precision": self.resolved_precision(), "transform": TRANSFORM_VERSION}

    @torch.no_grad()
    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"VGGFeatures expects (N, 3, H, W) RGB images, got shape {tuple(images.shape)}")
        x = self.normalise(images)
        out: dict[str, Tensor] = {}
        with self.precision_context():
            for index, module in enumerate(self.features):
                x = module(x)
                if index in self._taps:
                    out[self._taps[index]] = x
        return {name: out[name].float() for name in self.layers}

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, weights={self.weights_id!r}, layers={self.layers}"

