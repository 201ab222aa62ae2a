"""DINO/DINOv2 ViT backbones (methods/vit.py, methods/feature_backbones.py) and their use by kmeans and dff.

Oracles are timm's own model (same weights) observed from outside: a forward hook on the attention's
``qkv`` projection for the facets, and timm's ``dynamic_img_size=True`` forward for the position-embedding
interpolation. Everything runs with random weights on tiny images.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F

from benchmark.core.errors import UserError
from benchmark.methods import feature_backbones as backbones
from benchmark.methods import vit
from benchmark.methods.backbones import RandomWeightsWarning
from benchmark.methods.features import FeatureExtractor
from benchmark.runner import RunConfig, run

pytestmark = pytest.mark.filterwarnings("ignore::benchmark.methods.backbones.RandomWeightsWarning")
TINY = {"num_train": 4, "num_test": 6, "image_size": 64}


def random_vit(backbone="dino_vits8", **kwargs) -> vit.ViTFeatures:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        return vit.ViTFeatures(backbone, "random", **kwargs)


@pytest.fixture(scope="module")
def dino():
    return random_vit("dino_vits8", blocks=(3, -1), facet="key", seed=1)


@pytest.fixture(scope="module")
def dinov2():
    return random_vit("dinov2_vits14", seed=2)


def timm_twin(backbone: vit.ViTFeatures) -> torch.nn.Module:
    """timm's own model of the same architecture with the same weights, resizing position embeddings itself."""
    model = vit.timm_model(backbone.arch, device="cpu", dynamic_img_size=True)
    model.load_state_dict(backbone.model.state_dict())
    return model


def timm_input(backbone: vit.ViTFeatures, images: torch.Tensor) -> torch.Tensor:
    size = backbone.input_size(*images.shape[-2:])
    x = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
    return (x - backbone.mean) / backbone.std


def as_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    n, _, c = tokens.shape
    return tokens[:, 1:].reshape(n, grid[0], grid[1], c).permute(0, 3, 1, 2)


def test_specs_match_timm_and_defaults():
    for name, spec in vit.VIT_BACKBONES.items():
        model = vit.timm_model(name)  # meta device: no memory, no init
        assert (len(model.blocks), model.patch_embed.proj.stride[0]) == (spec.depth, spec.patch), name
        assert spec.release_file.endswith("_pretrain.pth") and spec.url.startswith("https://dl.fbaipublicfiles.com/")
    assert backbones.BACKBONES == ("vgg19", "vgg16", "dino_vits8", "dino_vitb8", "dinov2_vits14", "dinov2_vitb14")
    assert backbones.resolve("dino_vitb8", None, None, None, ("relu5_4",)) == \
        backbones.Recipe("dino_vitb8", (11,), "key", 8)
    assert backbones.resolve("dinov2_vitb14", None, None, None, ("relu5_4",)) == \
        backbones.Recipe("dinov2_vitb14", (11,), "token", 14)
    assert backbones.resolve("vgg19", None, None, None, ("relu5_2", "relu5_4")).layers == ("relu5_2", "relu5_4")
    assert backbones.resolve("dino_vits8", "2,-1", "value", 4, ()).layers == (2, 11)


@pytest.mark.parametrize("facet", ["query", "key", "value"])
def test_facets_equal_a_hook_on_timms_qkv_split_per_head(dino, facet):
    images = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    ours = random_vit("dino_vits8", blocks=(3, 11), facet=facet, seed=1)
    assert ours.layers == (f"block3.{facet}", f"block11.{facet}")
    feats = ours(images)
    twin = timm_twin(ours)
    captured = {}
    for b in (3, 11):
        twin.blocks[b].attn.qkv.register_forward_hook(lambda _m, _i, out, b=b: captured.__setitem__(b, out))
    with torch.no_grad():
        twin.forward_features(timm_input(ours, images))
    attn = twin.blocks[3].attn
    for b in (3, 11):
        n, t, _ = captured[b].shape
        per_head = captured[b].reshape(n, t, 3, attn.num_heads, attn.head_dim)[:, :, ("query", "key", "value").index(facet)]
        expected = as_map(per_head.reshape(n, t, -1), (5, 7))
        assert feats[f"block{b}.{facet}"].shape == (2, 384, 5, 7)
        torch.testing.assert_close(feats[f"block{b}.{facet}"], expected, rtol=1e-5, atol=1e-5)
    # The default DINO recipe is the last block's keys; the pass stops there (no later block runs).
    assert dino.layers == ("block3.key", "block11.key")


