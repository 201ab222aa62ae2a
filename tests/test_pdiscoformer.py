"""``pdiscoformer`` (methods/pdiscoformer/): the network against the release, checkpoint loading, prediction.

How the expected values are made (no reference code is carried here): ``RELEASE_*`` below are outputs of the
release's ``IndividualLandmarkViT`` (``models/individual_landmark_vit.py`` of ``ananthu-aniraj/pdiscoformer``,
modulation ``layer_norm``, ``modulation_orth=True``, no Gumbel noise, eval mode), computed once outside this
repository on the inputs that :func:`release_inputs` rebuilds: a 2-block timm ViT with 4 register tokens and
position embeddings on the patches only (the layout of ``vit_base_patch14_reg4_dinov2``, shrunk to 32 dims and
28 px), every tensor of the state dict drawn from ``N(0, 0.5^2)`` in the state dict's key order with a
generator seeded 1, and two images drawn uniformly from the same generator afterwards.
"""

from __future__ import annotations

import pytest
import torch

from benchmark.core.errors import UserError
from benchmark.core.registry import METHODS
from benchmark.core.types import Batch
from benchmark.methods.pdiscoformer import checkpoint as ckpt
from benchmark.methods.pdiscoformer.method import background_first, load_network
from benchmark.methods.pdiscoformer.network import PDiscoFormerNet, build_network

K, CLASSES = 3, 5
RELEASE_MAPS = [0.994642, 0.998101, 0.99197, 0.556146, 0.000175, 0.000407, 0.0011, 0.225159, 0.003338, 0.000122,
                0.001974, 0.03982, 0.001845, 0.001371, 0.004956, 0.178874, 0.971559, 0.997966, 0.977552, 0.963291,
                0.010863, 0.001055, 0.001323, 0.009436, 0.008116, 0.000567, 0.008367, 0.018467, 0.009462, 0.000412,
                0.012758, 0.008806]
RELEASE_SCORES = [0.23547, -0.02544, -0.94644, 0.8607, 0.43377, -1.31305, 1.76007, -1.42508, 1.17029, 2.75257,
                  0.09317, -0.78694, 0.53606, 2.16961, 0.5748, 0.09605, -0.17727, -0.96895, 0.88747, 0.25686,
                  -1.32314, 2.52648, -1.08851, 1.20291, 2.92185, 0.02845, -0.77172, 0.059, 2.24796, 0.57228]
RELEASE_FEATURE_SUMS = [-11.47283, 7.71619, -2.00147, -5.16343, -13.2717, 7.40021, -2.04263, -4.6012]
RELEASE_DIST = [16.9219, 14.7717, 16.9247, 17.8365, 25.5658, 22.5773, 23.729, 18.7407, 22.6189, 23.7828, 23.1443,
                20.4732, 23.2116, 21.3623, 22.2238, 18.9709, 15.0468, 18.6749, 16.2712, 17.947, 19.5403, 25.5269,
                22.8764, 22.5728, 19.8318, 26.1483, 21.032, 21.9014, 19.6784, 26.4674, 20.6102, 22.642]


def tiny_reg_vit():
    """DINOv2-reg's layout (class + 4 register tokens, position embeddings on the patches, LayerScale), tiny."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=28, patch_size=14, embed_dim=32, depth=2, num_heads=2, reg_tokens=4,
                             no_embed_class=True, init_values=1e-5, num_classes=0)


def release_inputs():
    net = PDiscoFormerNet(tiny_reg_vit(), K, CLASSES, modulation="layer_norm")
    g = torch.Generator().manual_seed(1)
    state = {key: torch.randn(value.shape, generator=g) * 0.5 for key, value in net.state_dict().items()}
    images = torch.rand(2, 3, 28, 28, generator=g)
    return net, state, images


def test_network_equals_the_release_on_stored_outputs():
    net, state, images = release_inputs()
    net.load_state_dict(state, strict=True)
    with torch.no_grad():
        out = net.eval()(images)
    torch.testing.assert_close(out.maps.flatten(), torch.tensor(RELEASE_MAPS), atol=2e-6, rtol=0)
    torch.testing.assert_close(out.scores.flatten(), torch.tensor(RELEASE_SCORES), atol=2e-5, rtol=0)
    torch.testing.assert_close(out.features.sum(1).flatten(), torch.tensor(RELEASE_FEATURE_SUMS), atol=2e-5, rtol=0)
    torch.testing.assert_close(out.dist.flatten(), torch.tensor(RELEASE_DIST), atol=2e-4, rtol=0)
    # the maps are a softmax over K + 1 slots; the image logits average the K parts' scores
    torch.testing.assert_close(out.maps.sum(1), torch.ones(2, 2, 2))
    torch.testing.assert_close(out.logits, out.scores.mean(-1))


def test_default_architecture_has_the_release_key_layout():
    net = build_network("vit_base_patch14_reg4_dinov2", 518, 8, 200, device="meta")
    shapes = {key: tuple(value.shape) for key, value in net.state_dict().items()}
    assert set(list(shapes)[:5]) == {"cls_token", "reg_token", "patch_embed.proj.weight", "patch_embed.proj.bias",
                                     "pos_embed"}
    assert shapes["reg_token"] == (1, 4, 768) and shapes["pos_embed"] == (1, 37 * 37, 768)
    assert shapes["fc_landmarks.weight"] == (9, 768, 1, 1)
    assert shapes["modulation.weight"] == shapes["modulation.bias"] == (768, 9)
    assert shapes["fc_class_landmarks.weight"] == (200, 768)
    assert len([k for k in shapes if k.startswith("blocks.")]) == 12 * 14 and "norm.weight" in shapes
    assert not any(k.startswith(("head", "fc_norm", "backbone")) for k in shapes)


# -- checkpoint files ---------------------------------------------------------------------------------------
def random_release_state(backbone: str = "test_vit", size: int = 32, k: int = K, classes: int = CLASSES, seed: int = 0):
    """Random values in the release's key layout for ``backbone`` (what a fixture writes as a release file)."""
    net = build_network(backbone, size, k, classes)
    g = torch.Generator().manual_seed(seed)
    return {key: torch.randn(value.shape, generator=g) * 0.2 for key, value in net.state_dict().items()}


