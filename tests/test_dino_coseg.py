"""``dino-coseg`` (methods/dino_coseg.py): each step against an independent reading of Amir et al.'s release.

How the expected values are made (no reference code is carried here):

* Descriptors and saliency: timm's own ViT forward (``dynamic_img_size=True``, the patch embedding's stride
  set to 4 as the release does to its DINO model) with forward hooks on the attention of the blocks, same
  random weights -- the release hooks the same tensors of DINO's model; the nearest resizing of the
  low-resolution saliency map is PIL's ``Image.resize(NEAREST)`` of a float image, what the release calls.
* The clustering steps: hand-made known-answer cases, and :func:`release_reading`, a NumPy re-reading of the
  release's two stages written from its documented behaviour (loops over images and clusters as it does),
  run on the same descriptors with the same faiss seeds.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.core.errors import UserError
from benchmark.core.registry import DATASETS, METHODS
from benchmark.core.seeding import derive_seed
from benchmark.methods import dino_coseg as dc
from benchmark.methods import vit
from helpers import sklearn_fg_nmi as fg_nmi

pytestmark = pytest.mark.filterwarnings("ignore::benchmark.methods.backbones.RandomWeightsWarning")


@pytest.fixture(scope="module")
def features():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dc.CosegFeatures("random", load_size=None, low_res_saliency=False)


def timm_twin(features: dc.CosegFeatures, stride: int):
    """timm's ViT-S/8 with the same weights, its patch embedding run at ``stride``, attention hooks."""
    model = vit.timm_model(dc.BACKBONE, device="cpu", dynamic_img_size=True)
    model.load_state_dict(features.vit.model.state_dict())
    model.patch_embed.proj.stride = (stride, stride)
    model.patch_embed.img_size = None  # no size checks: the release keeps the patches that fit, as a conv does
    captured = {}
    for index, block in enumerate(model.blocks):
        block.attn.fused_attn = False  # so that the attention probabilities pass through attn_drop
        block.attn.qkv.register_forward_hook(lambda _m, _i, out, index=index: captured.__setitem__(("qkv", index), out))
        block.attn.attn_drop.register_forward_hook(
            lambda _m, _i, out, index=index: captured.__setitem__(("attn", index), out))
    return model.eval(), captured


