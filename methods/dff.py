"""``dff``: Deep Feature Factorization (Collins et al. 2018), as in its reference code.

Pipeline (transductive: ``fit`` receives the evaluation view itself):

1. Features: VGG19 ``relu5_4`` (512 channels; the reference deletes the final max-pool), ImageNet
   mean/std, images fed at the view's resolution or resized to ``image_size`` first (the DFF demo used
   224; bilinear with anti-aliasing, like its ``skimage.transform.resize``).
   ``-p backbone=`` picks another backbone (:mod:`benchmark.methods.feature_backbones`): ``vgg16`` taps or
   a DINO/DINOv2 ViT facet (``layer`` = a block index, ``facet``, ``stride``) at its native patch grid.
   A ViT facet is signed, so NMF sees it L2-normalised per position and split into its positive and
   negative parts (``2C`` non-negative columns; ``docs/backbones.md``).
2. One matrix for the whole split: ``V`` = every spatial position of every image (background included, as
   in DFF) x 512 channels, float32, on the run's device.
3. NMF ``V ~ W H`` with DFF's initialisation, multiplicative updates, zero handling and stopping rule
   (:func:`benchmark.methods.nmf.nmf`; ``max_iter=200``, ``tol=1e-4``), seeded from the run's seed.
4. Heatmaps: each image's rows of ``W`` as ``(K, h, w)`` maps, bilinearly upsampled
   (``align_corners=False``) to the image size. Part assignment (not in DFF's code; this project's choice): argmax
   over the per-image, per-factor max-normalised heatmaps (``assign="normalised"``, DFF's own
   normalisation), or over the raw factors (``assign="raw"``). The maps are returned as probabilities
   (divided by their sum over factors; uniform where all are 0), which keeps that argmax. The foreground
   restriction is the harness's (from the run's masks): DFF itself does not use masks.

``predict`` returns the jointly factorised ``W`` for images that were in ``fit`` (recognised by id *and*
a digest of their pixels, so a different view or crop of the same file is never mistaken for it); an
unseen image is projected onto the fitted ``H`` (kept fixed) with ``max_iter`` updates from a constant
initialisation, row by row independent of batching.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.core.errors import UserError
from benchmark.core.method import Method
from benchmark.core.plugin import Range
from benchmark.core.registry import register_method
from benchmark.core.seeding import derive_seed
from benchmark.core.types import Batch, PartMaps
from benchmark.methods import feature_backbones as backbones
from benchmark.methods.features import FeatureExtractor, image_digests
from benchmark.methods.nmf import nmf
from benchmark.methods.vit import nonnegative_parts

ASSIGN_RULES = ("normalised", "raw")
VGG_LAYER = "relu5_4"  # DFF's tap (the reference deletes VGG19's last max-pool); ViTs default to their last block


def heatmaps_to_probs(maps: Tensor, size: tuple[int, int], assign: str) -> Tensor:
    """``(N, K, h, w)`` factor maps -> ``(N, K, H, W)`` probabilities whose argmax is the part assignment."""
    maps = F.interpolate(maps.float(), size=size, mode="bilinear", align_corners=False).clamp_min(0)
    if assign == "normalised":
        peak = maps.amax(dim=(2, 3), keepdim=True)
        maps = maps / torch.where(peak > 0, peak, torch.ones_like(peak))
    total = maps.sum(dim=1, keepdim=True)
    uniform = torch.full_like(maps, 1.0 / maps.shape[1])
    return torch.where(total > 0, maps / torch.where(total > 0, total, torch.ones_like(total)), uniform)


@register_method("dff")
class DFF(Method):
    """Deep Feature Factorization: NMF of VGG19 relu5_4 (or DINO/DINOv2 ViT) features over the whole split."""

    transductive = True
    supervision = "none"  # NMF of pretrained features of all positions
    uses_masks = False  # NMF runs on all positions, as in DFF; the harness applies the foreground
    param_ranges = {"stride": Range(1), "image_size": Range(16, 4096), "max_iter": Range(1),
                    "tol": Range(0, low_open=True), "batch_size": Range(1)}

    def __init__(self, num_parts: int = 4, backbone: str = "vgg19", weights: str = "pretrained",
                 layer: str | int | None = None, facet: str | None = None, stride: int | None = None,
                 image_size: int | None = None, max_iter: int = 200, tol: float = 1e-4, assign: str = "normalised",
                 batch_size: int = 16):
        self.num_parts = num_parts
        self.backbone = backbone
        self.weights = weights
        self.layer = layer
        self.facet = facet
        self.stride = stride
        self.image_size = image_size
        self.max_iter = max_iter
        self.tol = tol
        self.assign = assign
        self.batch_size = batch_size

    @classmethod
    def weights_needed(cls, params: dict[str, Any] | None = None):
        from benchmark.methods.feature_backbones import weights_needed

        return weights_needed(params)

    @classmethod
    def random_weights_params(cls) -> dict[str, Any]:
        return {"weights": "random"}

    @classmethod
    def demo_params(cls) -> dict[str, Any]:
        return {"weights": "random", "max_iter": 100, "batch_size": 8}

    def weights_id(self) -> str:
        return backbones.weights_identity(self.backbone, self.weights)

    def _nmf_input(self, f: Tensor) -> Tensor:
        """The backbone map as NMF sees it: VGG's ReLU maps as they are; a ViT's signed facet L2-normalised
        per position and split into its positive and negative parts (``2C`` non-negative channels), rounded
        through float16 like every backbone map, so that the float16 chunks of ``fit`` hold it exactly."""
        return nonnegative_parts(f).half().float() if backbones.is_vit(self.backbone) else f

    def _settings(self) -> tuple[int, int | None, int, float, int]:
        """The numeric parameters as numbers (``-p key=value`` may hand them over as text)."""
        image_size = int(self.image_size) if self.image_size not in (None, "", "none", "None", 0, "0") else None
        return int(self.num_parts), image_size, int(self.max_iter), float(self.tol), int(self.batch_size)

    def fit(self, data, *, seed: int = 0, device: str = "cpu") -> "DFF":
        k, image_size, max_iter, tol, batch_size = self._settings()
        if self.assign not in ASSIGN_RULES:
            raise UserError(f"dff: unknown assign={self.assign!r}; choose one of {', '.join(ASSIGN_RULES)}")
        if k < 1 or max_iter < 0 or batch_size < 1:
            raise UserError("dff needs num_parts >= 1 and max_iter >= 0")
        device = torch.device(device)
        recipe = backbones.resolve(self.backbone, self.layer, self.facet, self.stride, (VGG_LAYER,))
        if len(recipe.layers) != 1:
            raise UserError(f"dff factorises one layer, got layer={self.layer!r}; pass -p layer=NAME (VGG) or "
                            f"-p layer=BLOCK (ViT)")
        backbone = backbones.build(recipe, self.weights).to(device)
        self.layer_ = backbone.layers[0]  # the name of the map it returns (relu5_4, block11.token, ...)
        self.extractor_ = FeatureExtractor(backbone, input_size=image_size, cache_dir=self.context.cache_dir)
        chunks: list[Tensor] = []
        index: dict[tuple[str, str], tuple[int, int, int]] = {}  # (id, digest) -> (first row, h, w)
        rows = 0
        for batch, feats in self.extractor_.stream(data, batch_size=batch_size, device=device,
                                                   progress="dff features" if self.context.progress else False,
                                                   num_workers=self.context.num_workers):
            f = self._nmf_input(feats[self.layer_])
            n, c, h, w = f.shape
            # float16 holds these values exactly (the extractor rounds through it): half the memory until V.
            chunks.append(f.permute(0, 2, 3, 1).reshape(n * h * w, c).half())
            for i, key in enumerate(zip(batch.ids, image_digests(batch.images))):
                index[key] = (rows + i * h * w, h, w)
            rows += n * h * w
        if not chunks:
            raise UserError(f"dff: the dataset view {data.name}/{data.split} has no images")
        V = torch.empty(rows, chunks[0].shape[1], dtype=torch.float32, device=device)
        start = 0
        while chunks:  # fill V chunk by chunk, releasing each half-precision chunk as it is copied
            chunk = chunks.pop(0)
            V[start:start + chunk.shape[0]] = chunk
            start += chunk.shape[0]
        W, H, history = nmf(V, k, max_iter=max_iter, tol=tol,
                            seed=derive_seed(seed, "dff", "init"), device=device)
        del V
        self.W_, self.H_, self.history_ = W, H, history
        self.index_ = index
        self.n_iter_ = history.n_iter
        self.reconstruction_error_ = history.errors[-1][1]
        return self

    def _project(self, images: Tensor, ids) -> Tensor:
        """``(N, K, h, w)`` W of unseen images, with the fitted H fixed (deterministic, per-row independent)."""
        f = self._nmf_input(self.extractor_(images, ids)[self.layer_])
        n, c, h, w = f.shape
        v = f.permute(0, 2, 3, 1).reshape(n * h * w, c)
        k, _, max_iter, _, _ = self._settings()
        # Constant start at the fitted W's typical value: every row's result is then independent of
        # batching and of any RNG (the problem is convex in W for fixed H, so the start matters little).
        start = max(float(self.W_.mean()), 1e-6)
        w0 = torch.full((v.shape[0], k), start, dtype=v.dtype, device=v.device)
        W, _, _ = nmf(v, k, max_iter=max_iter, tol=0.0, H=self.H_, W0=w0)
        return W.reshape(n, h, w, k).permute(0, 3, 1, 2)

    def predict(self, batch: Batch) -> PartMaps:
        if not hasattr(self, "W_"):
            raise RuntimeError("dff: call fit() before predict()")
        keys = list(zip(batch.ids, image_digests(batch.images)))
        if all(key in self.index_ for key in keys):
            maps = []
            for key in keys:
                start, h, w = self.index_[key]
                maps.append(self.W_[start:start + h * w].reshape(h, w, -1).permute(2, 0, 1))
            factors = torch.stack(maps)
        else:
            factors = self._project(batch.images, batch.ids)
        probs = heatmaps_to_probs(factors, batch.size, self.assign)
        return PartMaps(probs.to(batch.device), image_size=batch.size, kind="probs")