@pytest.fixture(scope="module")
def release_snapshot(tmp_path_factory):
    """A ``<K>_parts_snapshot_best.pt`` as the release's trainer saves it (DDP prefix included)."""
    state = random_release_state()
    path = tmp_path_factory.mktemp("release") / f"{K}_parts_snapshot_best.pt"
    torch.save({"model_state": {f"module.{k}": v for k, v in state.items()}, "optimizer_state": {},
                "scaler_state": {}, "finished_epoch": 27, "epoch_test_accuracies": [0.5]}, path)
    return path, state


def test_release_snapshot_and_safetensors_load_strictly(release_snapshot, tmp_path):
    path, state = release_snapshot
    net = load_network(path, num_parts=K, backbone="test_vit")
    assert net.image_size == (32, 32) and net.num_classes == CLASSES and not net.training
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    from safetensors.torch import save_file

    hf = tmp_path / "model.safetensors"
    save_file(state, str(hf))
    again = load_network(hf, num_parts=K, backbone="test_vit")
    torch.testing.assert_close(again.fc_landmarks.weight, state["fc_landmarks.weight"], rtol=0, atol=0)


def test_the_tiny_register_layout_loads_through_the_strict_check():
    net, state, _ = release_inputs()
    ckpt.load_checkpoint(net, state, source="fixture", target="tiny")
    with pytest.raises(UserError, match=r"1 missing key\(s\): reg_token; 1 unexpected key\(s\): extra"):
        ckpt.load_checkpoint(net, {**{k: v for k, v in state.items() if k != "reg_token"}, "extra": torch.ones(1)},
                             source="fixture", target="tiny")


def test_bad_checkpoints_are_refused_with_one_line(release_snapshot, tmp_path):
    path, state = release_snapshot
    with pytest.raises(UserError, match=r"predicts K=3 parts .* pass --num-parts 3"):
        load_network(path, num_parts=8, backbone="test_vit")
    with pytest.raises(UserError, match=r"trained at 32 px .* omit -p image_size"):
        load_network(path, num_parts=K, backbone="test_vit", image_size=64)
    with pytest.raises(UserError, match="does not exist"):
        load_network(tmp_path / "absent.pt", num_parts=K)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(UserError, match="truncated.pt is corrupted or truncated"):
        load_network(truncated, num_parts=K)
    damaged = tmp_path / "model.safetensors"
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="model.safetensors is not a readable safetensors file"):
        load_network(damaged, num_parts=K)
    headless = tmp_path / "headless.pt"
    torch.save({k: v for k, v in state.items() if k != "fc_landmarks.weight"}, headless)
    with pytest.raises(UserError, match="lacks fc_landmarks.weight"):
        load_network(headless, num_parts=K, backbone="test_vit")
    # the file's network on another backbone: every key and shape difference in one line
    with pytest.raises(UserError, match=r"does not match PDiscoFormer on vit_small_patch14_reg4_dinov2") as err:
        load_network(path, num_parts=K, backbone="vit_small_patch14_reg4_dinov2")
    assert "\n" not in str(err.value)


# -- the registered method ----------------------------------------------------------------------------------
def test_method_trains_without_checkpoint_and_names_missing_backbone_weights(tmp_path, monkeypatch):
    cls = METHODS.get("pdiscoformer")
    assert cls.provides_background and cls.supervision == "class-labels" and cls.trainable()
    assert cls.demo_params() == {"preset": "tiny", "backbone_weights": "random"}
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: timm's DINOv2-reg weights are absent
    message = cls.missing_weights({})
    assert "timm/vit_base_patch14_reg4_dinov2.lvd142m" in message and "--checkpoint PATH" in message
    assert cls.missing_weights({"checkpoint": "x.pt"}) is None and cls.missing_weights(cls.demo_params()) is None


