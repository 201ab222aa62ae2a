"""``dino-coseg``: training-free part co-segmentation on DINO ViT features (Amir, Gandelsman, Bagon, Dekel,
*Deep ViT Features as Dense Visual Descriptors*, ECCV Workshops 2022; the release's ``part_cosegmentation.py``).

Transductive, like ``kmeans`` and ``dff``: ``fit`` receives the evaluation view and co-segments the whole
split at once, with the release's defaults (two clustering stages, no crop augmentations, no log-binning):

1. Descriptors: the keys of block 11 (``layer``) of DINO ViT-S/8, run with a patch-embedding stride of 4
   (``stride``; overlapping 8x8 patches) on the image resized so that its shorter side is 224 px
   (``load_size``). An ``H`` x ``W`` image gives ``(1 + (H - 8) // 4) x (1 + (W - 8) // 4)`` descriptors of 384
   dimensions (the six heads' keys side by side), L2-normalised before every clustering and distance.
2. Saliency: the class token's attention at the last block, averaged over heads 0, 2, 4 and 5 and
   min-max normalised per image. With ``low_res_saliency`` (the default) it is computed on the image resized to
   half the load size (the image's own size when ``load_size`` is ``None``), at the patch size's stride, and resized to the descriptor grid with PIL's nearest rule;
   otherwise on the descriptor pass itself.
3. Stage 1, foreground/background: faiss K-means (``niter=300``, ``nredo=10``) of every 100th descriptor of
   each image (``sample_interval``), for k = 1, 2, ... up to ``max_clusters`` (14); after each k the mean squared
   distance of *all* descriptors of the split to their nearest centroid is computed, and the search stops at the
   first k whose mean is above ``elbow`` (0.975) times the previous one, keeping that k. A cluster is salient in
   an image when the mean saliency of the image's descriptors in it exceeds ``thresh`` (0.065); clusters salient
   in at least ``ceil(votes_percentage / 100 * images)`` (75 %) of the images are foreground.
4. Stage 2, parts: faiss K-means with K = ``num_parts`` of every 100th foreground descriptor of each image.
5. Labels: every descriptor goes to the nearest of the K part centroids or to the background, whose distance
   is the smallest distance to a non-salient stage-1 centroid.

Part maps: ``K + 1`` channels, channel 0 the background (the suite's convention; the release puts it last), as
fuzzy-c-means memberships of the squared distances (``u ~ d^(-2/(m-1))``, ``m = fuzziness``), whose argmax is
the nearest centroid of step 5. They are upsampled from the descriptor grid to the load size with PyTorch's
legacy nearest rule, as the release does, and then to the evaluated image size (nearest).

Deviations from the release (``docs/dino-coseg.md`` lists them with their reasons): no dense-CRF refinement of
the labels (step 5 gives the release's labels before its CRF); images resized with anti-aliased bilinear
instead of Lanczos; position embeddings resampled with timm's dynamic-size rule (the suite's ViT backbone)
instead of DINO's ``+0.1`` scale-factor rule; descriptors and saliency pass through float16 (the suite's
feature cache); faiss seeds derived from the run's seed instead of faiss's fixed 1234; the elbow's k-means for
every k are trained before one pass computes all the objectives (same choice, one pass over the split instead
of one per k).

Memory: no descriptor matrix of the split is ever built (27 GB for CUB's test split). Each pass streams the
features through :class:`~benchmark.methods.features.FeatureExtractor` (memory budget, then the disk cache,
then the backbone); ``fit`` keeps only the clustering samples.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.core.errors import UserError
from benchmark.core.method import Method
from benchmark.core.plugin import Range
from benchmark.core.registry import register_method
from benchmark.core.seeding import derive_seed
from benchmark.core.types import Batch, PartMaps
from benchmark.methods import feature_backbones
from benchmark.methods import vit
from benchmark.methods.features import FeatureExtractor
from benchmark.methods.kmeans import FEATURE_MEMORY_MB, faiss_missing_reason, fuzzy_memberships

BACKBONE = "dino_vits8"  # the release computes saliency for DINO ViT-S/8 only (its head choice is for 6 heads)
SALIENCY_BLOCK = -1  # the class token's attention of the last block
SALIENCY_HEADS = (0, 2, 4, 5)
DESCRIPTORS, SALIENCY = "descriptors", "saliency"
# Bump when the descriptor or saliency computation changes (part of the feature cache key).
COSEG_TRANSFORM_VERSION = "coseg-v1"


# -- features -----------------------------------------------------------------------------------------------
def load_shape(height: int, width: int, load_size: int | None) -> tuple[int, int]:
    """The size an ``height`` x ``width`` image is resized to: shorter side ``load_size``, the longer side
    scaled and truncated (torchvision's ``Resize(int)``); ``None`` keeps the size."""
    if load_size is None:
        return height, width
    if height <= width:
        return load_size, int(load_size * width / height)
    return int(load_size * height / width), load_size


def grid_shape(height: int, width: int, patch: int, stride: int) -> tuple[int, int]:
    """Tokens of a strided patch embedding: the patches that fit entirely, ``1 + (H - patch) // stride``."""
    return 1 + (height - patch) // stride, 1 + (width - patch) // stride


@functools.lru_cache(maxsize=64)
def pil_nearest_index(in_length: int, out_length: int) -> tuple[int, ...]:
    """The source index of every output position when PIL resizes ``in_length`` -> ``out_length`` with
    ``NEAREST`` (what the release applies to the low-resolution saliency map). PIL's rule is not
    ``floor((i + 1/2) * in / out)`` exactly: it accumulates the step in floating point, so a centre landing on
    an integer can fall either side. PIL itself resizes a row of indices once; the resize is separable (one
    affine axis at a time), so two such tables reproduce a 2-D resize."""
    from PIL import Image

    row = Image.fromarray(np.arange(in_length, dtype=np.float32)[None, :], mode="F")
    return tuple(int(v) for v in np.asarray(row.resize((out_length, 1), Image.NEAREST))[0])


def pil_nearest_resize(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """``(N, C, h, w)`` -> ``(N, C, *size)`` exactly as PIL's ``NEAREST`` resize of each map."""
    rows = torch.tensor(pil_nearest_index(int(maps.shape[-2]), int(size[0])), device=maps.device)
    cols = torch.tensor(pil_nearest_index(int(maps.shape[-1]), int(size[1])), device=maps.device)
    return maps.index_select(-2, rows).index_select(-1, cols)


class CosegFeatures(nn.Module):
    """Key descriptors at a dense stride and CLS-attention saliency on the same grid, from one frozen DINO ViT.

    ``forward(images)`` (``(N, 3, H, W)`` RGB in ``[0, 1]``) returns ``{"descriptors": (N, C, h, w),
    "saliency": (N, 1, h, w)}``; the interface of the suite's backbones (``layers``, ``device``,
    ``identity()``), so that :class:`FeatureExtractor` streams and caches it.
    """

    layers = (DESCRIPTORS, SALIENCY)

    def __init__(self, weights: str = "pretrained", layer: int = 11, facet: str = "key", stride: int = 4,
                 load_size: int | None = 224, low_res_saliency: bool = True, seed: int = 0):
        super().__init__()
        self.vit = vit.ViTFeatures(BACKBONE, weights, blocks=(layer,), facet=facet, stride=stride, seed=seed)
        self.block = self.vit.blocks[0]
        self.stride = self.vit.stride
        self.patch = self.vit.patch
        self.load_size = load_size
        self.low_res_saliency = bool(low_res_saliency)
        self.weights_id = self.vit.weights_id

    @property
    def device(self) -> torch.device:
        return self.vit.device

    def identity(self) -> dict:
        return {"backbone": BACKBONE, "weights": self.weights_id, "layers": list(self.layers),
                "block": self.block, "facet": self.vit.facet, "stride": self.stride, "load_size": self.load_size,
                "low_res_saliency": self.low_res_saliency, "saliency_heads": list(SALIENCY_HEADS),
                "precision": self.vit.resolved_precision(),
                "transform": f"{vit.TRANSFORM_VERSION}+{COSEG_TRANSFORM_VERSION}"}

    def _resize(self, images: Tensor, size: tuple[int, int]) -> Tensor:
        if tuple(images.shape[-2:]) == tuple(size):
            return images
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)

    def _tokens(self, images: Tensor, stride: int) -> tuple[Tensor, tuple[int, int]]:
        """Normalised images -> tokens with the patch embedding run at ``stride`` (position embeddings resampled
        to the resulting grid), and that grid."""
        model = self.vit.model
        proj = model.patch_embed.proj
        x = (images - self.vit.mean) / self.vit.std
        f = F.conv2d(x, proj.weight, proj.bias, stride=stride)
        grid = (int(f.shape[-2]), int(f.shape[-1]))
        tokens = model.patch_embed.norm(f.flatten(2).transpose(1, 2))
        pos = vit.interpolate_pos_embed(model.pos_embed, self.vit.num_prefix, self.vit.native_grid, grid)
        tokens = torch.cat([model.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + pos
        return model.norm_pre(tokens), grid

    def _facet(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        """The descriptor block's facet of patch tokens as an ``(N, C, h, w)`` map."""
        n = tokens.shape[0]
        out = self.vit._qkv(self.vit.model.blocks[self.block], tokens)[:, self.vit.num_prefix:]
        return out.float().reshape(n, grid[0], grid[1], -1).permute(0, 3, 1, 2).contiguous()

    def _cls_saliency(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        """``(N, 1, h, w)``: the last block's CLS attention over the patches, mean of ``SALIENCY_HEADS``,
        min-max normalised per image (0 where the map is constant: the release divides by zero there, and a
        NaN mean never votes, nor does 0)."""
        block = self.vit.model.blocks[SALIENCY_BLOCK]
        attn = block.attn
        n, t, _ = tokens.shape
        qkv = attn.qkv(block.norm1(tokens)).reshape(n, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
        heads = list(SALIENCY_HEADS)
        logits = (q[:, heads, :1] * attn.scale) @ k[:, heads].transpose(-2, -1)  # (N, heads, 1, T)
        cls = logits.float().softmax(dim=-1)[:, :, 0, self.vit.num_prefix:].mean(dim=1)  # (N, h*w)
        low, high = cls.amin(dim=1, keepdim=True), cls.amax(dim=1, keepdim=True)
        span = high - low
        sal = torch.where(span > 0, (cls - low) / span.clamp_min(torch.finfo(cls.dtype).tiny), torch.zeros_like(cls))
        return sal.reshape(n, 1, grid[0], grid[1])

    def _run(self, images: Tensor, stride: int, with_facet: bool, with_saliency: bool):
        tokens, grid = self._tokens(images, stride)
        last = len(self.vit.model.blocks) - 1
        stop = last if with_saliency else self.block
        facet = saliency = None
        for index, block in enumerate(self.vit.model.blocks[:stop + 1]):
            if with_facet and index == self.block:
                facet = self._facet(tokens, grid)
            if index == last and with_saliency:
                saliency = self._cls_saliency(tokens, grid)
                break
            if index < stop:
                tokens = block(tokens)
        return facet, saliency, grid

    @torch.no_grad()
    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"CosegFeatures expects (N, 3, H, W) RGB images, got shape {tuple(images.shape)}")
        x = images.to(self.device, torch.float32)
        size = load_shape(int(x.shape[-2]), int(x.shape[-1]), self.load_size)
        # The release's low-resolution saliency pass runs at half the load size, or at the image's own size
        # when no load size is set; always with the plain patch stride.
        saliency_size = size if self.load_size is None else (size[0] // 2, size[1] // 2)
        if min(size) < self.patch or (self.low_res_saliency and min(saliency_size) < self.patch):
            raise UserError(f"dino-coseg: images of {size[0]}x{size[1]} px are too small for {self.patch} px patches"
                            f"{' at half size (the saliency pass)' if self.low_res_saliency else ''}; raise "
                            f"-p load_size")
        x = self._resize(x, size)
        with self.vit.precision_context():
            if not self.low_res_saliency:
                descriptors, saliency, _ = self._run(x, self.stride, True, True)
            else:
                descriptors, _, grid = self._run(x, self.stride, True, False)
                low_res = self._resize(images.to(self.device, torch.float32), saliency_size)
                _, low, _ = self._run(low_res, self.patch, False, True)
                saliency = pil_nearest_resize(low, grid)
        return {DESCRIPTORS: descriptors, SALIENCY: saliency.float()}


# -- the clustering steps (pure functions on tensors; see the module docstring) ---------------------------------
def elbow_stop(objectives: Sequence[float], elbow: float) -> int | None:
    """Index of the k where the search stops and which it keeps: the first (after the first) whose objective
    exceeds ``elbow`` times the previous one; ``None`` if no k of ``objectives`` stops it (the release then keeps
    its last k, 14)."""
    for i in range(1, len(objectives)):
        if objectives[i] > elbow * objectives[i - 1]:
            return i
    return None


def every_nth(mask: Tensor, interval: int) -> Tensor:
    """``(N, T)`` bool: of each row's True entries (in order), the 1st, the ``interval + 1``-th, ... --
    ``row[mask][::interval]`` for every row at once."""
    rank = torch.cumsum(mask.long(), dim=1) - 1
    return mask & (rank % interval == 0)


def cluster_votes(labels: Tensor, saliency: Tensor, k: int, thresh: float) -> Tensor:
    """``(k,)`` int64: in how many images (rows of ``labels``/``saliency``, ``(N, T)``) the mean saliency of a
    cluster's descriptors exceeds ``thresh`` (a cluster absent from an image gets no vote from it)."""
    n = labels.shape[0]
    sums = torch.zeros(n, k, dtype=torch.float64, device=labels.device).scatter_add_(1, labels, saliency.double())
    counts = torch.zeros(n, k, dtype=torch.float64, device=labels.device).scatter_add_(
        1, labels, torch.ones_like(saliency, dtype=torch.float64))
    salient = (counts > 0) & (sums > thresh * counts)
    return salient.sum(dim=0)


def salient_clusters(votes: Tensor, num_images: int, votes_percentage: float) -> Tensor:
    """Clusters with at least ``ceil(num_images * votes_percentage / 100)`` votes (bool mask)."""
    return votes >= math.ceil(num_images * votes_percentage / 100)


def squared_distances(x: Tensor, centroids: Tensor) -> Tensor:
    """``(..., K)`` squared Euclidean distances of rows ``x (..., C)`` to ``centroids (K, C)`` (clamped at 0)."""
    d2 = x.pow(2).sum(-1, keepdim=True) - 2 * x @ centroids.T + centroids.pow(2).sum(-1)
    return d2.clamp_min(0)


def coseg_distances(x: Tensor, parts: Tensor, background: Tensor) -> Tensor:
    """``(..., 1 + K)``: the smallest squared distance to a ``background`` centroid, then those to the K
    ``parts`` centroids (the release's energies, background moved first)."""
    bg = squared_distances(x, background).amin(dim=-1, keepdim=True)
    return torch.cat([bg, squared_distances(x, parts)], dim=-1)


def faiss_kmeans(points: np.ndarray, k: int, *, niter: int, nredo: int, seed: int, gpu: bool):
    """A trained ``faiss.Kmeans`` (the release's call, with a seed; faiss's default 256 points per centroid)."""
    import faiss

    model = faiss.Kmeans(points.shape[1], k, niter=niter, nredo=nredo, seed=seed % (2**31 - 1), verbose=False,
                         gpu=bool(gpu))
    model.train(np.ascontiguousarray(points, dtype=np.float32))
    return model


def _rows(descriptors: Tensor) -> Tensor:
    """``(N, C, h, w)`` -> ``(N, h*w, C)`` L2-normalised rows in the release's order (row-major patches)."""
    return F.normalize(descriptors.flatten(2).transpose(1, 2).float(), dim=-1)


@register_method("dino-coseg")
class DinoCoseg(Method):
    """Part co-segmentation of DINO ViT-S/8 keys: fg/bg clustering with saliency votes, then K-part clustering."""

    transductive = True
    provides_background = True
    supervision = "none"
    param_ranges = {"stride": Range(1), "load_size": Range(16, 4096), "thresh": Range(0, 1),
                    "votes_percentage": Range(0, 100), "sample_interval": Range(1), "elbow": Range(0, 1),
                    "max_clusters": Range(1), "niter": Range(1), "nredo": Range(1),
                    "fuzziness": Range(1, low_open=True), "batch_size": Range(1)}

    def __init__(self, num_parts: int = 4, weights: str = "pretrained", layer: int = 11, facet: str = "key",
                 stride: int = 4, load_size: int | None = 224, thresh: float = 0.065, votes_percentage: float = 75,
                 sample_interval: int = 100, elbow: float = 0.975, max_clusters: int = 14,
                 low_res_saliency: bool = True, niter: int = 300, nredo: int = 10, fuzziness: float = 2.0,
                 batch_size: int = 8):
        self.num_parts = num_parts
        self.weights = weights
        self.layer = layer
        self.facet = facet
        self.stride = stride
        self.load_size = load_size
        self.thresh = thresh
        self.votes_percentage = votes_percentage
        self.sample_interval = sample_interval
        self.elbow = elbow
        self.max_clusters = max_clusters
        self.low_res_saliency = low_res_saliency
        self.niter = niter
        self.nredo = nredo
        self.fuzziness = fuzziness
        self.batch_size = batch_size

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return faiss_missing_reason()

    @classmethod
    def weights_needed(cls, params: dict[str, Any] | None = None):
        params = params or {}
        return feature_backbones.weights_needed({"backbone": BACKBONE, "weights": params.get("weights", "pretrained")})

    @classmethod
    def random_weights_params(cls) -> dict[str, Any]:
        return {"weights": "random"}

    @classmethod
    def demo_params(cls) -> dict[str, Any]:
        # Random ViT weights (no DINO weights in the demo) make the CLS attention noise, so the saliency votes
        # are coin flips: fewer stage-1 clusters and a 50 % quorum leave salient and non-salient clusters on the
        # demo and test splits. Stride 8 at 64 px keeps the ViT pass to seconds on a CPU.
        return {"weights": "random", "load_size": 64, "stride": 8, "max_clusters": 6, "votes_percentage": 50,
                "sample_interval": 10, "niter": 20, "nredo": 2, "batch_size": 16}

    def weights_id(self) -> str:
        return feature_backbones.weights_identity(BACKBONE, str(self.weights))

    # -- settings ----------------------------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        """The parameters as typed values (``-p key=value`` hands them over as text), validated."""
        def flag(value) -> bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise UserError(f"dino-coseg low_res_saliency must be true or false, got {value!r}")
                return value.lower() in ("true", "1", "yes")
            return bool(value)

        try:
            load = None if self.load_size in (None, "", "none", "None") else int(self.load_size)
            s = {"k": int(self.num_parts), "layer": vit.resolve_blocks(BACKBONE, self.layer)[0],
                 "facet": vit.resolve_facet(BACKBONE, self.facet), "stride": vit.resolve_stride(BACKBONE, self.stride),
                 "load_size": load, "thresh": float(self.thresh), "votes_percentage": float(self.votes_percentage),
                 "interval": int(self.sample_interval), "elbow": float(self.elbow),
                 "max_clusters": int(self.max_clusters), "low_res_saliency": flag(self.low_res_saliency),
                 "niter": int(self.niter), "nredo": int(self.nredo), "fuzziness": float(self.fuzziness),
                 "batch_size": int(self.batch_size)}
        except (TypeError, ValueError) as exc:
            raise UserError(f"dino-coseg: a parameter is not a number ({exc}); see `benchmark list` for the "
                            f"defaults") from None
        patch = vit.vit_spec(BACKBONE).patch
        if patch % s["stride"]:
            raise UserError(f"dino-coseg stride must divide the patch size {patch} (1, 2, 4 or 8), got {self.stride}")
        if s["facet"] == "token":
            raise UserError("dino-coseg reads the key, query or value facet (-p facet=key), not tokens")
        if min(s["k"], s["interval"], s["max_clusters"], s["niter"], s["nredo"], s["batch_size"]) < 1:
            raise UserError("dino-coseg needs num_parts, sample_interval, max_clusters, niter, nredo and batch_size "
                            ">= 1")
        if s["load_size"] is not None and s["load_size"] < 1:
            raise UserError(f"dino-coseg load_size must be a positive number of pixels, got {self.load_size}")
        if not 0 < s["votes_percentage"] <= 100:
            raise UserError(f"dino-coseg votes_percentage must be in (0, 100], got {self.votes_percentage}")
        if not 0 < s["elbow"] <= 1:
            raise UserError(f"dino-coseg elbow must be in (0, 1], got {self.elbow}")
        if s["fuzziness"] <= 1:
            raise UserError(f"dino-coseg fuzziness must be > 1 (2 = standard fuzzy c-means), got {self.fuzziness}")
        return s

    # -- fit ---------------------------------------------------------------------------------------------------
    def _stream(self, data, device, what: str):
        progress = f"dino-coseg {what}" if self.context.progress else False
        for batch, feats in self.extractor_.stream(data, batch_size=self.settings_["batch_size"], device=device,
                                                   progress=progress, num_workers=self.context.num_workers):
            yield batch, _rows(feats[DESCRIPTORS]), feats[SALIENCY].flatten(1)

    def fit(self, data, *, seed: int = 0, device: str = "cpu") -> "DinoCoseg":
        s = self._settings()
        reason = faiss_missing_reason()
        if reason:
            raise UserError(reason)
        import faiss

        device = torch.device(device)
        self.settings_ = s
        backbone = CosegFeatures(self.weights, layer=s["layer"], facet=s["facet"], stride=s["stride"],
                                 load_size=s["load_size"], low_res_saliency=s["low_res_saliency"]).to(device)
        self.extractor_ = FeatureExtractor(backbone, cache_dir=self.context.cache_dir,
                                           memory_budget_mb=FEATURE_MEMORY_MB)
        gpu = device.type == "cuda" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
        interval = s["interval"]

        # Pass 1: every interval-th descriptor of every image (the stage-1 sample).
        sample, num_images = [], 0
        for _, rows, _ in self._stream(data, device, "descriptors"):
            keep = every_nth(torch.ones(rows.shape[:2], dtype=torch.bool, device=rows.device), interval)
            sample.append(rows[keep].cpu())
            num_images += rows.shape[0]
        if num_images == 0:
            raise UserError(f"dino-coseg got no images from {data.name}; it co-segments a whole split")
        points = torch.cat(sample).numpy()
        # The release trains k = 1, 2, ... and stops at the elbow; faiss needs at least k points, so the search
        # can only go as far as the sample allows (the release fails when it gets further).
        ks = list(range(1, min(s["max_clusters"], points.shape[0]) + 1))
        stage1 = [faiss_kmeans(points, k, niter=s["niter"], nredo=s["nredo"], gpu=gpu,
                               seed=derive_seed(seed, "dino-coseg", "stage1", k)) for k in ks]
        centroids = [torch.from_numpy(np.array(m.centroids, dtype=np.float32)).to(device) for m in stage1]
        stacked = torch.cat(centroids)
        offsets = np.cumsum([0] + ks)

        # Pass 2: the mean squared distance of all descriptors for every k, and every k's saliency votes.
        sq_sums = torch.zeros(len(ks), dtype=torch.float64, device=device)
        votes = [torch.zeros(k, dtype=torch.int64, device=device) for k in ks]
        count = 0
        for _, rows, saliency in self._stream(data, device, "elbow"):
            d2 = squared_distances(rows, stacked)
            for i, k in enumerate(ks):
                best, labels = d2[..., offsets[i]:offsets[i + 1]].min(dim=-1)
                sq_sums[i] += best.double().sum()
                votes[i] += cluster_votes(labels, saliency, k, s["thresh"])
            count += rows.shape[0] * rows.shape[1]
        objectives = (sq_sums / count).tolist()
        chosen = elbow_stop(objectives, s["elbow"])
        if chosen is None:
            if len(ks) < s["max_clusters"]:
                raise UserError(f"dino-coseg: the elbow search needs more than {len(ks)} clusters but the stage-1 "
                                f"sample of {data.name} has only {points.shape[0]} descriptors; lower "
                                f"-p sample_interval")
            chosen = len(ks) - 1
        k1 = ks[chosen]
        salient = salient_clusters(votes[chosen], num_images, s["votes_percentage"])
        if not bool(salient.any()) or bool(salient.all()):
            which = "no" if not bool(salient.any()) else "every"
            raise UserError(f"dino-coseg: {which} stage-1 cluster of {data.name} (k={k1}) is salient in "
                            f"{s['votes_percentage']:g}% of the images, so there is "
                            f"{'no foreground' if which == 'no' else 'no background'}; change -p thresh or "
                            f"-p votes_percentage")
        stage1_centroids = centroids[chosen]

        # Pass 3: every interval-th foreground descriptor of every image (the stage-2 sample).
        fg_sample = []
        for _, rows, _ in self._stream(data, device, "parts"):
            labels = squared_distances(rows, stage1_centroids).argmin(dim=-1)
            fg = salient[labels]
            fg_sample.append(rows[every_nth(fg, interval)].cpu())
        fg_points = torch.cat(fg_sample).numpy()
        if fg_points.shape[0] < s["k"]:
            raise UserError(f"dino-coseg: {fg_points.shape[0]} foreground descriptors were sampled from {data.name}, "
                            f"fewer than num_parts={s['k']}; lower -p sample_interval or num_parts")
        stage2 = faiss_kmeans(fg_points, s["k"], niter=s["niter"], nredo=s["nredo"], gpu=gpu,
                              seed=derive_seed(seed, "dino-coseg", "stage2"))
        self.part_centroids_ = torch.from_numpy(np.array(stage2.centroids, dtype=np.float32)).to(device)
        self.background_centroids_ = stage1_centroids[~salient]
        self.objectives_ = objectives
        self.num_clusters_ = k1
        self.salient_clusters_ = salient.nonzero().flatten().tolist()
        self.num_foreground_samples_ = int(fg_points.shape[0])
        self.faiss_gpu_ = bool(gpu)
        return self

    # -- predict -----------------------------------------------------------------------------------------------
    def predict(self, batch: Batch) -> PartMaps:
        if not hasattr(self, "part_centroids_"):
            raise RuntimeError("dino-coseg: call fit() before predict()")
        feats = self.extractor_(batch.images, batch.ids)
        descriptors = feats[DESCRIPTORS]
        n, _, h, w = descriptors.shape
        d2 = coseg_distances(_rows(descriptors), self.part_centroids_, self.background_centroids_)
        probs = fuzzy_memberships(d2.transpose(1, 2).reshape(n, -1, h, w), self.settings_["fuzziness"])
        loaded = load_shape(*batch.size, self.settings_["load_size"])
        probs = F.interpolate(probs, size=loaded, mode="nearest")  # the release's upsampling of the grid
        if tuple(loaded) != tuple(batch.size):
            probs = F.interpolate(probs, size=batch.size, mode="nearest-exact")
        return PartMaps(probs.to(batch.device), image_size=batch.size, kind="probs", has_background=True)

