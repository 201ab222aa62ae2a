"""``kmeans``: K-means on VGG features of the evaluation split (the paper appendix's baseline; not in any reference code).

Pipeline (transductive: ``fit`` receives the evaluation view itself):

1. Features: VGG19 ``relu5_2`` and ``relu5_4`` (512 + 512 = 1024-d) from one cascaded pass, each resized
   bilinearly (``align_corners=False``) to ``feature_size`` x ``feature_size`` (64), concatenated, and
   L2-normalised per pixel. ``-p backbone=`` picks another backbone (:mod:`benchmark.methods.feature_backbones`):
   ``vgg16`` taps, or a DINO/DINOv2 ViT facet (``layers`` = block indices, ``facet``, ``stride``), whose patch
   maps go through exactly the same resizing, concatenation and normalisation (``docs/backbones.md``).
   ``image_size`` resizes the images before the backbone (default: as the view gives them).
2. Training sample (``fit``, one streamed pass): foreground pixels only -- the mask area-resampled to
   64x64 and thresholded at 0.5; all pixels when the batch has no masks. faiss clusters at most
   ``K * max_points_per_centroid`` points (its default of 256 per centroid, what the appendix's faiss run
   used), drawn uniformly at random without replacement. Holding every foreground pixel of a split
   (1024 floats each) is impossible, so the same uniform sample is drawn *while streaming*: every
   foreground pixel gets a random key from the run's seed and the ``K * max_points_per_centroid``
   smallest keys are kept (an exact one-pass sample without replacement). faiss then sees exactly that
   many points and does not subsample again.
3. Clustering: ``faiss.Kmeans(d=1024, k=K, niter=100, nredo=5)`` -- the best of ``nredo`` runs by
   objective -- with a seed derived from the run's seed (faiss's fixed default 1234 would hide seed
   variance). faiss's GPU index is used when faiss has GPU support and the run's device is CUDA.
4. Assignment (``predict``, the second streamed pass): every pixel of the 64x64 grid goes to its nearest
   centroid. Soft maps (for landmark centres) are fuzzy-c-means memberships from the squared centroid
   distances, ``u_k ~ d_k^(-2/(m-1))`` with ``m = fuzziness`` (2), whose argmax is the nearest centroid.
   They are upsampled with nearest neighbour to the image size, so the harness's argmax is the
   nearest-upsampled hard assignment of the spec. Background comes from the run's masks (the harness).

Features are never gathered for the whole split: ``fit`` keeps only the sample (and, within a fixed memory
budget, the native-resolution features of the first images), ``predict`` reads or recomputes the features
of the batch it is given (memory, then the disk cache ``RunContext.cache_dir``, then the backbone), which
also makes it correct for images that were not in ``fit``. The 64x64x1024 tensor itself is never built:
distances come from the per-pixel norm (accumulated over channel chunks) and from K projected maps
resized exactly like the features (bilinear resizing commutes with the projection).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.core.errors import UserError
from benchmark.core.method import Method
from benchmark.core.plugin import Range
from benchmark.core.registry import register_method
from benchmark.core.seeding import derive_seed, make_generator
from benchmark.core.types import Batch, PartMaps
from benchmark.methods import feature_backbones as backbones
from benchmark.methods.features import FeatureExtractor


def faiss_missing_reason() -> str | None:
    try:
        import faiss  # noqa: F401
    except ImportError as exc:
        return (f"faiss is not importable ({exc}); install faiss-cpu (`pip install faiss-cpu`) or, for GPU "
                f"K-means, faiss-gpu (conda-forge, or `pip install faiss-gpu-cu12`)")
    return None


# Native-resolution features of the first images of a split are kept (float16) up to this budget, so the
# assignment pass over a small split needs no second backbone pass (see FeatureExtractor).
FEATURE_MEMORY_MB = 512
VGG_LAYERS = ("relu5_2", "relu5_4")  # the paper's taps (VGG19); ViT backbones default to their last block
EPS = 1e-12  # as F.normalize: x = u / max(||u||, EPS)


def pixel_features(feats: dict[str, Tensor], layers, size: int) -> Tensor:
    """``(N, D, size, size)`` concatenated layers, bilinearly resized and L2-normalised per pixel (the
    reference definition; the method itself uses :func:`feature_statistics`, which never builds it)."""
    maps = [F.interpolate(feats[name], size=(size, size), mode="bilinear", align_corners=False) for name in layers]
    return F.normalize(torch.cat(maps, dim=1), dim=1, eps=EPS)


def resize_matrix(out_size: int, in_size: int, device=None) -> Tensor:
    """``(out_size, in_size)`` matrix of PyTorch's 1-D bilinear resize (``align_corners=False``), obtained
    by resizing the unit vectors -- so it follows PyTorch's convention exactly, edge clamping included."""
    eye = torch.eye(in_size, device=device)[None]  # (1, in channels = unit vectors, in length)
    return F.interpolate(eye, size=out_size, mode="linear", align_corners=False)[0].T