def test_predict_moves_the_release_background_to_channel_0(release_snapshot):
    path, _ = release_snapshot
    method = METHODS.get("pdiscoformer")(num_parts=K, checkpoint=str(path), backbone="test_vit").fit(None)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    maps = method.predict(Batch(images=images, ids=["a", "b"]))
    with torch.no_grad():
        expected = method.network_(images).maps  # no ImageNet normalisation: the release's part evaluation
    assert maps.has_background and maps.kind == "probs" and maps.num_parts == K and maps.image_size == (32, 32)
    torch.testing.assert_close(maps.scores[:, 0], expected[:, K])
    torch.testing.assert_close(maps.scores[:, 1:], expected[:, :K])
    torch.testing.assert_close(background_first(torch.arange(4.0).view(1, 4, 1, 1)).flatten(),
                               torch.tensor([3.0, 0.0, 1.0, 2.0]))
    # other view sizes are resized to the checkpoint's input; the maps still cover the whole image
    other = method.predict(Batch(images=torch.rand(1, 3, 40, 24), ids=["c"]))
    assert other.image_size == (40, 24) and tuple(other.scores.shape[-2:]) == (2, 2)
    assert method.weights_id().startswith("pdiscoformer:")


# -- losses ---------------------------------------------------------------------------------------------------
# Values of the release's loss functions (engine/losses/*.py; classification: torch's CrossEntropyLoss of the
# parts' mean score, as its trainer calls it), computed once outside this repository on the inputs that
# loss_inputs() rebuilds; the equivariance case undoes angle 30, translation (3, -2) image pixels of a 32-pixel-wide
# image, scale 1.2. The presence loss is the release's "original" variant, fed the foreground maps by its trainer.
RELEASE_LOSSES = {"orthogonality": 0.0426709, "equivariance": 0.6559467, "presence": 0.5324984,
                  "enforced_presence": 1.2336812, "total_variation": 2.0360355, "pixel_entropy": 0.8081364,
                  "concentration": 0.0422041, "classification": 1.691783}


def loss_inputs():
    g = torch.Generator().manual_seed(7)
    maps = (torch.randn(2, 4, 8, 8, generator=g) * 2).softmax(1)
    equiv = (torch.randn(2, 4, 8, 8, generator=g) * 2).softmax(1)
    features = torch.randn(2, 16, 4, generator=g)
    scores = torch.randn(2, 5, 3, generator=g)
    return maps, equiv, features, scores, torch.tensor([1, 4])


def test_losses_equal_the_release_on_stored_values():
    from benchmark.methods.pdiscoformer import losses as L

    maps, equiv, features, scores, targets = loss_inputs()
    mine = {"orthogonality": L.orthogonality_loss(features),
            "equivariance": L.equivariance_loss(maps, equiv, image_width=32, angle=30.0, translate=(3, -2), scale=1.2),
            "presence": L.presence_loss(maps), "enforced_presence": L.enforced_presence_loss(maps),
            "total_variation": L.total_variation_loss(maps), "pixel_entropy": L.pixel_entropy_loss(maps),
            "concentration": L.concentration_loss(maps), "classification": L.classification_loss(scores, targets)}
    assert set(mine) == set(RELEASE_LOSSES) == set(L.PAPER_WEIGHTS)
    for name, value in mine.items():
        assert abs(float(value) - RELEASE_LOSSES[name]) < 1e-6, (name, float(value), RELEASE_LOSSES[name])
    assert L.PAPER_WEIGHTS["enforced_presence"] == 2.0 and L.PAPER_WEIGHTS["concentration"] == 0.0


def test_losses_on_known_answer_cases():
    from benchmark.methods.pdiscoformer import losses as L

    maps, equiv, _, _, _ = loss_inputs()
    # no transformation: the maps are their own warped-back maps
    assert float(L.equivariance_loss(maps, maps, image_width=32, angle=0.0, translate=(0, 0), scale=1.0)) < 1e-6
    uniform = torch.full((1, 4, 6, 6), 0.25)
    assert float(L.total_variation_loss(uniform)) == 0.0
    assert abs(float(L.pixel_entropy_loss(uniform)) - float(torch.log(torch.tensor(4.0)))) < 1e-6
    assert float(L.presence_loss(uniform)) == pytest.approx(0.75)
    onehot = torch.eye(4).unsqueeze(0)  # orthonormal part features: nothing to penalise
    assert float(L.orthogonality_loss(onehot)) == 0.0
    # a background of 1 at the border: the enforced presence is satisfied (BCE of 1 against 1)
    border = torch.zeros(1, 2, 8, 8)
    border[:, 1] = 1.0
    assert float(L.enforced_presence_loss(border)) == 0.0
    with pytest.raises(ValueError, match="at least 4x4"):
        L.enforced_presence_loss(torch.full((1, 2, 3, 3), 0.5))