@pytest.mark.parametrize("size", [(42, 70), (98, 56)])
def test_position_embeddings_follow_timms_dynamic_size_path(dinov2, size):
    """DINOv2's native grid is 37x37 (518 px): a 42x70 image is a 3x5 grid, down- and up-sampled."""
    images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(3))
    feats = dinov2(images)["block11.token"]  # DINOv2's default: last block tokens after the final norm
    twin = timm_twin(dinov2)
    with torch.no_grad():
        expected = as_map(twin.forward_features(timm_input(dinov2, images)), (size[0] // 14, size[1] // 14))
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-5)
    # The pure function equals timm's resampler on its own.
    from timm.layers import resample_abs_pos_embed

    pos = dinov2.model.pos_embed
    ours = vit.interpolate_pos_embed(pos, 1, (37, 37), (3, 5))
    torch.testing.assert_close(ours, resample_abs_pos_embed(pos, new_size=(3, 5), old_size=(37, 37), num_prefix_tokens=1))


def test_any_input_size_is_resized_to_the_patch_grid(dino):
    assert dino.input_size(61, 64) == (64, 64) and dino.input_size(3, 100) == (8, 104)
    feats = dino(torch.rand(1, 3, 61, 64))
    assert feats["block11.key"].shape == (1, 384, 8, 8)


def test_overlapping_patches_are_resampled_to_uniform_cells():
    # Patch centres 4 + 2i (p=8, stride 2, 32 px: 13 patches) -> 16 cells with centres 1, 3, ..., 31.
    matrix = vit.centre_resample_matrix(16, 13, 32, 8, 2)
    centres = 4 + 2 * torch.arange(13.0)
    expected = ((torch.arange(16.0) + 0.5) * 2).clamp(4, 28)
    torch.testing.assert_close(matrix @ centres, expected)
    torch.testing.assert_close(matrix.sum(1), torch.ones(16))
    # stride = patch: the identity (no resampling).
    torch.testing.assert_close(vit.centre_resample_matrix(4, 4, 32, 8, 8), torch.eye(4))
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    dense = random_vit("dino_vits8", blocks=(0,), facet="key", stride=4, seed=1)
    plain = random_vit("dino_vits8", blocks=(0,), facet="key", seed=1)
    f_dense, f_plain = dense(images)["block0.key"], plain(images)["block0.key"]
    assert f_dense.shape == (1, 384, 8, 8) and f_plain.shape == (1, 384, 4, 4)
    # Without position embeddings, block 0's keys are a function of each patch's own pixels: the dense grid's
    # even patches (stride 4, every 2nd) are exactly the non-overlapping patches.
    for model in (dense, plain):
        model.model.pos_embed.zero_()
        model.model.cls_token.zero_()
    raw = {}
    dense.model.blocks[0].attn.qkv.register_forward_hook(lambda _m, _i, out: raw.__setitem__("qkv", out))
    dense(images)
    keys = as_map(raw["qkv"][:, :, 384:768], (7, 7))
    torch.testing.assert_close(keys[..., ::2, ::2], plain(images)["block0.key"], rtol=1e-5, atol=1e-5)
    assert dense.identity()["stride"] == 4 and plain.identity()["stride"] == 8


def test_random_weights_are_seeded_and_loud():
    with pytest.warns(RandomWeightsWarning, match="RANDOM"):
        a = vit.ViTFeatures("dinov2_vits14", "random", seed=0)
    b, c = random_vit("dinov2_vits14", seed=0), random_vit("dinov2_vits14", seed=1)
    images = torch.rand(1, 3, 28, 28)
    assert torch.equal(a(images)["block11.token"], b(images)["block11.token"])
    assert not torch.equal(a(images)["block11.token"], c(images)["block11.token"])
    assert a.weights_id == "random:seed0" and not a.training and not any(p.requires_grad for p in a.parameters())


# -- weights -----------------------------------------------------------------------------------------------
@pytest.fixture()
def no_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    return tmp_path


def release_layout(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A synthetic DINOv2 release state dict: timm's keys plus the masked-image-modelling token."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["mask_token"] = torch.zeros(1, state["cls_token"].shape[-1])
    return state


def test_release_key_mapping_and_strict_check(dinov2):
    from benchmark.methods.weights import check_state_dict  # the one state-dict check, as the loader uses it

    state = release_layout(dinov2.model)
    mapped = vit.to_timm_state_dict({f"module.backbone.{k}": v for k, v in state.items()})
    assert set(mapped) == set(dinov2.model.state_dict())  # mask_token dropped, prefixes stripped
    check_state_dict(dinov2.model.state_dict(), mapped, source="x", target="timm's dinov2_vits14")
    broken = dict(mapped)
    broken.pop("blocks.3.ls1.gamma")
    broken["blocks.0.attn.qkv.weight"] = torch.zeros(3, 3)
    broken["extra.weight"] = torch.zeros(1)
    with pytest.raises(UserError) as info:
        check_state_dict(dinov2.model.state_dict(), broken, source="weights file w.pth",
                         target="timm's dinov2_vits14")
    message = str(info.value)
    assert "blocks.3.ls1.gamma" in message and "extra.weight" in message and "blocks.0.attn.qkv.weight" in message
    with pytest.raises(UserError, match="register tokens"):
        vit.to_timm_state_dict({**state, "register_tokens": torch.zeros(1, 4, 384)})


def test_pretrained_weights_from_the_torch_cache_timm_cache_or_a_file(no_caches, dinov2):
    from safetensors.torch import save_file

    images = torch.rand(1, 3, 28, 42, generator=torch.Generator().manual_seed(5))
    expected = dinov2(images)["block11.token"]
    # (1) the release file in the torch hub cache, in the release layout
    target = vit.release_weights_path("dinov2_vits14")
    assert target == no_caches / "torch" / "hub" / "checkpoints" / "dinov2_vits14_pretrain.pth"
    target.parent.mkdir(parents=True)
    torch.save(release_layout(dinov2.model), target)
    loaded = vit.ViTFeatures("dinov2_vits14", "pretrained")
    assert loaded.weights_id == "dinov2:dinov2_vits14" == backbones.weights_identity("dinov2_vits14", "pretrained")
    torch.testing.assert_close(loaded(images)["block11.token"], expected)
    target.unlink()
    # (2) timm's Hugging Face cache (refs/main -> snapshot/model.safetensors)
    repo = no_caches / "hf" / "hub" / "models--timm--vit_small_patch14_dinov2.lvd142m"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    timm_file = repo / "snapshots" / "abc123" / "model.safetensors"
    save_file({k: v.contiguous() for k, v in dinov2.model.state_dict().items()}, str(timm_file))
    assert vit.timm_hub_weights_path("dinov2_vits14") == timm_file
    torch.testing.assert_close(vit.ViTFeatures("dinov2_vits14", "dinov2")(images)["block11.token"], expected)
    # (3) -p weights=PATH, identity = the file's digest
    from_file = vit.ViTFeatures("dinov2_vits14", str(timm_file))
    assert from_file.weights_id.startswith("file:") and len(from_file.weights_id) == len("file:") + 16


def test_missing_weights_is_one_error_with_the_fetch_commands(no_caches):
    with pytest.raises(UserError) as info:
        vit.ViTFeatures("dino_vits8", "pretrained")
    message = str(info.value)
    for needle in ("https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
                   "timm.create_model('vit_small_patch8_224.dino', pretrained=True)", "TORCH_HOME",
                   "PARTBENCH_ALLOW_DOWNLOAD", "-p weights=PATH", str(no_caches / "torch")):
        assert needle in message, needle
    # Through the method (the CLI on `synthetic` falls back to random weights by design).
    from benchmark.core.registry import METHODS

    with pytest.raises(UserError, match="DINO weights for dino_vits8 are not available offline"):
        METHODS.get("kmeans")(backbone="dino_vits8").fit(None, seed=0)


@pytest.mark.parametrize("params, message", [
    ({"backbone": "vgg19", "facet": "key"}, "applies to ViT backbones only"),
    ({"backbone": "dino_vits8", "layers": "relu5_4"}, "reads transformer blocks by index"),
    ({"backbone": "dino_vits8", "layers": 12}, "blocks 0..11"),
    ({"backbone": "dino_vits8", "stride": 9}, "stride must be in 1..8"),
    ({"backbone": "dino_vits8", "facet": "attn"}, "unknown ViT facet"),
    ({"backbone": "dino_vits8", "weights": "imagenet"}, "self-supervised DINO weights"),
    ({"backbone": "vgg19", "weights": "dino"}, "names a ViT release"),
    ({"backbone": "resnet50"}, "unknown backbone 'resnet50'"),
])
def test_bad_backbone_parameters_are_user_errors(params, message):
    from benchmark.core.registry import METHODS

    method = METHODS.get("kmeans")(**{"weights": "random", **params})
    with pytest.raises(UserError, match=message):
        method.weights_id()
        method._settings()


# -- the methods, end to end ------------------------------------------------------------------------------
def _run(method: str, params: dict, seed: int):
    config = RunConfig(method=method, dataset="synthetic", seed=seed, num_parts=3, params=params,
                       dataset_options=TINY, metrics=("fg_nmi",), device="cpu", batch_size=3)
    return {row["metric"]: row for row in run(config, out_dir=None).rows}


@pytest.mark.parametrize("method, params", [
    ("kmeans", {"backbone": "dino_vits8", "weights": "random", "niter": 10, "nredo": 1, "stride": 4}),
    ("dff", {"backbone": "dinov2_vits14", "weights": "random", "max_iter": 30}),
])
def test_methods_run_end_to_end_deterministic_per_seed(method, params):
    first, again, other = _run(method, params, 0), _run(method, params, 0), _run(method, params, 1)
    assert {m: r["value"] for m, r in first.items()} == {m: r["value"] for m, r in again.items()}
    assert {m: r["value"] for m, r in first.items()} != {m: r["value"] for m, r in other.items()}
    row = first["fg_nmi"]
    recorded = json.loads(row["method_params"])
    assert recorded["backbone"] == params["backbone"] and row["weights"] == "random:seed0"
    assert recorded["stride"] == params.get("stride")
    assert 0 <= row["value"] <= 1


def test_dff_reads_one_layer():
    from benchmark.core.registry import METHODS

    with pytest.raises(UserError, match="factorises one layer"):
        METHODS.get("dff")(backbone="dino_vits8", weights="random", layer=(3, 11)).fit(None, seed=0)


def test_dff_factorises_the_nonnegative_split_of_normalised_vit_features():
    f = torch.randn(2, 5, 3, 4)
    parts = vit.nonnegative_parts(f)
    assert parts.shape == (2, 10, 3, 4) and (parts >= 0).all()
    torch.testing.assert_close(parts[:, :5] - parts[:, 5:], F.normalize(f, dim=1))


def test_feature_cache_keys_hold_the_recipe(tmp_path):
    a = FeatureExtractor(random_vit("dino_vits8", blocks=(0,), facet="key"), cache_dir=tmp_path)
    b = FeatureExtractor(random_vit("dino_vits8", blocks=(0,), facet="key", stride=4), cache_dir=tmp_path)
    assert a._description("block0.key", "x", "d", (8, 8)) != b._description("block0.key", "x", "d", (8, 8))


def test_bench_features_runs_for_a_vit_against_timm():
    import re

    from benchmark.core.registry import BENCHES

    report = BENCHES.get("features")(arch="dino_vits8", images=2, size=32, batch_size=2, layers="5", facet="value")
    assert "dino_vits8 value of block(s) 5" in report and "timm forward_features" in report
    difference = float(re.search(r"max relative difference of the last image's features ([0-9.e+-]+)", report).group(1))
    assert difference < 2e-3  # float16 rounding only: the same features as timm's forward
    with pytest.raises(UserError, match="overlapping"):
        BENCHES.get("features")(arch="dino_vits8", stride=4)


@pytest.mark.parametrize("method", ["kmeans", "dff"])
def test_missing_weights_names_the_chosen_backbone(method, tmp_path, monkeypatch):
    """`benchmark list` and run's synthetic fallback ask the method what it misses: for a ViT backbone that is the
    DINO/DINOv2 release, not the VGG19 ImageNet file (even when the VGG file is present)."""
    from benchmark.core.registry import METHODS
    from benchmark.methods.backbones import imagenet_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    cls = METHODS.get(method)
    vgg_file = imagenet_weights_path("vgg19")
    vgg_file.parent.mkdir(parents=True, exist_ok=True)
    vgg_file.write_bytes(b"present")
    assert cls.missing_weights({}) is None
    assert "dino_vits8" in cls.missing_weights({"backbone": "dino_vits8"})
    assert cls.missing_weights({"backbone": "dino_vits8", "weights": "random"}) is None
