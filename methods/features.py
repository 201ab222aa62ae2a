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
