"""Streaming backbone features of dataset images, with an optional content-addressed cache.

::

    extractor = FeatureExtractor(VGGFeatures("vgg19", layers=("relu5_2", "relu5_4")).to(device),
                                 cache_dir=method.context.cache_dir)
    for batch, feats in extractor.stream(data, batch_size=16, device=device):
        ...                                    # feats["relu5_4"]: (N, 512, h, w) float32 on device
    feats = extractor(batch.images, batch.ids) # the same for one batch (used by predict)

Features are computed batch by batch and never gathered here (methods decide what they keep).

Cache (``cache_dir`` given; ``None`` = off): one entry per image and layer, a float16 ``.npy`` array
``(C, h, w)`` with a JSON sidecar (:class:`benchmark.core.cache.ArrayCache`, written atomically). The key
holds everything that determines the features: backbone architecture, weights identity (name or file hash),
layer, precision, transform version, the backbone input size, and the image itself -- its id, its size and
a SHA-256 digest of its pixels. Keying by the pixels rather than by (dataset, split, view) makes the cache
correct for any view or crop of any dataset (two views that crop the same file differently never share an
entry, two runs that see the same image always do), and lets ``predict`` use it without knowing which
dataset view a batch came from. K, seeds and methods (``kmeans`` and ``dff`` both read ``relu5_4``) reuse
one extraction.

Features always pass through float16 (the cache's storage type), cached or not, so that a run gives the
same part maps with a cold cache, a warm cache or no cache at all. An activation beyond float16's range
raises an error instead of being stored as ``inf``.
"""

from __future__ import annotations

import hashlib
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.core.cache import ArrayCache
from benchmark.core.errors import UserError
from benchmark.core.registry import register_bench
from benchmark.core.types import Batch
from benchmark.methods.backbones import VGGFeatures

FP16_MAX = float(torch.finfo(torch.float16).max)


def image_digest(image: Tensor) -> str:
    """SHA-256 (16 hex digits) of one image's float32 pixels."""
    array = image.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.sha256(array.tobytes()).hexdigest()[:16]


def image_digests(images: Tensor) -> list[str]:
    """:func:`image_digest` of every image of a batch, with one device-to-host copy."""
    host = images.detach().to("cpu", torch.float32)
    return [image_digest(image) for image in host]


def to_fp16_range(features: Tensor, layer: str) -> Tensor:
    """Round through float16 (see the module docstring); fail on values float16 cannot hold."""
    peak = float(features.abs().amax()) if features.numel() else 0.0
    if not np.isfinite(peak) or peak > FP16_MAX:
        raise RuntimeError(f"backbone layer {layer} produced {peak:g}, beyond float16's range; features cannot be "
                           f"cached or compared reproducibly (are the weights/inputs scaled correctly?)")
    return features.half().float()


class FeatureExtractor:
    """Backbone features for batches of images, cached per image and layer when ``cache_dir`` is set.

    ``input_size`` (``(H, W)`` or an int for a square) resizes images before the backbone (bilinear with
    anti-aliasing, as ``skimage.transform.resize`` does in the DFF demo); ``None`` feeds them as they come.
    ``memory_budget_mb`` keeps the features of the first images seen, up to that many MB (float16, on the
    backbone's device, keyed like the disk cache), so that a second pass over a small split -- K-means'
    assignment pass -- needs no second backbone pass; larger splits simply recompute the rest.
    """

    def __init__(self, backbone: VGGFeatures, *, input_size: int | Sequence[int] | None = None,
                 cache_dir=None, memory_budget_mb: float = 0):
        self.backbone = backbone
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.input_size = tuple(int(s) for s in input_size) if input_size else None
        self.cache = ArrayCache(cache_dir)
        self.memory_budget = int(memory_budget_mb * (1 << 20))
        self._memory: dict[tuple[str, str], dict[str, Tensor]] = {}
        self._memory_bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def layers(self) -> tuple[str, ...]:
        return self.backbone.layers

    def identity(self) -> dict:
        return {**self.backbone.identity(), "input_size": list(self.input_size) if self.input_size else None}

    def _description(self, layer: str, image_id: str, digest: str, size: tuple[int, int]) -> dict:
        ident = self.identity()
        ident.pop("layers")
        return {"kind": "backbone-features", **ident, "layer": layer,
                "image": {"id": image_id, "digest": digest, "size": list(size)}}

    def _compute(self, images: Tensor) -> dict[str, Tensor]:
        if self.input_size is not None and tuple(images.shape[-2:]) != self.input_size:
            images = F.interpolate(images.float(), size=self.input_size, mode="bilinear", align_corners=False,
                                   antialias=True)
        feats = self.backbone(images)
        return {name: to_fp16_range(value, name) for name, value in feats.items()}

    def __call__(self, images: Tensor, ids: Sequence[str] | None = None) -> dict[str, Tensor]:
        """``{layer: (N, C, h, w) float32}`` on the backbone's device for ``images`` ``(N, 3, H, W)``."""
        device = self.backbone.device
        if not self.cache.enabled and self.memory_budget <= 0:
            return self._compute(images.to(device, non_blocking=True))
        n = int(images.shape[0])
        ids = list(ids) if ids is not None else [""] * n
        size = (int(images.shape[-2]), int(images.shape[-1]))
        digests = image_digests(images)
        keys = list(zip(ids, digests))
        found: list[dict[str, Tensor] | None] = [self._memory.get(key) for key in keys]
        fresh = [i for i in range(n) if found[i] is None]
        if self.cache.enabled:
            for i in fresh:
                arrays = {layer: self.cache.load(self._description(layer, ids[i], digests[i], size))
                          for layer in self.layers}
                if all(a is not None for a in arrays.values()):
                    found[i] = {layer: torch.from_numpy(a).to(device) for layer, a in arrays.items()}
                    self.hits += 1
        missing = [i for i in range(n) if found[i] is None]
        if missing:
            computed = self._compute(images[missing].to(device, non_blocking=True))
            host = {layer: value.half().cpu().numpy() for layer, value in computed.items()} if self.cache.enabled else {}
            for row, i in enumerate(missing):
                found[i] = {layer: computed[layer][row].half() for layer in self.layers}
                for layer in host:
                    self.cache.store(self._description(layer, ids[i], digests[i], size), host[layer][row])
            self.misses += len(missing)
        for i in fresh:  # keep what fits in the memory budget (first come, first kept: deterministic)
            entry_bytes = sum(t.numel() * t.element_size() for t in found[i].values())
            if self._memory_bytes + entry_bytes <= self.memory_budget:
                self._memory[keys[i]] = found[i]
                self._memory_bytes += entry_bytes
        return {layer: torch.stack([found[i][layer] for i in range(n)]).float() for layer in self.layers}

    def stream(self, data, *, batch_size: int = 16, device: str | torch.device = "cpu", progress: bool | str = False,
               num_workers: int = 0) -> Iterator[tuple[Batch, dict[str, Tensor]]]:
        """``(batch, features)`` for every batch of the dataset view ``data``, in its deterministic order."""
        for batch in data.batches(batch_size, device=device, progress=progress, num_workers=num_workers):
            yield batch, self(batch.images, batch.ids)