def normalised(images):
    return (images - torch.tensor(vit.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(vit.IMAGENET_STD).view(1, 3, 1, 1)


def release_saliency(attn):
    """The release's saliency from one block's attention probabilities ``(N, heads, T, T)``."""
    cls = attn[:, [0, 2, 4, 5], 0, 1:].mean(dim=1)
    low, high = cls.min(dim=1, keepdim=True).values, cls.max(dim=1, keepdim=True).values
    return (cls - low) / (high - low)


def test_registered_with_tags_and_release_defaults():
    cls = METHODS.get("dino-coseg")
    assert cls.transductive and cls.provides_background and not cls.uses_masks and not cls.requires_training
    assert cls.supervision == "none"
    d = cls.param_defaults()
    assert (d["layer"], d["facet"], d["stride"], d["load_size"]) == (11, "key", 4, 224)
    assert (d["thresh"], d["votes_percentage"], d["sample_interval"], d["elbow"]) == (0.065, 75, 100, 0.975)
    assert (d["max_clusters"], d["niter"], d["nredo"], d["low_res_saliency"], d["num_parts"]) == (14, 300, 10, True, 4)
    assert cls().weights_id() == "dino:dino_vits8" and cls(weights="random").weights_id() == "random:seed0"


def test_descriptors_are_timm_keys_at_stride_4_on_the_release_grid(features):
    # 50 px is no multiple of 4 or 8: the release keeps the 1 + (50 - 8) // 4 = 11 patches that fit.
    images = torch.rand(2, 3, 50, 42, generator=torch.Generator().manual_seed(0))
    ours = features(images)
    assert ours["descriptors"].shape == (2, 384, 11, 9) and ours["saliency"].shape == (2, 1, 11, 9)
    model, captured = timm_twin(features, 4)
    with torch.no_grad():
        model.forward_features(normalised(images))
    keys = captured[("qkv", 11)].chunk(3, dim=-1)[1][:, 1:]  # (N, T, heads * head_dim), heads side by side
    expected = keys.reshape(2, 11, 9, 384).permute(0, 3, 1, 2)
    torch.testing.assert_close(ours["descriptors"], expected, atol=1e-5, rtol=1e-4)
    # Without low-resolution saliency the saliency comes from the same stride-4 pass.
    torch.testing.assert_close(ours["saliency"].flatten(1), release_saliency(captured[("attn", 11)]),
                               atol=1e-5, rtol=1e-4)


def test_low_resolution_saliency_is_the_half_size_map_resized_like_pil_nearest(features):
    from PIL import Image

    low_res = dc.CosegFeatures("random", load_size=64, low_res_saliency=True)
    images = torch.rand(2, 3, 80, 64, generator=torch.Generator().manual_seed(1))
    ours = low_res(images)
    # Shorter side to 64 (80x64 -> 80x64), descriptors 1 + (80 - 8) // 4 = 19 by 15; saliency at 40x32, stride 8.
    assert ours["descriptors"].shape[-2:] == (19, 15)
    half = F.interpolate(images, size=(40, 32), mode="bilinear", align_corners=False, antialias=True)
    model, captured = timm_twin(features, 8)
    with torch.no_grad():
        model.forward_features(normalised(half))
    small = release_saliency(captured[("attn", 11)]).reshape(2, 5, 4).numpy()
    for i in range(2):
        resized = np.array(Image.fromarray(small[i].astype(np.float32)).resize((15, 19), Image.NEAREST))
        np.testing.assert_allclose(ours["saliency"][i, 0].numpy(), resized, atol=1e-5, rtol=1e-4)


def test_without_a_load_size_the_low_resolution_saliency_runs_at_the_image_size(features, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(features, "low_res_saliency", True)
    images = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(2))
    ours = features(images)
    assert ours["descriptors"].shape[-2:] == (9, 11)  # 1 + (40 - 8) // 4, 1 + (48 - 8) // 4
    model, captured = timm_twin(features, 8)
    with torch.no_grad():
        model.forward_features(normalised(images))  # 5 x 6 patches at the plain stride, no resizing
    small = release_saliency(captured[("attn", 11)]).reshape(5, 6).numpy()
    resized = np.array(Image.fromarray(small.astype(np.float32)).resize((11, 9), Image.NEAREST))
    np.testing.assert_allclose(ours["saliency"][0, 0].numpy(), resized, atol=1e-5, rtol=1e-4)


def test_load_shape_resizes_the_shorter_side_like_torchvision():
    assert dc.load_shape(300, 400, 224) == (224, 298) and dc.load_shape(400, 300, 224) == (298, 224)
    assert dc.load_shape(64, 64, 224) == (224, 224) and dc.load_shape(50, 70, None) == (50, 70)
    assert dc.grid_shape(224, 224, 8, 4) == (55, 55) and dc.grid_shape(112, 112, 8, 8) == (14, 14)


# -- the clustering steps: known answers -------------------------------------------------------------------------
def test_elbow_keeps_the_first_k_that_improves_too_little():
    assert dc.elbow_stop([1.0, 0.5, 0.49, 0.3], 0.975) == 2  # 0.49 > 0.975 * 0.5: stop at k = 3 and keep it
    assert dc.elbow_stop([1.0, 0.5, 0.4875, 0.3], 0.975) is None  # equal is not above: no stop
    assert dc.elbow_stop([1.0, 0.99], 0.975) == 1
    assert dc.elbow_stop([1.0], 0.975) is None


def test_every_nth_is_python_slicing_of_each_row():
    mask = torch.tensor([[True, False, True, True, True, False, True],
                         [False, False, False, False, False, False, False],
                         [True, True, True, True, True, True, True]])
    for interval in (1, 2, 3, 100):
        picked = dc.every_nth(mask, interval)
        for row, keep in zip(mask, picked):
            positions = [i for i, m in enumerate(row.tolist()) if m]
            assert [i for i, m in enumerate(keep.tolist()) if m] == positions[::interval]


def test_cluster_votes_count_images_where_the_mean_saliency_exceeds_the_threshold():
    labels = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 2, 2]])
    saliency = torch.tensor([[0.1, 0.0, 0.2, 0.2], [0.13, 0.0, 0.06, 0.07], [0.5, 0.5, 0.5, 0.5]])
    # image 0: cluster 0 mean 0.05 (no), cluster 1 mean 0.2 (yes); image 1: 0.13 (yes), 0.0433 (no);
    # image 2: only cluster 2 (yes); absent clusters never vote.
    assert dc.cluster_votes(labels, saliency, 4, 0.065).tolist() == [1, 1, 1, 0]
    assert dc.salient_clusters(torch.tensor([3, 4, 2]), 5, 75).tolist() == [False, True, False]  # ceil(3.75) = 4
    assert dc.salient_clusters(torch.tensor([3, 4]), 4, 75).tolist() == [True, True]  # exactly 3 of 4