def feature_statistics(feats: dict[str, Tensor], layers, size: int, *, centroids: Tensor | None = None,
                       positions: tuple[Tensor, Tensor, Tensor] | None = None):
    """What K-means needs of :func:`pixel_features` ``x`` without materialising ``(N, D, size, size)``
    (16 MB per image at 64x64x1024):

    * ``sq``: ``(N, size, size)`` squared norm of ``x`` (1, or 0 for an all-zero feature vector);
    * ``cross``: ``(N, K, size, size)`` dot products ``x . c_k`` (with ``centroids``);
    * ``rows``: ``(P, D)`` the rows of ``x`` at ``positions = (n, y, x)`` index tensors.

    Bilinear resizing is linear with the same weights ``A_y, A_x`` in every channel, so (exactly, up to
    rounding): the projections on the centroids are computed at the native resolution and then resized; the
    squared norm of the resized vector is the quadratic form ``a^T G a`` of the per-image Gram matrix ``G``
    of the native positions; and single rows are read with ``grid_sample`` at the pixel centres (the same
    bilinear weights, border clamping = the resize's edge clamping). A layer finer than half the output grid
    in area (``4 h w > size^2``) is resized outright instead, which is then the cheaper way.
    """
    first = next(iter(feats.values()))
    n, device = first.shape[0], first.device
    norm2 = torch.zeros(n, size, size, device=device)
    cross = None
    rows = []
    offset = 0
    for name in layers:
        f = feats[name].float()
        _, c, h, w = f.shape
        ay, ax = resize_matrix(size, h, device), resize_matrix(size, w, device)
        if 4 * h * w > size * size:
            # A fine map (a ViT's patch grid, overlapping patches): its (hw)^2 Gram matrix would cost more than
            # the resized map itself (C x size^2), so resize it and read everything from it. VGG19's relu5 taps
            # of images up to 500 px (at most 31x31 positions for 64x64) never take this branch.
            resized = torch.einsum("yi,ncij,xj->ncyx", ay, f, ax)
            norm2 += resized.pow(2).sum(1)
            if centroids is not None:
                up = torch.einsum("ncyx,kc->nkyx", resized, centroids[:, offset:offset + c])
                cross = up if cross is None else cross + up
            if positions is not None:
                rows.append(resized[positions[0], :, positions[1], positions[2]])
            offset += c
            continue
        flat = f.reshape(n, c, h * w)
        gram = (flat.transpose(1, 2) @ flat).reshape(n, h, w, h, w)
        t = torch.einsum("yi,nijkl->nyjkl", ay, gram)
        t = torch.einsum("yk,nyjkl->nyjl", ay, t)
        t = torch.einsum("xj,nyjl->nyxl", ax, t)
        norm2 += torch.einsum("xl,nyxl->nyx", ax, t).clamp_min(0)
        if centroids is not None:
            low = torch.einsum("nchw,kc->nkhw", f, centroids[:, offset:offset + c])
            up = torch.einsum("yi,nkij,xj->nkyx", ay, low, ax)
            cross = up if cross is None else cross + up
        if positions is not None:
            rows.append(_sample_rows(f, positions, size))
        offset += c
    scale = norm2.sqrt().clamp_min(EPS)
    out_rows = torch.cat(rows, dim=1) / scale[positions][:, None] if positions is not None else None
    out_cross = cross / scale[:, None] if cross is not None else None
    return norm2 / scale.pow(2), out_cross, out_rows