# -- speed benchmark -----------------------------------------------------------------------------------
def _bench_images(n: int, size: int, seed: int) -> Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@register_bench("features")
def bench_features(images: int = 8, size: int = 256, batch_size: int = 8, arch: str = "vgg19",
                   layers: str | None = None, facet: str | None = None, stride: int | None = None,
                   device: str = "cpu", precision: str = "auto", split_size: int = 5794, seed: int = 0) -> str:
    """Backbone throughput: batched single-pass extraction vs torchvision's whole stack image by image.

    The baseline is the straightforward way: torchvision's whole ``features`` stack run image by image
    with forward hooks on the taps, same weights. ``layers`` defaults to relu5_2,relu5_4. A ViT ``arch``
    (``dinov2_vits14`` ...; ``layers`` = blocks, ``facet``) is compared with a plain per-image timm forward
    instead (:func:`benchmark.methods.vit.bench_vit_features`)."""
    from benchmark.methods.vit import VIT_BACKBONES, bench_vit_features

    if arch in VIT_BACKBONES:
        return bench_vit_features(images=images, size=size, batch_size=batch_size, arch=arch, layers=layers,
                                  facet=facet, stride=stride, device=device, precision=precision,
                                  split_size=split_size, seed=seed)
    if facet is not None or stride is not None:
        raise UserError(f"-p facet/-p stride apply to ViT backbones only, not {arch}")
    layers = layers or "relu5_2,relu5_4"
    import time
    import warnings

    import torchvision

    from benchmark.methods.backbones import RandomWeightsWarning, available_layers

    images, size, batch_size, split_size = int(images), int(size), int(batch_size), int(split_size)
    names = tuple(name.strip() for name in str(layers).split(",") if name.strip())
    device = torch.device(device)
    with warnings.catch_warnings():  # speed does not depend on the weights' values
        warnings.simplefilter("ignore", RandomWeightsWarning)
        backbone = VGGFeatures(arch, "random", layers=names, precision=precision).to(device)
    extractor = FeatureExtractor(backbone)
    data = _bench_images(images, size, int(seed))

    baseline = getattr(torchvision.models, arch)(weights=None).features.eval().to(device)
    baseline.load_state_dict(backbone.features.state_dict(), strict=False)  # same weights on the shared prefix
    index = {name: i for i, name in enumerate(available_layers(arch))}
    captured: dict[str, Tensor] = {}
    for name in names:
        baseline[index[name]].register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out.clone()))
    mean = backbone.mean
    std = backbone.std

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    extractor(data[:1].to(device))  # warm-up (allocator, cuDNN autotuning)
    sync()
    start = time.perf_counter()
    for i in range(0, images, batch_size):
        ours = extractor(data[i:i + batch_size].to(device))
    sync()
    t_ours = time.perf_counter() - start

    start = time.perf_counter()
    with torch.no_grad():
        for i in range(images):
            baseline((data[i:i + 1].to(device) - mean) / std)
            _ = {name: captured[name].float().cpu() for name in names}
    sync()
    t_base = time.perf_counter() - start
    last = {name: value[-1:] for name, value in ours.items()}
    worst = max(float((last[name].cpu() - captured[name].float().cpu()).abs().max()
                      / captured[name].abs().max().clamp_min(1e-12)) for name in names)
    return "\n".join([
        f"features bench: {arch} taps {','.join(names)}, {images} images of {size}x{size}, device={device}, "
        f"precision={backbone.resolved_precision()}",
        f"  partbench (batches of {batch_size}, one pass stopping at {names[-1] if len(names) == 1 else 'the deepest tap'}): "
        f"{t_ours:.2f} s = {images / t_ours:.2f} images/s -> {split_size / images * t_ours:.0f} s per split of "
        f"{split_size} images",
        f"  baseline (whole torchvision features, image by image, hooks): {t_base:.2f} s = {images / t_base:.2f} "
        f"images/s -> {split_size / images * t_base:.0f} s per split",
        f"  speed-up: {t_base / t_ours:.2f}x; max relative difference of the last image's features {worst:.1e} "
        f"(float16 rounding{', reduced precision' if backbone.resolved_precision() != 'fp32' else ''})",
    ])