def test_distances_put_the_nearest_background_centroid_first():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    parts = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    background = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    d = dc.coseg_distances(x, parts, background)
    expected = torch.tensor([[2.0, 0.0, 0.8], [0.0, 2.0, 0.4]])
    torch.testing.assert_close(d, expected)


# -- the two stages against a NumPy re-reading of the release -------------------------------------------------------
class ToyFeatures(torch.nn.Module):
    """A stand-in backbone for the clustering tests: 6-d descriptors on a 6x6 grid from the image's 4x4 cells
    (mean colour plus fixed random projections), saliency = the green channel's mean scaled to [0, 1] per image.
    Values are float16-exact, as the feature cache stores them."""

    layers = (dc.DESCRIPTORS, dc.SALIENCY)

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.register_buffer("projection", torch.randn(3, 3, generator=torch.Generator().manual_seed(5)))

    @property
    def device(self):
        return self.projection.device

    def identity(self):
        return {"toy": 1}

    def forward(self, images):
        cells = F.adaptive_avg_pool2d(images.float(), 6)
        mixed = torch.einsum("nchw,cd->ndhw", cells, self.projection)
        descriptors = torch.cat([cells, mixed], dim=1).half().float()
        green = cells[:, 1:2]
        low, high = green.amin((2, 3), keepdim=True), green.amax((2, 3), keepdim=True)
        saliency = ((green - low) / (high - low).clamp_min(1e-6)).half().float()
        return {dc.DESCRIPTORS: descriptors, dc.SALIENCY: saliency}


def release_reading(descriptors, saliency, *, num_parts, thresh, votes_percentage, interval, elbow, max_clusters,
                    niter, nredo, seed):
    """The release's two stages on per-image ``(T, C)`` descriptors and ``(T,)`` saliency (NumPy, faiss)."""
    import faiss

    def l2(x):
        x = np.ascontiguousarray(x, dtype=np.float32).copy()
        faiss.normalize_L2(x)
        return x

    everything = l2(np.concatenate(descriptors))
    sampled = l2(np.concatenate([d[::interval] for d in descriptors]))
    means = []
    for k in range(1, max_clusters + 1):
        stage1 = faiss.Kmeans(sampled.shape[1], k, niter=niter, nredo=nredo,
                              seed=derive_seed(seed, "dino-coseg", "stage1", k) % (2**31 - 1))
        stage1.train(sampled)
        dist, labels = stage1.index.search(everything, 1)
        means.append(dist.sum() / everything.shape[0])
        if len(means) > 1 and means[-1] > elbow * means[-2]:
            break
    per_image = np.split(labels[:, 0], np.cumsum([len(d) for d in descriptors])[:-1])
    votes = np.zeros(k)
    for image_labels, image_saliency in zip(per_image, saliency):
        for label in range(k):
            if (image_labels == label).any() and image_saliency[image_labels == label].mean() > thresh:
                votes[label] += 1
    salient = np.where(votes >= math.ceil(len(descriptors) * votes_percentage / 100))[0]
    foreground = [d[np.isin(lab, salient)] for d, lab in zip(descriptors, per_image)]
    fg_sampled = l2(np.concatenate([f[::interval] for f in foreground]))
    stage2 = faiss.Kmeans(fg_sampled.shape[1], num_parts, niter=niter, nredo=nredo,
                          seed=derive_seed(seed, "dino-coseg", "stage2") % (2**31 - 1))
    stage2.train(fg_sampled)
    background = stage1.centroids[[i for i in range(k) if i not in salient]]
    final = []
    for d in descriptors:
        x = l2(d)
        to_parts = ((x[:, None] - stage2.centroids[None]) ** 2).sum(-1)
        to_bg = ((x[:, None] - background[None]) ** 2).sum(-1).min(1, keepdims=True)
        final.append(np.concatenate([to_parts, to_bg], axis=1).argmin(1))  # background = label num_parts
    return k, salient, final