def _sample_rows(f: Tensor, positions: tuple[Tensor, Tensor, Tensor], size: int) -> Tensor:
    """``(P, C)`` values of ``f`` bilinearly resized to ``size`` x ``size``, read only at ``positions``."""
    n_idx, y_idx, x_idx = positions
    if n_idx.numel() == 0:
        return f.new_zeros(0, f.shape[1])
    counts = torch.bincount(n_idx, minlength=f.shape[0])
    width = int(counts.max())
    # Slot of each position within its image (in any order of the positions).
    order = torch.argsort(n_idx, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(n_idx)
    slot[order] = torch.arange(n_idx.numel(), device=f.device) - starts[n_idx[order]]
    grid = torch.zeros(f.shape[0], 1, width, 2, device=f.device)
    grid[n_idx, 0, slot, 0] = (x_idx.float() + 0.5) / size * 2 - 1
    grid[n_idx, 0, slot, 1] = (y_idx.float() + 0.5) / size * 2 - 1
    sampled = F.grid_sample(f, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[:, :, 0].permute(0, 2, 1)[n_idx, slot]


def foreground(masks: Tensor | None, n: int, size: int, device) -> Tensor:
    """``(N, size, size)`` bool: the masks area-resampled to the feature grid, > 0.5; all True without masks."""
    if masks is None:
        return torch.ones(n, size, size, dtype=torch.bool, device=device)
    small = F.interpolate(masks[:, None].float().to(device), size=(size, size), mode="area")[:, 0]
    return small > 0.5


def squared_distances(x: Tensor, centroids: Tensor) -> Tensor:
    """``(N, K, h, w)`` squared Euclidean distances of pixel features ``x (N, D, h, w)`` to ``centroids (K, D)``."""
    cross = torch.einsum("ndhw,kd->nkhw", x, centroids)
    return distances_from(x.pow(2).sum(1), cross, centroids)


def distances_from(sq: Tensor, cross: Tensor, centroids: Tensor) -> Tensor:
    """``|x|^2 - 2 x.c + |c|^2`` from precomputed ``sq (N, h, w)`` and ``cross (N, K, h, w)``, clamped at 0."""
    return (sq[:, None] - 2 * cross + centroids.pow(2).sum(1)[None, :, None, None]).clamp_min(0)


def fuzzy_memberships(d2: Tensor, fuzziness: float) -> Tensor:
    """Fuzzy-c-means memberships ``u_k = d_k^(-2/(m-1)) / sum_j d_j^(-2/(m-1))`` over dim 1 (argmax = nearest)."""
    return torch.softmax(-torch.log(d2.clamp_min(1e-12)) / (fuzziness - 1.0), dim=1)


class StreamingSample:
    """A uniform random sample without replacement of at most ``capacity`` rows from a stream: every
    candidate row gets a uniform key, and the rows with the ``capacity`` smallest keys seen so far are kept.

    ``select(count)`` draws the keys of the next ``count`` candidates and returns the indices (into those
    ``count``) that can still enter the sample; ``add(rows, keys)`` then merges just those rows, so the
    caller only builds the rows it needs.
    """

    def __init__(self, capacity: int, generator: torch.Generator):
        self.capacity = capacity
        self.generator = generator
        self.keys: Tensor | None = None
        self.rows: Tensor | None = None
        self.seen = 0

    def select(self, count: int) -> tuple[Tensor, Tensor]:
        self.seen += int(count)
        keys = torch.rand(count, generator=self.generator, device=self.generator.device)
        if count > self.capacity:
            keys, index = torch.topk(keys, self.capacity, largest=False, sorted=False)
        else:
            index = torch.arange(count, device=keys.device)
        return index, keys

    def add(self, rows: Tensor, keys: Tensor | None = None) -> None:
        """Offer ``rows`` (with their ``keys`` from :meth:`select`, or fresh keys if ``None``)."""
        if keys is None:
            index, keys = self.select(int(rows.shape[0]))
            rows = rows[index.to(rows.device)]
        if rows.shape[0] == 0:
            return
        keys = keys.to(rows.device)
        if self.keys is not None:
            keys = torch.cat([self.keys, keys])
            rows = torch.cat([self.rows, rows])
        if keys.shape[0] > self.capacity:
            keys, order = torch.topk(keys, self.capacity, largest=False, sorted=True)
            rows = rows[order]
        self.keys, self.rows = keys, rows


@register_method("kmeans")
class KMeansParts(Method):
    """K-means (faiss) of L2-normalised pixel features (VGG19 relu5_2+relu5_4, or DINO/DINOv2 ViT facets)."""

    transductive = True
    uses_masks = True
    supervision = "fg-masks"  # clusters the features of the run's foreground pixels only
    param_ranges = {"stride": Range(1), "image_size": Range(16, 4096), "feature_size": Range(1, 4096),
                    "niter": Range(1), "nredo": Range(1), "max_points_per_centroid": Range(1),
                    "fuzziness": Range(1, low_open=True), "batch_size": Range(1)}

    def __init__(self, num_parts: int = 4, backbone: str = "vgg19", weights: str = "pretrained",
                 layers: tuple[str, ...] | int | None = None, facet: str | None = None, stride: int | None = None,
                 image_size: int | None = None, feature_size: int = 64, niter: int = 100, nredo: int = 5,
                 max_points_per_centroid: int = 256, fuzziness: float = 2.0, batch_size: int = 16):
        self.num_parts = num_parts
        self.backbone = backbone
        self.weights = weights
        self.layers = layers
        self.facet = facet
        self.stride = stride
        self.image_size = image_size
        self.feature_size = feature_size
        self.niter = niter
        self.nredo = nredo
        self.max_points_per_centroid = max_points_per_centroid
        self.fuzziness = fuzziness
        self.batch_size = batch_size

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return faiss_missing_reason()

    @classmethod
    def weights_needed(cls, params: dict[str, Any] | None = None):
        from benchmark.methods.feature_backbones import weights_needed

        return weights_needed(params)

    @classmethod
    def random_weights_params(cls) -> dict[str, Any]:
        return {"weights": "random"}

    @classmethod
    def demo_params(cls) -> dict[str, Any]:
        return {"weights": "random", "niter": 20, "nredo": 2, "batch_size": 8}

    def weights_id(self) -> str:
        return backbones.weights_identity(self.backbone, self.weights)

    # -- fit ----------------------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        """The parameters as typed values (``-p key=value`` may hand them over as text), validated."""
        recipe = backbones.resolve(self.backbone, self.layers, self.facet, self.stride, VGG_LAYERS)
        image_size = int(self.image_size) if self.image_size not in (None, "", "none", "None", 0, "0") else None
        s = {"k": int(self.num_parts), "recipe": recipe, "image_size": image_size, "size": int(self.feature_size), "niter": int(self.niter), "nredo": int(self.nredo),
             "mppc": int(self.max_points_per_centroid), "fuzziness": float(self.fuzziness),
             "batch_size": int(self.batch_size)}
        if min(s["k"], s["size"], s["niter"], s["nredo"], s["mppc"], s["batch_size"]) < 1:
            raise UserError("kmeans needs num_parts, feature_size, niter, nredo, max_points_per_centroid and "
                            "batch_size >= 1")
        if s["fuzziness"] <= 1:
            raise UserError(f"kmeans fuzziness must be > 1 (2 = standard fuzzy c-means), got {self.fuzziness}")
        return s

    def fit(self, data, *, seed: int = 0, device: str = "cpu") -> "KMeansParts":
        s = self._settings()
        reason = faiss_missing_reason()
        if reason:
            raise UserError(reason)
        import faiss

        device = torch.device(device)
        backbone = backbones.build(s["recipe"], self.weights).to(device)
        s["layers"] = backbone.layers  # the names of the maps it returns (relu5_4, block11.key, ...)
        self.extractor_ = FeatureExtractor(backbone, input_size=s["image_size"], cache_dir=self.context.cache_dir,
                                           memory_budget_mb=FEATURE_MEMORY_MB)
        k, size = s["k"], s["size"]
        sample = StreamingSample(k * s["mppc"], make_generator(derive_seed(seed, "kmeans", "sample"), device))
        for batch, feats in self.extractor_.stream(data, batch_size=s["batch_size"], device=device,
                                                   progress="kmeans features" if self.context.progress else False,
                                                   num_workers=self.context.num_workers):
            fg = foreground(batch.masks, len(batch), size, device)
            where = fg.nonzero(as_tuple=True)  # foreground pixels in (image, row, column) order
            index, keys = sample.select(int(where[0].shape[0]))
            index = index.to(where[0].device)
            _, _, rows = feature_statistics(feats, s["layers"], size, positions=tuple(w[index] for w in where))
            sample.add(rows, keys)
        if sample.seen < k:
            raise UserError(f"kmeans found {sample.seen} foreground pixels at {size}x{size} in {data.name} "
                            f"({len(data)} images), fewer than num_parts={k}; check the masks")
        points = np.ascontiguousarray(sample.rows.float().cpu().numpy())
        use_gpu = device.type == "cuda" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
        kmeans = faiss.Kmeans(points.shape[1], k, niter=s["niter"], nredo=s["nredo"],
                              seed=derive_seed(seed, "kmeans", "faiss") % (2**31 - 1),
                              max_points_per_centroid=s["mppc"], verbose=False, gpu=bool(use_gpu))
        kmeans.train(points)
        self.settings_ = s
        self.centroids_ = torch.from_numpy(np.array(kmeans.centroids, dtype=np.float32)).to(device)
        self.objective_ = float(kmeans.obj[-1]) if len(kmeans.obj) else float("nan")
        self.num_points_ = int(points.shape[0])
        self.num_foreground_pixels_ = sample.seen
        self.faiss_gpu_ = bool(use_gpu)
        return self

    # -- predict ------------------------------------------------------------------------------------
    def predict(self, batch: Batch) -> PartMaps:
        if not hasattr(self, "centroids_"):
            raise RuntimeError("kmeans: call fit() before predict()")
        s = self.settings_
        feats = self.extractor_(batch.images, batch.ids)
        sq, cross, _ = feature_statistics(feats, s["layers"], s["size"], centroids=self.centroids_)
        probs = fuzzy_memberships(distances_from(sq, cross, self.centroids_), s["fuzziness"])
        probs = F.interpolate(probs, size=batch.size, mode="nearest-exact")
        return PartMaps(probs.to(batch.device), image_size=batch.size, kind="probs")
