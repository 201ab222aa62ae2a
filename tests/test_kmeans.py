"""``kmeans`` (methods/kmeans.py): fidelity to the appendix baseline, oracles, seeds, and beating ``random``."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.core.method import RunContext
from benchmark.core.registry import DATASETS, METHODS
from benchmark.methods import kmeans as km
from benchmark.methods.backbones import RandomWeightsWarning
from helpers import sklearn_fg_nmi as fg_nmi

pytestmark = pytest.mark.filterwarnings("ignore::benchmark.methods.backbones.RandomWeightsWarning")


def synthetic(num_test=6, image_size=32, **options):
    return DATASETS.get("synthetic")(split="test", view="fg", num_test=num_test, image_size=image_size, **options)


def tiny_kmeans(**params):
    defaults = dict(weights="random", niter=10, nredo=1, batch_size=4)
    defaults.update(params)
    return METHODS.get("kmeans")(**defaults)


def test_registered_with_tags_and_defaults():
    cls = METHODS.get("kmeans")
    assert cls.transductive and cls.uses_masks and not cls.requires_training
    defaults = cls.param_defaults()
    assert defaults["backbone"] == "vgg19" and defaults["feature_size"] == 64
    # layers=None is the backbone's default recipe: for VGG19 the paper's relu5_2 + relu5_4.
    assert cls(**defaults)._settings()["recipe"].layers == ("relu5_2", "relu5_4")
    assert (defaults["niter"], defaults["nredo"], defaults["max_points_per_centroid"]) == (100, 5, 256)
    assert cls.demo_params()["weights"] == "random"
    assert cls().weights_id() == "imagenet:vgg19" and tiny_kmeans().weights_id() == "random:seed0"
    assert cls.unavailable_reason() is None


def test_unavailable_without_faiss(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    reason = METHODS.get("kmeans").unavailable_reason()
    assert reason is not None and "faiss" in reason and "pip install" in reason


def test_beats_random_on_synthetic():
    data = synthetic(num_test=12, image_size=48)
    method = tiny_kmeans(niter=20, nredo=2).fit(data, seed=0)
    score = fg_nmi(method, data)
    baseline = fg_nmi(METHODS.get("random")().fit(data, seed=0), data)
    assert score > 0.2 and score > baseline + 0.15, (score, baseline)


def test_same_seed_same_maps_and_the_seed_reaches_faiss(monkeypatch):
    import faiss

    seen = []
    original = faiss.Kmeans

    def spy(d, k, **kwargs):
        seen.append(kwargs)
        return original(d, k, **kwargs)

    monkeypatch.setattr(faiss, "Kmeans", spy)
    data = synthetic(num_test=4)
    a = tiny_kmeans(niter=1, nredo=1).fit(data, seed=0)
    b = tiny_kmeans(niter=1, nredo=1).fit(data, seed=0)
    c = tiny_kmeans(niter=1, nredo=1).fit(data, seed=1)
    assert seen[0]["seed"] == seen[1]["seed"] != seen[2]["seed"]
    assert 1234 not in {kw["seed"] for kw in seen}  # faiss's fixed default never leaks through
    assert seen[0]["max_points_per_centroid"] == 256 and seen[0]["niter"] == 1 and seen[0]["nredo"] == 1
    assert torch.equal(a.centroids_, b.centroids_) and not torch.equal(a.centroids_, c.centroids_)
    batch = next(iter(data.batches(4)))
    assert torch.equal(a.predict(batch).scores, b.predict(batch).scores)


def test_predict_is_nearest_centroid_of_the_reference_features():
    """Oracle: the spec's pipeline written out with full tensors and NumPy (upsample, concatenate,
    normalise, nearest centroid, nearest-neighbour upsampling of the label map)."""
    data = synthetic(num_test=6, image_size=32)
    method = tiny_kmeans(feature_size=16).fit(data, seed=3)
    batch = next(iter(data.batches(6)))
    maps = method.predict(batch)
    assert maps.kind == "probs" and maps.image_size == (32, 32) and maps.scores.shape == (6, 4, 32, 32)
    torch.testing.assert_close(maps.scores.sum(1), torch.ones(6, 32, 32))

    feats = method.extractor_.backbone(batch.images)
    feats = {k: v.half().float() for k, v in feats.items()}  # the extractor's float16 rounding
    x = torch.cat([F.interpolate(feats[k], size=(16, 16), mode="bilinear", align_corners=False)
                   for k in ("relu5_2", "relu5_4")], 1).numpy()
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    c = method.centroids_.numpy()
    d = ((x[:, None] - c[None, :, :, None, None]) ** 2).sum(2)  # (N, K, 16, 16)
    labels = d.argmin(1).repeat(2, axis=1).repeat(2, axis=2)
    agree = (maps.part_labels().numpy() == labels).mean()
    assert agree > 0.999, agree  # (ties between equidistant centroids aside)

    # Soft maps are fuzzy-c-means memberships with m = 2: u_k proportional to 1 / d_k.
    u = 1.0 / np.maximum(d, 1e-12)
    u = u / u.sum(1, keepdims=True)
    np.testing.assert_allclose(maps.scores.numpy()[:, :, ::2, ::2], u, rtol=1e-3, atol=1e-4)


def test_unseen_images_are_assigned_with_the_fitted_centroids():
    # Parameters as the command line hands them over (text) are accepted.
    method = tiny_kmeans(feature_size="16", layers="relu5_2, relu5_4", niter="5").fit(synthetic(num_test=4), seed=0)
    assert method.settings_["layers"] == ("relu5_2", "relu5_4") and method.settings_["size"] == 16
    other = synthetic(num_test=3, seed=9)
    batch = next(iter(other.batches(3)))
    maps = method.predict(batch)
    assert maps.scores.shape == (3, 4, 32, 32) and torch.isfinite(maps.scores).all()


def test_only_foreground_pixels_are_clustered():
    data = synthetic(num_test=4, image_size=32)
    method = tiny_kmeans(feature_size=16).fit(data, seed=0)
    expected = 0
    for sample in (data[i] for i in range(len(data))):
        blocks = sample.mask.numpy().reshape(16, 2, 16, 2).mean(axis=(1, 3))  # area resampling, by hand
        expected += int((blocks > 0.5).sum())
    assert method.num_foreground_pixels_ == expected
    assert method.num_points_ == min(expected, 4 * 256)
    everything = tiny_kmeans(feature_size=16).fit(synthetic(num_test=4, image_size=32, masks="none"), seed=0)
    assert everything.num_foreground_pixels_ == 4 * 16 * 16


def test_streaming_sample_is_uniform_without_replacement():
    counts = np.zeros(20)
    trials = 1500
    for seed in range(trials):
        sample = km.StreamingSample(5, torch.Generator().manual_seed(seed))
        for start in range(0, 20, 3):
            sample.add(torch.arange(start, min(start + 3, 20)).float()[:, None])
        picked = sample.rows[:, 0].long().numpy()
        assert len(set(picked.tolist())) == 5
        counts[picked] += 1
    freq = counts / trials
    assert np.all(np.abs(freq - 0.25) < 0.05), freq  # 5 of 20: inclusion probability 1/4 for every row


def test_feature_statistics_equal_the_materialised_features():
    g = torch.Generator().manual_seed(0)
    # "b" is finer than "a": at size 9 it is resized outright while "a" goes through its Gram matrix.
    feats = {"a": torch.rand(3, 5, 4, 3, generator=g), "b": torch.rand(3, 7, 8, 6, generator=g)}
    feats["a"][0, :, 1, 1] = 0
    feats["b"][0, :, 2:4, 2:4] = 0  # zero patches: the normalisation's eps case
    centroids = F.normalize(torch.randn(4, 12, generator=g), dim=1)
    for size in (4, 9, 16):
        x = km.pixel_features(feats, ("a", "b"), size)
        n_idx = torch.randint(0, 3, (20,), generator=g)
        pos = (n_idx, torch.randint(0, size, (20,), generator=g), torch.randint(0, size, (20,), generator=g))
        sq, cross, rows = km.feature_statistics(feats, ("a", "b"), size, centroids=centroids, positions=pos)
        torch.testing.assert_close(sq, x.pow(2).sum(1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(cross, torch.einsum("ndhw,kd->nkhw", x, centroids), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(rows, x.permute(0, 2, 3, 1)[pos], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(km.distances_from(sq, cross, centroids), km.squared_distances(x, centroids),
                                   rtol=1e-4, atol=1e-5)


def test_feature_cache_is_reused_across_fits(tmp_path):
    data = synthetic(num_test=4)
    first = tiny_kmeans(feature_size=16)
    first.context = RunContext(cache_dir=tmp_path)
    first.fit(data, seed=0)
    assert first.extractor_.misses == 4 and len(list(tmp_path.glob("*.npy"))) == 8  # 4 images x 2 layers
    second = tiny_kmeans(feature_size=16, num_parts=3)
    second.context = RunContext(cache_dir=tmp_path)
    second.fit(data, seed=0)
    assert second.extractor_.misses == 0 and second.extractor_.hits == 4
    batch = next(iter(data.batches(4)))
    plain = tiny_kmeans(feature_size=16, num_parts=3).fit(data, seed=0)
    assert torch.equal(second.predict(batch).scores, plain.predict(batch).scores)


def test_random_weights_are_announced():
    with pytest.warns(RandomWeightsWarning):
        warnings.simplefilter("always")
        tiny_kmeans(feature_size=8).fit(synthetic(num_test=2), seed=0)