def toy_setup(monkeypatch, num_test=10):
    monkeypatch.setattr(dc, "CosegFeatures", ToyFeatures)
    data = DATASETS.get("synthetic")(split="test", view="full", masks="none", num_test=num_test, image_size=24)
    params = dict(num_parts=3, thresh=0.4, votes_percentage=60, sample_interval=3, elbow=0.9, max_clusters=8,
                  niter=15, nredo=2, load_size=None, batch_size=4)
    return data, params


def test_two_stages_equal_the_release_reading(monkeypatch):
    data, params = toy_setup(monkeypatch)
    method = METHODS.get("dino-coseg")(weights="random", **params).fit(data, seed=3)
    toy = ToyFeatures()
    descriptors, saliency, images = [], [], []
    for batch in data.batches(4):
        out = toy(batch.images)
        descriptors += list(out[dc.DESCRIPTORS].flatten(2).transpose(1, 2).numpy())
        saliency += list(out[dc.SALIENCY].flatten(1).numpy())
        images.append(batch)
    k, salient, final = release_reading(
        descriptors, saliency, num_parts=3, thresh=0.4, votes_percentage=60, interval=3, elbow=0.9,
        max_clusters=8, niter=15, nredo=2, seed=3)
    assert 1 < k and method.num_clusters_ == k
    assert 0 < len(salient) < k and method.salient_clusters_ == salient.tolist()
    ours = []
    for batch in images:
        maps = method.predict(batch)
        assert maps.has_background and maps.num_parts == 3 and maps.scores.shape[-2:] == (24, 24)
        labels = F.interpolate(maps.scores, size=(6, 6), mode="nearest-exact").argmax(1).flatten(1)
        ours += list(((labels - 1) % 4).numpy())  # background channel 0 -> the release's label 3
    np.testing.assert_array_equal(np.stack(ours), np.stack(final))


def test_labels_do_not_depend_on_the_batch_size(monkeypatch):
    data, params = toy_setup(monkeypatch)
    maps = []
    for batch_size in (3, 10):
        method = METHODS.get("dino-coseg")(weights="random", **dict(params, batch_size=batch_size)).fit(data, seed=1)
        maps.append(torch.cat([method.predict(batch).scores.argmax(1) for batch in data.batches(4)]))
    assert torch.equal(maps[0], maps[1])


def test_degenerate_votes_are_errors_not_maps(monkeypatch):
    data, params = toy_setup(monkeypatch, num_test=6)
    with pytest.raises(UserError, match="no foreground"):
        METHODS.get("dino-coseg")(weights="random", **dict(params, thresh=1.0)).fit(data)
    with pytest.raises(UserError, match="no background"):
        METHODS.get("dino-coseg")(weights="random", **dict(params, thresh=-1.0, votes_percentage=1)).fit(data)
    with pytest.raises(UserError, match="sample_interval"):  # 6 images x 1 sampled descriptor < the k needed
        METHODS.get("dino-coseg")(weights="random", **dict(params, sample_interval=100, elbow=1.0)).fit(data)


@pytest.mark.parametrize("params, fragment", [({"stride": 3}, "divide"), ({"facet": "token"}, "key"),
                                              ({"votes_percentage": 0}, "votes_percentage"),
                                              ({"elbow": 1.5}, "elbow"), ({"low_res_saliency": "maybe"}, "true or"),
                                              ({"sample_interval": "x"}, "not a number")])
def test_bad_parameters_are_one_line_errors(params, fragment):
    with pytest.raises(UserError, match=fragment):
        METHODS.get("dino-coseg")(weights="random", **params)._settings()


def test_beats_random_on_synthetic_with_random_vit_weights():
    data = DATASETS.get("synthetic")(split="test", view="fg", num_test=16, image_size=48)
    method = METHODS.get("dino-coseg")(**dict(METHODS.get("dino-coseg").demo_params(), num_parts=4)).fit(data, seed=0)
    score = fg_nmi(method, data)
    baseline = fg_nmi(METHODS.get("random")().fit(data, seed=0), data)
    assert score > baseline + 0.05, (score, baseline)


def test_unavailable_without_faiss(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    reason = METHODS.get("dino-coseg").unavailable_reason()
    assert reason is not None and "faiss" in reason


def test_bench_labels_equal_the_release_way_on_the_same_images():
    from benchmark.core.registry import BENCHES

    report = BENCHES.get("dino-coseg")(images=3, size=48, niter=5, nredo=1, max_clusters=4)
    assert "NMI(partbench labels, baseline labels) = 1.000" in report, report
