"""Speed benchmarks of the methods' building blocks (``benchmark bench features|kmeans|dff|dino-coseg|masks-predict``).

Each compares the project's code path with the straightforward baseline measured in the same run; the
training step's benchmark lives with the trainable methods (:mod:`benchmark.methods.ours.bench`). See
:mod:`benchmark.benches` for the convention.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import Tensor

from benchmark.core.errors import UserError
from benchmark.core.registry import register_bench
from benchmark.core.seeding import make_generator
from benchmark.methods.backbones import VGGFeatures
from benchmark.methods.features import FeatureExtractor
from benchmark.methods.kmeans import faiss_missing_reason
from benchmark.methods.kmeans import (KMeansParts, StreamingSample, distances_from, feature_statistics,
                                      fuzzy_memberships, pixel_features)
from benchmark.methods.nmf import nmf


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


@register_bench("kmeans")
def bench_kmeans(images: int = 8, map_size: int = 16, feature_size: int = 64, channels: int = 512, k: int = 4,
                 niter: int = 100, nredo: int = 5, max_points_per_centroid: int = 256, split_size: int = 5794,
                 seed: int = 0, device: str = "cpu") -> str:
    """K-means clustering + assignment (the method's path) vs scikit-learn KMeans on the whole pixel matrix.

    Input: ``images`` images' features (two ``channels``-channel layers at ``map_size``^2, synthetic
    clustered ReLU maps, as relu5_2/relu5_4 of a 256 px image). The baseline materialises the
    ``feature_size``^2 x ``2*channels`` normalised pixel matrix and runs scikit-learn ``KMeans`` (lloyd,
    same K/niter/nredo) on all of it. ``device=cuda`` runs the partbench path on the GPU (faiss on the GPU
    when faiss-gpu is installed, as the method does); the baseline stays on the CPU."""
    missing = KMeansParts.unavailable_reason()
    if missing:
        raise UserError(f"the kmeans benchmark needs faiss: {missing}")
    import faiss
    from sklearn.cluster import KMeans as SkKMeans
    from sklearn.metrics import normalized_mutual_info_score

    images, map_size, size, channels, k = int(images), int(map_size), int(feature_size), int(channels), int(k)
    niter, nredo, mppc, split_size, seed = int(niter), int(nredo), int(max_points_per_centroid), int(split_size), int(seed)
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(k, 2 * channels, generator=g) * 2
    which = torch.randint(0, k, (images, map_size, map_size), generator=g)
    low = (centres[which] + torch.randn(images, map_size, map_size, 2 * channels, generator=g)).clamp_min(0)
    low = low.permute(0, 3, 1, 2).contiguous()
    feats_all = {"a": low[:, :channels], "b": low[:, channels:]}
    layers = ("a", "b")
    per_batch = 4
    dev = torch.device(device)
    feats_dev = {name: value.to(dev) for name, value in feats_all.items()}
    _sync(dev)

    start = time.perf_counter()
    sample = StreamingSample(k * mppc, make_generator(seed, dev))
    for i in range(0, images, per_batch):
        feats = {name: value[i:i + per_batch] for name, value in feats_dev.items()}
        where = torch.ones(feats["a"].shape[0], size, size, dtype=torch.bool, device=dev).nonzero(as_tuple=True)
        index, keys = sample.select(int(where[0].shape[0]))
        _, _, rows = feature_statistics(feats, layers, size, positions=tuple(w[index] for w in where))
        sample.add(rows, keys)
    _sync(dev)
    t_sample = time.perf_counter() - start
    start = time.perf_counter()
    use_gpu = dev.type == "cuda" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    km = faiss.Kmeans(2 * channels, k, niter=niter, nredo=nredo, seed=seed + 1, max_points_per_centroid=mppc,
                      gpu=bool(use_gpu))
    km.train(np.ascontiguousarray(sample.rows.float().cpu().numpy()))
    centroids = torch.from_numpy(km.centroids).to(dev)
    t_train = time.perf_counter() - start
    start = time.perf_counter()
    labels = []
    for i in range(0, images, per_batch):
        feats = {name: value[i:i + per_batch] for name, value in feats_dev.items()}
        sq, cross, _ = feature_statistics(feats, layers, size, centroids=centroids)
        labels.append(fuzzy_memberships(distances_from(sq, cross, centroids), 2.0).argmax(1).flatten())
    labels_ours = torch.cat(labels).cpu().numpy()
    t_assign = time.perf_counter() - start
    t_ours = t_sample + t_train + t_assign

    start = time.perf_counter()
    x = pixel_features(feats_all, layers, size).permute(0, 2, 3, 1).reshape(-1, 2 * channels).numpy()
    sk = SkKMeans(n_clusters=k, n_init=nredo, max_iter=niter, tol=0.0, algorithm="lloyd", random_state=seed).fit(x)
    t_sk = time.perf_counter() - start

    agreement = normalized_mutual_info_score(sk.labels_, labels_ours)
    split_ours = (t_sample + t_assign) / images * split_size + t_train  # the clustered sample has a fixed size
    split_sk = t_sk / images * split_size  # Lloyd over all pixels: linear in the number of images
    n = x.shape[0]
    return "\n".join([
        f"kmeans bench: {images} images, 2 x {channels} channels at {map_size}x{map_size} -> {size}x{size} = {n} "
        f"pixels x {2 * channels}-d, K={k}, niter={niter}, nredo={nredo}" + (f", device={dev}" if dev.type != "cpu" else ""),
        f"  partbench (streamed {k * mppc}-point sample, faiss {'GPU' if km.gpu else 'CPU'}, assignment without "
        f"materialising the pixel matrix): {t_ours:.2f} s (sample {t_sample:.2f} + faiss {t_train:.2f} + assign "
        f"{t_assign:.2f}) = {images / t_ours:.1f} images/s -> {split_ours:.0f} s per split of {split_size} images",
        f"  baseline (pixel matrix + scikit-learn KMeans on all {n} points): {t_sk:.2f} s = {images / t_sk:.2f} "
        f"images/s -> {split_sk:.0f} s per split (and {size * size * 2 * channels * 4 * split_size / 1e9:.0f} GB "
        f"of float32 features for the split)",
        f"  speed-up: {t_sk / t_ours:.1f}x; NMI(partbench labels, scikit-learn labels) = {agreement:.3f}",
    ])


@register_bench("dff")
def bench_dff(images: int = 64, map_size: int = 16, channels: int = 512, k: int = 4, iterations: int = 50,
              split_size: int = 5794, seed: int = 0, device: str = "cpu") -> str:
    """DFF's NMF in torch vs scikit-learn's multiplicative-update NMF from the same initial factors.

    The matrix is ``images x map_size^2`` rows by ``channels`` columns, non-negative (low rank + ReLU noise,
    like relu5_4 features); both run a fixed number of updates."""
    from sklearn.decomposition import NMF

    images, map_size, channels, k, iterations = int(images), int(map_size), int(channels), int(k), int(iterations)
    rng = np.random.default_rng(int(seed))
    m = images * map_size * map_size
    V = (rng.random((m, k)) @ rng.random((k, channels)) + np.maximum(rng.standard_normal((m, channels)) * 0.3, 0))
    V = V.astype(np.float32)
    scale = math.sqrt(V.mean() / k)
    W0 = (np.abs(rng.standard_normal((m, k))) * scale).astype(np.float32)
    H0 = (np.abs(rng.standard_normal((k, channels))) * scale).astype(np.float32)

    Vt = torch.from_numpy(V).to(device)
    start = time.perf_counter()
    W, H, _ = nmf(Vt, k, max_iter=iterations, tol=0.0, W0=torch.from_numpy(W0), H0=torch.from_numpy(H0), device=device)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    t_ours = time.perf_counter() - start
    err_ours = float(torch.linalg.norm(Vt - W @ H))

    start = time.perf_counter()
    model = NMF(n_components=k, init="custom", solver="mu", beta_loss="frobenius", max_iter=iterations, tol=0.0)
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        Wsk = model.fit_transform(V, W=W0.copy(), H=H0.copy())
    t_sk = time.perf_counter() - start
    err_sk = float(np.linalg.norm(V - Wsk @ model.components_))
    per_split = lambda t: t / images * split_size  # noqa: E731  (each update is linear in the rows)
    return "\n".join([
        f"dff bench: NMF of a {m} x {channels} matrix ({images} images x {map_size}x{map_size} positions), "
        f"K={k}, {iterations} updates, device={device}",
        f"  partbench torch NMF: {t_ours:.2f} s = {images / t_ours:.1f} images/s -> {per_split(t_ours):.0f} s per "
        f"split of {split_size} images; final error {err_ours:.4g}",
        f"  baseline scikit-learn NMF(solver='mu'): {t_sk:.2f} s = {images / t_sk:.1f} images/s -> "
        f"{per_split(t_sk):.0f} s per split; final error {err_sk:.4g}",
        f"  speed-up: {t_sk / t_ours:.1f}x (same initial factors; relative error difference "
        f"{abs(err_ours - err_sk) / err_sk:.1e})",
    ])


@register_bench("masks-predict")
def bench_masks_predict(n: int = 32, image_size: int = 64, batch_size: int = 16, device: str = "auto") -> str:
    """Writing a mask folder: batched device prediction vs image-by-image prediction (same model, same run)."""
    import tempfile
    import time

    from benchmark.methods.fgbg import FgBgConfig, MaskPredictor
    from benchmark.methods.segmenter import PartSegmenter
    from pathlib import Path

    import benchmark.datasets as D
    from benchmark.maskgen import predict_masks

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    data = D.load("synthetic", split="test", view="full", masks="none", num_test=n, num_train=0,
                  image_size=image_size)
    torch.manual_seed(0)
    predictor = MaskPredictor(PartSegmenter(2), FgBgConfig(image_size=image_size), identity="bench").to(device)
    for i in range(n):  # render (and cache) the scenes outside the timings
        data.source_image(i)

    def timed(batched: bool) -> float:
        with tempfile.TemporaryDirectory() as folder:
            predict_masks(predictor, data, Path(folder) / "warm", batch_size=batch_size, device=device,
                          batched=batched)  # warm-up (allocator, kernels)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            predict_masks(predictor, data, Path(folder) / "out", batch_size=batch_size, device=device,
                          batched=batched)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return time.perf_counter() - start

    single = timed(False)
    batched = timed(True)
    return (f"masks-predict: {n} images of {image_size}x{image_size}, DeepLab ResNet-50 fg/bg, device {device}\n"
            f"  image by image : {single:8.3f} s  ({n / single:7.1f} images/s)\n"
            f"  batched ({batch_size:>3})  : {batched:8.3f} s  ({n / batched:7.1f} images/s)\n"
            f"  speed-up       : {single / batched:.2f}x")


THRESHOLDS = (0.065, 0.2, 0.3, 0.4, 0.5)  # the release's threshold first


@register_bench("dino-coseg")
def bench_dino_coseg(images: int = 16, size: int = 224, num_parts: int = 4, stride: int = 4, niter: int = 300,
                     nredo: int = 10, max_clusters: int = 14, batch_size: int = 8, split_size: int = 5794,
                     seed: int = 0, device: str = "cpu") -> str:
    """dino-coseg's whole fit + predict vs the release's way (image by image, every descriptor held), same weights.

    The baseline follows ``part_cosegmentation.py`` step by step: per image a timm forward with hooks for the
    stride-``stride`` keys and a half-size forward for the CLS attention, all descriptors of the split kept in
    one matrix, a faiss search over all of them after each k of the elbow, the votes in Python loops, and the
    final distances by broadcasting. Both use the same images, weights and faiss seeds; the report gives the
    agreement of their labels (NMI) and the memory each holds (the descriptor matrix; on CUDA also the peak
    of allocated GPU memory)."""
    missing = faiss_missing_reason()
    if missing:
        raise UserError(f"the dino-coseg benchmark needs faiss: {missing}")
    import warnings

    import faiss
    import torch.nn.functional as F
    from sklearn.metrics import normalized_mutual_info_score

    from benchmark.core.seeding import derive_seed
    from benchmark.core.types import Batch
    from benchmark.methods import dino_coseg as dc
    from benchmark.methods import vit as vit_module
    from benchmark.methods.backbones import RandomWeightsWarning

    images, size, k_parts, stride = int(images), int(size), int(num_parts), int(stride)
    niter, nredo, max_clusters, batch_size, seed = int(niter), int(nredo), int(max_clusters), int(batch_size), int(seed)
    dev = torch.device(device)
    import benchmark.datasets as D

    # Scenes of the synthetic dataset rather than noise: the stage-1 clusters must differ between images for
    # the saliency votes to split them into foreground and background (random weights' attention is noise).
    scenes = D.load("synthetic", split="test", view="full", masks="none", num_test=images, num_train=0,
                    image_size=size, seed=seed)
    data_images = torch.cat([batch.images for batch in scenes.batches(images)])
    params = dict(num_parts=k_parts, weights="random", stride=stride, load_size=size, niter=niter, nredo=nredo,
                  max_clusters=max_clusters, batch_size=batch_size, votes_percentage=50)

    class Split:  # the smallest dataset view the method streams: fixed images, no masks
        name = "bench"

        def __len__(self):
            return images

        def batches(self, n, *, device="cpu", progress=False, num_workers=0):
            for i in range(0, images, n):
                chunk = data_images[i:i + n].to(device)
                yield Batch(images=chunk, ids=[str(j) for j in range(i, i + len(chunk))])

    def peak_reset():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)

    def peak_mb() -> float:
        return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else float("nan")

    with warnings.catch_warnings():  # speed does not depend on the weights' values
        warnings.simplefilter("ignore", RandomWeightsWarning)
        # Random weights' CLS attention is noise, so the release's threshold can leave no foreground or no
        # background; the first threshold of THRESHOLDS that splits the stage-1 clusters is used by both sides
        # (these fits are also the warm-up).
        for thresh in THRESHOLDS:
            try:
                dc.DinoCoseg(**params, thresh=thresh).fit(Split(), seed=seed, device=str(dev))
                break
            except UserError:
                continue
        else:
            raise UserError(f"dino-coseg bench: no threshold of {THRESHOLDS} splits the stage-1 clusters of these "
                            f"{images} random-weight images into foreground and background; change -p images or -p seed")
        params["thresh"] = thresh
        # The method builds its backbone inside fit (random weights: seeded draws); the baseline gets its network
        # ready-made, so that time is measured apart and left out of the comparison.
        start = time.perf_counter()
        dc.CosegFeatures("random", stride=stride, load_size=size).to(dev)
        _sync(dev)
        t_build = time.perf_counter() - start
        peak_reset()
        start = time.perf_counter()
        method = dc.DinoCoseg(**params).fit(Split(), seed=seed, device=str(dev))
        ours = [method.predict(batch).scores for batch in Split().batches(batch_size, device=dev)]
        _sync(dev)
        t_ours = max(time.perf_counter() - start - t_build, 1e-9)
        peak_ours = peak_mb()
        grid = dc.grid_shape(size, size, 8, stride)
        labels_ours = torch.cat([F.interpolate(s, size=grid, mode="nearest-exact").argmax(1) for s in ours])
        held_ours = sum(getattr(method, name).numel() * 4 for name in ("part_centroids_", "background_centroids_"))

        # The release's way, image by image, with the same weights.
        model = vit_module.timm_model(dc.BACKBONE, device="cpu", dynamic_img_size=True)
        model.load_state_dict(method.extractor_.backbone.vit.model.state_dict())
        model.patch_embed.img_size = None
        model = model.to(dev).eval()
        captured = {}
        last = model.blocks[-1].attn
        last.fused_attn = False
        model.blocks[11].attn.qkv.register_forward_hook(lambda _m, _i, out: captured.__setitem__("qkv", out))
        last.attn_drop.register_forward_hook(lambda _m, _i, out: captured.__setitem__("attn", out))
        mean, std = method.extractor_.backbone.vit.mean, method.extractor_.backbone.vit.std
        peak_reset()
        start = time.perf_counter()
        descriptors, saliency = [], []
        with torch.no_grad():
            for i in range(images):
                x = data_images[i:i + 1].to(dev)
                model.patch_embed.proj.stride = (stride, stride)
                model.forward_features((x - mean) / std)
                keys = captured["qkv"].chunk(3, dim=-1)[1][0, 1:]
                descriptors.append(keys.float().cpu().numpy())
                half = F.interpolate(x, size=(size // 2, size // 2), mode="bilinear", align_corners=False,
                                     antialias=True)
                model.patch_embed.proj.stride = (8, 8)
                model.forward_features((half - mean) / std)
                cls = captured["attn"][0, list(dc.SALIENCY_HEADS), 0, 1:].mean(0)
                cls = ((cls - cls.min()) / (cls.max() - cls.min())).reshape(1, 1, size // 16, size // 16)
                saliency.append(dc.pil_nearest_resize(cls, grid).flatten().cpu().numpy())
        everything = np.ascontiguousarray(np.concatenate(descriptors), dtype=np.float32)
        faiss.normalize_L2(everything)
        sampled = np.ascontiguousarray(np.concatenate([d[::100] for d in descriptors]), dtype=np.float32)
        faiss.normalize_L2(sampled)
        means = []
        for k in range(1, max_clusters + 1):
            stage1 = faiss.Kmeans(sampled.shape[1], k, niter=niter, nredo=nredo,
                                  seed=derive_seed(seed, "dino-coseg", "stage1", k) % (2**31 - 1))
            stage1.train(sampled)
            dist, labels = stage1.index.search(everything, 1)
            means.append(float(dist.sum()) / everything.shape[0])
            if len(means) > 1 and means[-1] > 0.975 * means[-2]:
                break
        per_image = np.split(labels[:, 0], images)
        votes = np.zeros(k)
        for image_labels, image_saliency in zip(per_image, saliency):
            for label in range(k):
                if (image_labels == label).any() and image_saliency[image_labels == label].mean() > thresh:
                    votes[label] += 1
        salient = np.where(votes >= math.ceil(images * 50 / 100))[0]
        fg = [d[np.isin(lab, salient)] for d, lab in zip(descriptors, per_image)]
        fg_sampled = np.ascontiguousarray(np.concatenate([f[::100] for f in fg]), dtype=np.float32)
        faiss.normalize_L2(fg_sampled)
        stage2 = faiss.Kmeans(fg_sampled.shape[1], k_parts, niter=niter, nredo=nredo,
                              seed=derive_seed(seed, "dino-coseg", "stage2") % (2**31 - 1))
        stage2.train(fg_sampled)
        background = stage1.centroids[[i for i in range(k) if i not in salient]]
        labels_base = []
        for d in np.split(everything, images):
            to_parts = ((d[:, None] - stage2.centroids[None]) ** 2).sum(-1)
            to_bg = ((d[:, None] - background[None]) ** 2).sum(-1).min(1, keepdims=True)
            labels_base.append(np.concatenate([to_bg, to_parts], axis=1).argmin(1))
        _sync(dev)
        t_base = time.perf_counter() - start
        peak_base = peak_mb()
    held_base = everything.nbytes + sampled.nbytes + sum(d.nbytes for d in descriptors)
    agreement = normalized_mutual_info_score(np.concatenate(labels_base), labels_ours.flatten().cpu().numpy())
    gpu_note = lambda peak: f", peak GPU memory {peak:.0f} MB" if dev.type == "cuda" else ""  # noqa: E731
    per_split = lambda t: t / images * split_size  # noqa: E731  (every pass is linear in the images)
    return "\n".join([
        f"dino-coseg bench: {images} images of {size}x{size}, ViT-S/8 keys at stride {stride} ({grid[0]}x{grid[1]} "
        f"descriptors), up to {max_clusters} stage-1 clusters, K={k_parts}, niter={niter}, nredo={nredo}, saliency "
        f"threshold {thresh} (random weights), device={dev}",
        f"  partbench (batches of {batch_size}, streamed passes, one pass for every k's objective; building the "
        f"backbone, {t_build:.2f} s, left out): {t_ours:.2f} s = "
        f"{images / t_ours:.2f} images/s -> {per_split(t_ours):.0f} s per split of {split_size} images; holds "
        f"{held_ours / 2**20:.2f} MB of centroids after fit{gpu_note(peak_ours)}",
        f"  baseline (the release's way: image by image, all descriptors held, a search per k): {t_base:.2f} s = "
        f"{images / t_base:.2f} images/s -> {per_split(t_base):.0f} s per split; holds {held_base / 2**20:.1f} MB of "
        f"descriptors ({held_base / images * split_size / 2**30:.1f} GB for the split){gpu_note(peak_base)}",
        f"  speed-up: {t_base / t_ours:.2f}x; NMI(partbench labels, baseline labels) = {agreement:.3f}",
    ])
