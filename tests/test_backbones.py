"""VGG backbones (methods/backbones.py) and the feature extractor with its cache (methods/features.py)."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest
import torch
import torchvision

from benchmark.core.errors import UserError
from benchmark.methods.backbones import (RandomWeightsWarning, VGGFeatures, available_layers, imagenet_weights_path,
                                         layer_info)
from benchmark.methods.features import FeatureExtractor

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def random_vgg(*args, **kwargs) -> VGGFeatures:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return VGGFeatures(*args, weights="random", **kwargs)


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    """A torchvision vgg16 ``features`` state dict with random values (classifier omitted: 60 MB less)."""
    torch.manual_seed(123)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    for module in features:
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.bias, std=0.01)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / "vgg16_features.pth"
    torch.save(state, path)
    return path, features.eval()


def test_layer_names_match_known_torchvision_indices():
    names = available_layers("vgg19")
    assert len(names) == 37 and names[0] == "conv1_1" and names[-1] == "pool5"
    # Hand-checked against torchvision's VGG19 definition (DFF deletes index 36 to end at relu5_4).
    index = {name: i for i, name in enumerate(names)}
    assert (index["relu3_2"], index["relu5_2"], index["relu5_4"]) == (13, 31, 35)
    v16 = available_layers("vgg16")
    assert len(v16) == 31 and v16.index("relu5_3") == 29 and "relu5_4" not in v16
    assert layer_info("vgg19", "relu3_2") == (256, 4) and layer_info("vgg19", "relu5_4") == (512, 16)


def test_file_weights_match_a_plain_torchvision_pass(vgg16_file):
    path, reference = vgg16_file
    backbone = VGGFeatures("vgg16", weights=str(path), layers=("relu5_3", "relu3_2"))
    assert len(backbone.features) == 30  # stops after relu5_3 (index 29)
    assert backbone.weights_id == "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    images = torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(0))
    feats = backbone(images)
    assert list(feats) == ["relu5_3", "relu3_2"]
    with torch.no_grad():
        x = (images - MEAN) / STD
        expected_32 = reference[:14](x)
        expected_53 = reference[:30](x)
    torch.testing.assert_close(feats["relu3_2"], expected_32, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(feats["relu5_3"], expected_53, rtol=1e-5, atol=1e-5)
    assert feats["relu5_3"].shape == (2, 512, 3, 2)


def test_conv_tap_is_not_overwritten_by_inplace_relu():
    backbone = random_vgg("vgg19", layers=("conv3_2", "relu3_2"), seed=1)
    feats = backbone(torch.rand(1, 3, 32, 32))
    assert (feats["conv3_2"] < 0).any()
    torch.testing.assert_close(feats["relu3_2"], feats["conv3_2"].clamp(min=0))


def test_random_weights_are_seeded_loud_and_alive():
    with pytest.warns(RandomWeightsWarning, match="RANDOM"):
        a = VGGFeatures("vgg19", weights="random", layers=("relu5_4",), seed=0)
    b = random_vgg("vgg19", layers=("relu5_4",), seed=0)
    c = random_vgg("vgg19", layers=("relu5_4",), seed=1)
    assert a.weights_id == "random:seed0" and c.weights_id == "random:seed1"
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    fa, fb, fc = a(images)["relu5_4"], b(images)["relu5_4"], c(images)["relu5_4"]
    assert torch.equal(fa, fb) and not torch.equal(fa, fc)
    # He init keeps relu5_4 alive after 16 conv+ReLU layers and 4 max-pools (not all zero, not exploding).
    assert (fa > 0).float().mean() > 0.2
    assert 1e-2 < fa.mean() < 1e2
    # Different images give different features (the net is not constant).
    assert (fa[0] - fa[1]).abs().mean() > 1e-3 * fa.abs().mean()


def test_frozen_and_eval():
    backbone = random_vgg("vgg16", layers=("relu2_2",))
    backbone.train()
    assert not backbone.training and all(not p.requires_grad for p in backbone.parameters())


def test_errors_are_user_errors(tmp_path, vgg16_file, monkeypatch):
    with pytest.raises(UserError, match="relu5_4"):
        VGGFeatures("vgg16", weights="random", layers=("relu5_4",))
    with pytest.raises(UserError, match="vgg11"):
        VGGFeatures("vgg11", weights="random")
    with pytest.raises(UserError, match="neither"):
        VGGFeatures("vgg16", weights=str(tmp_path / "nope.pth"), layers=("relu1_1",))
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="garbage.pth"):
        VGGFeatures("vgg16", weights=str(bad), layers=("relu1_1",))
    path, _ = vgg16_file
    state = torch.load(path, weights_only=True)
    state.pop("features.28.bias")
    state["head.weight"] = torch.zeros(1)
    state["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(UserError) as info:
        VGGFeatures("vgg16", weights=str(broken), layers=("relu1_1",))
    message = str(info.value)
    assert "features.28.bias" in message and "head.weight" in message and "features.0.weight" in message


def test_missing_imagenet_weights_explain_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(UserError) as info:
        VGGFeatures("vgg19", weights="imagenet")
    message = str(info.value)
    assert str(tmp_path) in message and "vgg19-dcbb9e9d.pth" in message
    assert "TORCH_HOME" in message and "weights=PATH" in message and "PARTBENCH_ALLOW_DOWNLOAD" in message


def test_imagenet_weights_read_from_local_hub_cache(tmp_path, monkeypatch, vgg16_file):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = imagenet_weights_path("vgg16")
    assert target == tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(vgg16_file[0].read_bytes())
    backbone = VGGFeatures("vgg16", weights="imagenet", layers=("relu1_2",))
    assert backbone.weights_id == "imagenet:vgg16"
    torch.testing.assert_close(backbone.features[0].weight, vgg16_file[1][0].weight)


def test_extractor_cache_roundtrip(tmp_path):
    backbone = random_vgg("vgg19", layers=("relu3_2", "relu5_4"))
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    ids = ["a", "b", "c"]
    plain = FeatureExtractor(backbone)(images, ids)
    cached = FeatureExtractor(backbone, cache_dir=tmp_path)
    cold = cached(images[:2], ids[:2])
    assert (cached.hits, cached.misses) == (0, 2)
    warm = cached(images, ids)  # a, b from the cache, c computed
    assert (cached.hits, cached.misses) == (2, 3)
    again = cached(images, ids)  # all three from the cache
    assert (cached.hits, cached.misses) == (5, 3)
    remembered = FeatureExtractor(backbone, memory_budget_mb=1)
    first = remembered(images, ids)
    second = remembered(images, ids)
    assert remembered.misses == 3 and all(torch.equal(first[k], second[k]) for k in first)
    small = FeatureExtractor(backbone, memory_budget_mb=0.04)  # room for one image (36 KB) only
    small(images, ids)
    small(images, ids)
    assert small.misses == 5
    for layer in ("relu3_2", "relu5_4"):
        # Features pass through float16 whether cached or not: a warm cache returns exactly what was computed.
        assert torch.equal(again[layer], warm[layer]) and torch.equal(warm[layer][:2], cold[layer])
        assert torch.equal(cold[layer], FeatureExtractor(backbone)(images[:2])[layer])
        # (CPU convolutions may differ in the last bits between batch sizes: compare across batches loosely.)
        torch.testing.assert_close(warm[layer], plain[layer], rtol=2e-3, atol=1e-3)
        torch.testing.assert_close(plain[layer], backbone(images)[layer], rtol=1e-3, atol=1e-3)
    sidecars = sorted(tmp_path.glob("*.json"))
    assert len(sidecars) == 6 and len(list(tmp_path.glob("*.npy"))) == 6
    meta = json.loads(sidecars[0].read_text())
    desc = meta["description"]
    assert meta["dtype"] == "float16"
    assert desc["weights"] == "random:seed0" and desc["backbone"] == "vgg19" and desc["transform"]
    assert desc["image"]["size"] == [32, 32] and len(desc["image"]["digest"]) == 16
    # A changed image (same id) is a miss, not a stale hit.
    changed = images.clone()
    changed[0, 0, 0, 0] += 0.5
    cached(changed[:1], ids[:1])
    assert cached.misses == 4
    stored = np.load(tmp_path / f"{meta['key']}.npy")
    assert stored.dtype == np.float16 and stored.ndim == 3


def test_extractor_input_size(tmp_path):
    backbone = random_vgg("vgg19", layers=("relu5_4",))
    extractor = FeatureExtractor(backbone, input_size=64)
    out = extractor(torch.rand(2, 3, 40, 50))
    assert out["relu5_4"].shape == (2, 512, 4, 4)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_reduced_precision_on_gpu_stays_within_tolerance():
    backbone = random_vgg("vgg19", layers=("relu3_2", "relu5_4")).cuda()
    images = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(0)).cuda()
    results = {}
    for precision in ("fp32", "tf32", "bf16"):
        backbone.precision = precision
        results[precision] = backbone(images)
    assert backbone.resolved_precision() == "bf16"
    for precision, tolerance in (("tf32", 2e-2), ("bf16", 6e-2)):
        for layer in ("relu3_2", "relu5_4"):
            exact, approx = results["fp32"][layer], results[precision][layer]
            assert approx.dtype == torch.float32
            relative = float((approx - exact).norm() / exact.norm())
            assert relative < tolerance, (precision, layer, relative)
    backbone.precision = "auto"
    assert backbone.resolved_precision() == "tf32"
