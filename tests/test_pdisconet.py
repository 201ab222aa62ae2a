"""``pdisconet`` (methods/pdisconet/): the network against the release, checkpoint loading, prediction.

How the expected values are made (no reference code is carried here): ``RELEASE_*`` below are outputs of the
release's ``IndividualLandmarkNet`` (``nets.py`` of ``robertdvdk/part_detection`` at commit eec53f2, eval mode,
with torchvision 0.29) computed once outside this repository on the inputs that :func:`release_inputs`
rebuilds: the network on a one-block-per-stage bottleneck ResNet (``ResNet(Bottleneck, [1, 1, 1, 1])``, the
release's 1024 + 2048 feature channels) with K = 3 and 5 classes, every tensor of the state dict drawn in the
state dict's key order from one generator seeded 1 (:func:`random_weights`), then two 64 x 64 images drawn
uniformly from the same generator. The maps are stored to 6 decimals, the scores to 5.
"""

from __future__ import annotations

import pytest
import torch

from benchmark.core.errors import UserError
from benchmark.core.registry import METHODS
from benchmark.core.types import Batch
from benchmark.methods.pdisconet import checkpoint as ckpt
from benchmark.methods.pdisconet.network import PDiscoNetNet, build_network

K, CLASSES = 3, 5
RELEASE_MAPS = [0.08065, 0.010038, 0.007945, 0.004271, 0.02854, 0.00023, 0.000158, 0.000157, 0.007816, 0.000178, 0.000131,
                4.1e-05, 0.004632, 0.000124, 3.6e-05, 1.1e-05, 0.811855, 0.867262, 0.614751, 0.562222,
                0.841622, 0.91772, 0.949373, 0.851583, 0.80559, 0.963067, 0.895302, 0.970362, 0.850425,
                0.947847, 0.965561, 0.973009, 0.006941, 0.000116, 0.000136, 1e-05, 0.019697, 0.000199,
                9.2e-05, 2.4e-05, 0.012096, 0.000144, 0.000141, 7e-06, 0.004306, 9.9e-05, 1.4e-05, 4e-06,
                0.100554, 0.122584, 0.377168, 0.433498, 0.110141, 0.081851, 0.050376, 0.148236, 0.174498,
                0.036611, 0.104426, 0.02959, 0.140636, 0.05193, 0.034389, 0.026976, 0.113914, 0.013909,
                0.005968, 0.005004, 0.012775, 0.000785, 0.000277, 0.000191, 0.013229, 0.000163, 0.000233,
                6.7e-05, 0.008724, 0.000286, 0.000114, 4.2e-05, 0.401845, 0.532733, 0.435133, 0.364975,
                0.715252, 0.359208, 0.81959, 0.676966, 0.759064, 0.832862, 0.585525, 0.759955, 0.719756,
                0.900963, 0.871324, 0.795822, 0.004057, 0.00035, 4.2e-05, 1.5e-05, 0.010415, 0.000586,
                0.000313, 8.6e-05, 0.019861, 0.00027, 0.000155, 2.8e-05, 0.009246, 0.000392, 0.000153,
                5.1e-05, 0.480183, 0.453009, 0.558858, 0.630005, 0.261557, 0.63942, 0.17982, 0.322757,
                0.207846, 0.166705, 0.414086, 0.239949, 0.262274, 0.098359, 0.128409, 0.204085]
RELEASE_SCORES = [0.00252, -0.37179, -0.00024, -0.01791, 0.00783, 1.08918, 0.00214, 0.12492, -0.01252, -1.00238, -0.00236,
                  -0.17006, 0.00735, 0.81385, 0.00205, 0.14185, -0.00623, -0.61665, -0.00229, -0.13817,
                  0.00504, -0.26227, -0.00018, -0.0663, 0.01083, 0.89556, 0.00313, 0.36346, -0.014, -0.74236,
                  -0.00218, -0.41099, 0.00776, 0.60443, 0.00246, 0.3549, -0.00677, -0.48965, -0.00279,
                  -0.32785]
RELEASE_FEATURE_SUMS = [11.522, 1471.811, 3.627, 205.46, 13.642, 1137.927, 3.981, 545.382]


def random_weights(shapes: dict[str, torch.Size], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One draw per tensor in key order: He-scaled weights, BN scales and the modulation near 1, small biases
    and means, running variances in [1, 1.5+), counters 0 (what the stored release outputs were made with)."""
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
            continue
        r = torch.randn(shape, generator=generator)
        if key.endswith("running_var"):
            state[key] = 1 + 0.5 * r.abs()
        elif key.endswith(("bias", "running_mean")):
            state[key] = 0.1 * r
        elif key == "modulation" or len(shape) == 1:
            state[key] = 1 + 0.2 * r
        else:
            state[key] = r * (2.0 / shape[1:].numel()) ** 0.5
    return state


def release_inputs():
    from torchvision.models.resnet import Bottleneck, ResNet

    with torch.device("meta"):  # no initialisation: every tensor is drawn below
        net = PDiscoNetNet(ResNet(Bottleneck, [1, 1, 1, 1]), K, CLASSES)
    net = net.to_empty(device="cpu")
    g = torch.Generator().manual_seed(1)
    state = random_weights({key: value.shape for key, value in net.state_dict().items()}, g)
    images = torch.rand(2, 3, 64, 64, generator=g)
    return net, state, images


@pytest.fixture(scope="module")
def release_outputs():
    net, state, images = release_inputs()
    net.load_state_dict(state, strict=True)
    with torch.no_grad():
        return net.eval()(images)


def test_network_equals_the_release_on_stored_outputs(release_outputs):
    out = release_outputs
    assert out.maps.shape == (2, K + 1, 4, 4) and out.scores.shape == (2, CLASSES, K + 1)
    torch.testing.assert_close(out.maps.flatten(), torch.tensor(RELEASE_MAPS), atol=2e-6, rtol=0)
    torch.testing.assert_close(out.scores.flatten(), torch.tensor(RELEASE_SCORES), atol=2e-5, rtol=0)
    torch.testing.assert_close(out.features.sum(1).flatten(), torch.tensor(RELEASE_FEATURE_SUMS), atol=1e-3, rtol=0)
    # the maps are a softmax over K + 1 slots of the distances; the logits average the K foreground parts
    torch.testing.assert_close(out.maps, (-out.dist).softmax(1))
    torch.testing.assert_close(out.logits, out.scores[..., :K].mean(-1))


def test_default_architecture_has_the_release_key_layout():
    net = build_network("resnet101", 8, 200, device="meta")
    shapes = {key: tuple(value.shape) for key, value in net.state_dict().items()}
    assert shapes["fc_landmarks.weight"] == (9, 3072, 1, 1) and shapes["fc_class_landmarks.weight"] == (200, 3072)
    assert shapes["modulation"] == (1, 3072, 9) and shapes["batchnorm.weight"] == (11,)
    assert len([k for k in shapes if k.startswith("layer3.")]) == 23 * (3 + 3 * 5) + 6  # 23 blocks of 3 convs and 3 BNs, a downsample
    assert "fc.weight" not in shapes and not any(k.startswith(("backbone", "module")) for k in shapes)


# -- checkpoint files ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def release_file(tmp_path_factory):
    """The rehearsal kit's ``cub/<model_name>.pt`` of the release's main.py: ResNet-101, K = 8, 200 classes."""
    from rehearsal import write_pdisconet_checkpoint

    path = write_pdisconet_checkpoint(tmp_path_factory.mktemp("pdisconet") / "cub_8parts.pt")
    return path, torch.load(path, weights_only=True)


def test_a_release_file_loads_strictly(release_file):
    path, state = release_file
    net = ckpt.load_network(path, num_parts=8)
    assert net.num_classes == 200 and net.feature_dim == 3072 and len(net.layer3) == 23 and not net.training
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_bad_checkpoints_are_refused_with_one_line(release_file, tmp_path):
    path, state = release_file
    with pytest.raises(UserError, match=r"predicts K=8 parts .* pass --num-parts 8"):
        ckpt.load_network(path, num_parts=4)
    with pytest.raises(UserError, match="does not exist"):
        ckpt.load_network(tmp_path / "absent.pt", num_parts=8)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(UserError, match="truncated.pt is corrupted or truncated"):
        ckpt.load_network(truncated, num_parts=8)
    headless = tmp_path / "headless.pt"
    torch.save({k: v for k, v in state.items() if k != "fc_landmarks.weight"}, headless)
    with pytest.raises(UserError, match="lacks fc_landmarks.weight"):
        ckpt.load_network(headless, num_parts=8)
    # the release's unused batchnorm missing and a stray key: every difference in one line
    odd = tmp_path / "odd.pt"
    torch.save({**{k: v for k, v in state.items() if not k.startswith("batchnorm.")}, "extra": torch.ones(1)}, odd)
    with pytest.raises(UserError, match=r"does not match PDiscoNet on resnet101 .*5 missing key\(s\): batchnorm"
                                        r".*1 unexpected key\(s\): extra") as err:
        ckpt.load_network(odd, num_parts=8)
    assert "\n" not in str(err.value)
    shallow = tmp_path / "shallow.pt"
    torch.save({k: v for k, v in state.items() if not k.startswith("layer3.22.")}, shallow)
    with pytest.raises(UserError, match=r"bottleneck blocks \(3, 4, 22, 3\) per stage"):
        ckpt.load_network(shallow, num_parts=8)


def test_a_partbench_model_file_loads(tmp_path):
    net = build_network("resnet18", 2, 3)
    path = tmp_path / "model.pt"
    torch.save({"format": "partbench-model", "model_state_dict": net.state_dict(), "step": 1}, path)
    again = ckpt.load_network(path, num_parts=2)
    assert again.feature_dim == 768 and again.num_classes == 3
    torch.testing.assert_close(again.fc_landmarks.weight, net.fc_landmarks.weight, rtol=0, atol=0)


# -- the registered method ----------------------------------------------------------------------------------
def test_method_tags_and_prediction_channels(tmp_path):
    cls = METHODS.get("pdisconet")
    assert cls.provides_background and cls.supervision == "class-labels"
    net = build_network("resnet18", 2, 3).eval()
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    method = cls(num_parts=2, checkpoint=str(path)).fit(None)
    images = torch.rand(2, 3, 48, 48)
    maps = method.predict(Batch(images=images, ids=["a", "b"]))
    with torch.no_grad():
        own = net(images).maps
    assert maps.has_background and maps.kind == "probs" and maps.scores.shape == (2, 3, 3, 3)
    torch.testing.assert_close(maps.scores[:, 0], own[:, -1])  # the release's last channel is the background
    torch.testing.assert_close(maps.scores[:, 1:], own[:, :-1])
    assert method.weights_id().startswith("pdisconet:")
    # behind the run's network-output cache (what `run` and plans use): the maps are stored and read back
    from benchmark.core.method import RunContext

    method.context = RunContext(cache_dir=tmp_path / "cache")
    first = method.predict(Batch(images=images, ids=["a", "b"]))
    again = method.predict(Batch(images=images, ids=["a", "b"]))
    torch.testing.assert_close(first.scores, maps.scores, rtol=0, atol=0)
    torch.testing.assert_close(again.scores, maps.scores, rtol=0, atol=0)
    assert (method._cached_network.misses, method._cached_network.hits) == (1, 1)


# -- losses -------------------------------------------------------------------------------------------------
# The release's train.py functions (conc_loss with lib.landmark_coordinates, orth_loss, equiv_loss, the
# presence expression of train(), CrossEntropyLoss(reduction="none").mean()) run once outside the repository
# on loss_inputs(); equiv_loss drew its transformation from np.random.seed(0) (the values in RELEASE_DRAW) and
# its network was replaced by one returning ``equiv_maps`` (RELEASE_WARPED_* describe the image it was given).
RELEASE_LOSSES = {"concentration": 0.04011796414852142, "orthogonality": 0.04320411756634712,
                  "presence": 0.6169487833976746, "classification": 2.0884885787963867,
                  "equivariance": 0.7855024337768555}
RELEASE_DRAW = {"angle": 8.786430706918452, "translate": (21, 10), "scale": 1.1269299097981382}
RELEASE_WARPED_SUM, RELEASE_WARPED_SQUARES = 1471.96240234375, 827.7189331054688
RELEASE_WARPED_ROW = [0.212719, 0.508482, 0.357243, 0.203322, 0.270858, 0.374125]  # image 0, channel 0, row 18, cols 26..31


def loss_inputs():
    g = torch.Generator().manual_seed(3)
    maps = (torch.randn(2, 4, 9, 9, generator=g) * 2).softmax(1)
    equiv_maps = (torch.randn(2, 4, 9, 9, generator=g) * 2).softmax(1)
    features = torch.randn(2, 16, 4, generator=g)
    scores = torch.randn(2, 5, 4, generator=g)
    images = torch.rand(2, 3, 36, 36, generator=g)
    return maps, equiv_maps, features, scores, torch.tensor([1, 4]), images


def test_each_loss_equals_the_release_on_stored_values():
    from benchmark.methods.pdisconet import losses

    maps, equiv_maps, features, scores, labels, images = loss_inputs()
    got = {"concentration": losses.concentration_loss(maps), "orthogonality": losses.orthogonality_loss(features),
           "presence": losses.presence_loss(maps), "classification": losses.classification_loss(scores, labels),
           "equivariance": losses.equivariance_loss(maps, equiv_maps, image_width=36, **RELEASE_DRAW)}
    for name, value in got.items():
        assert value.item() == pytest.approx(RELEASE_LOSSES[name], abs=1e-6), name
    warped = losses.rigid_warp(images, **RELEASE_DRAW)
    assert warped.sum().item() == pytest.approx(RELEASE_WARPED_SUM, rel=1e-6)
    assert warped.pow(2).sum().item() == pytest.approx(RELEASE_WARPED_SQUARES, rel=1e-6)
    # the shared batched warp builds its matrix in float64, torchvision in float32: differences of ~1e-6
    torch.testing.assert_close(warped[0, 0, 18, 26:32], torch.tensor(RELEASE_WARPED_ROW), atol=2e-6, rtol=0)
    assert losses.PAPER_WEIGHTS == {"classification": 2.0, "presence": 1.0, "equivariance": 1.0,
                                    "concentration": 1000.0, "orthogonality": 1.0}


def test_loss_known_answers():
    from benchmark.methods.pdisconet import losses

    # each map (background included) fills a 3x3 window inside the border in one of the images: presence 0
    maps = torch.zeros(2, 3, 9, 9)
    maps[0, 0, 2:5, 2:5] = 1
    maps[1, 1, 4:7, 4:7] = 1
    maps[1, 2, 2:5, 4:7] = 1
    assert losses.presence_loss(maps).item() == pytest.approx(0.0)
    # the border does not count: a part present only there is absent
    edge = maps.clone()
    edge[0, 0] = 0
    edge[0, 0, :, 7:] = 1
    assert losses.presence_loss(edge).item() == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="at least 7x7"):
        losses.presence_loss(torch.ones(1, 2, 6, 6))
    # only the K foreground parts' scores make the logits: a huge background score changes nothing
    scores = torch.zeros(1, 4, 3)
    scores[0, 2, :2] = 50.0
    scores[0, 0, 2] = 1e4
    assert losses.classification_loss(scores, torch.tensor([2])).item() == pytest.approx(0.0, abs=1e-6)
    # the identity transformation: equivariance 0
    maps = torch.rand(2, 4, 9, 9)
    assert losses.equivariance_loss(maps, maps, image_width=36, angle=0.0, translate=(0, 0), scale=1.0).item() \
        == pytest.approx(0.0, abs=1e-6)


def test_the_random_transformation_follows_the_release_ranges():
    from benchmark.methods.pdisconet import losses

    g = torch.Generator().manual_seed(0)
    draws = [losses.random_rigid_transform(g) for _ in range(200)]
    angles, scales = [d[0] for d in draws], [d[2] for d in draws]
    shifts = [t for d in draws for t in d[1]]
    assert -90 <= min(angles) and max(angles) < 90 and 0.8 <= min(scales) and max(scales) < 1.4
    assert all(isinstance(t, int) for t in shifts) and -50 <= min(shifts) and max(shifts) <= 49


# -- training -----------------------------------------------------------------------------------------------
def labelled_synthetic(**options):
    """The synthetic creatures' training view; their class labels (the torso's colour class) are read as CUB's
    species are."""
    from benchmark.core.registry import DATASETS

    return DATASETS.get("synthetic")(split="train", view="train", **options)


def test_training_uses_the_release_optimisation():
    from benchmark.methods.pdisconet.presets import PRESETS

    data = labelled_synthetic(num_train=12, image_size=32)
    # the paper's schedule in epochs (here of 12 // 4 = 3 steps) on a small random ResNet
    method = METHODS.get("pdisconet")(num_parts=2, preset="paper", backbone="resnet18", weights="random",
                                      epochs=12, batch_size=4, lr=1e-3)
    trainer = method.trainer(data, out_dir=None, seed=0, device="cpu")
    config = trainer.config
    assert config.steps == 12 * 3 and config.lr_step_every == 5 * 3 and config.lr_step_gamma == 0.5
    assert config.clip_grad_norm is None and config.weight_decay == 0.0 and config.image_size == 448
    optimizer = trainer.optimizer_factory(trainer.param_groups(trainer.model), config)
    assert type(optimizer) is torch.optim.Adam
    lrs = {group["name"]: (group["lr"], len(group["params"]), group["weight_decay"]) for group in optimizer.param_groups}
    assert lrs["modulation"] == (pytest.approx(1e-1), 1, 0.0) and lrs["fc_class_landmarks"] == (pytest.approx(1e-2), 1, 0.0)
    assert lrs["rest"][0] == pytest.approx(1e-3) and lrs["rest"][1] == len(list(trainer.model.parameters())) - 2
    assert trainer.model.num_classes == 4  # the synthetic torso colour classes
    paper = PRESETS["paper"]
    assert (paper.backbone, paper.weights, paper.image_size, paper.batch_size, paper.epochs, paper.lr) == \
        ("resnet101", "imagenet", 448, 16, 28, 1e-4)
    assert (PRESETS["paper-partimagenet"].image_size, PRESETS["paper-partimagenet"].batch_size,
            PRESETS["paper-partimagenet"].epochs) == (224, 20, 20)
    # `paper` is the release's settings of the dataset trained on
    paper_on = METHODS.get("pdisconet")(preset="paper").settings
    assert paper_on("partimagenet") == PRESETS["paper-partimagenet"] and paper_on("cub") == paper_on() == paper


def test_a_dataset_without_class_labels_and_ddp_are_refused(monkeypatch):
    plain = labelled_synthetic(num_train=4, image_size=32)
    plain.class_ids = lambda: None  # a dataset without image-level labels
    with pytest.raises(UserError, match=r"pdisconet trains with image-level class labels and dataset 'synthetic' "
                                        r"has none") as err:
        METHODS.get("pdisconet")(preset="tiny").trainer(plain, out_dir=None, seed=0, device="cpu")
    assert "\n" not in str(err.value)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="pdisconet trains in one process"):
        METHODS.get("pdisconet")(preset="tiny").trainer(plain, out_dir=None, seed=0, device="cpu")


@pytest.mark.slow
def test_tiny_training_resumes_exactly_and_beats_random(tmp_path, one_torch_thread):
    from benchmark.core.registry import DATASETS
    from helpers import sklearn_fg_nmi as fg_nmi

    data = labelled_synthetic(num_train=8, image_size=32)
    cls = METHODS.get("pdisconet")
    whole = cls(num_parts=3, preset="tiny", steps=2)
    whole.train(data, out_dir=tmp_path / "whole", seed=0)
    cls(num_parts=3, preset="tiny", steps=1).train(data, out_dir=tmp_path / "split", seed=0)
    resumed = cls(num_parts=3, preset="tiny", steps=2)
    result = resumed.train(data, out_dir=tmp_path / "split", resume=True, seed=0)
    assert result.resumed_from == 1 and result.model_path.is_file()
    for key, value in whole.network_.state_dict().items():
        torch.testing.assert_close(resumed.network_.state_dict()[key], value, rtol=0, atol=0, msg=key)
    reloaded = cls(num_parts=3, checkpoint=str(result.model_path)).fit(None)
    test = DATASETS.get("synthetic")(split="test", view="fg", num_test=8, image_size=48)
    score, baseline = fg_nmi(reloaded, test), fg_nmi(METHODS.get("random")().fit(test, seed=0), test)
    assert score > baseline + 0.05, (score, baseline)


def test_the_imagenet_backbone_is_declared_and_loaded(tmp_path, monkeypatch):
    import torchvision

    from benchmark.methods.pdisconet.network import init_backbone
    from rehearsal import random_state

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    cls = METHODS.get("pdisconet")
    (paper,) = cls.weights_needed({})
    assert paper.paths[0].name == "resnet101-cd907fc2.pth"  # torchvision's DEFAULT (IMAGENET1K_V2), as the release
    assert cls.weights_needed({"checkpoint": "x.pt"}) == [] and cls.weights_needed({"weights": "random"}) == []
    net = build_network("resnet18", 2, 3)
    with pytest.raises(UserError, match=r"ImageNet weights for resnet18 missing .*resnet18-f37072fd.pth"):
        init_backbone(net, "resnet18", "imagenet")
    (need,) = cls.weights_needed({"backbone": "resnet18"})
    need.paths[0].parent.mkdir(parents=True)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.resnet18().state_dict().items()}
    state = random_state(shapes, 5, shared=False)
    torch.save(state, need.paths[0])
    assert init_backbone(net, "resnet18", "imagenet").endswith("resnet18-f37072fd.pth")
    torch.testing.assert_close(net.layer4[1].conv2.weight, state["layer4.1.conv2.weight"], rtol=0, atol=0)
    torch.save({k: v for k, v in state.items() if k != "conv1.weight"}, need.paths[0])
    with pytest.raises(UserError, match=r"1 missing key\(s\): conv1.weight"):
        init_backbone(net, "resnet18", "imagenet")


# -- bench ----------------------------------------------------------------------------------------------------
def test_bench_compares_with_the_release_step_on_the_same_losses(one_torch_thread):
    from benchmark.core.registry import BENCHES

    report = BENCHES.get("pdisconet")(batch_size=2, size=112, backbone="resnet18", num_parts=3, classes=4, steps=1,
                                      warmup=0, device="cpu", amp="bf16", channels_last=True)
    assert "release's way" in report and "speed-up vs the release's way: x" in report, report
    rows = [line.split()[:2] for line in report.splitlines() if "ms/step" in line]
    assert [row[:2] for row in rows] == [["release's", "way,"], ["partbench,", "float32"], ["partbench,", "bf16"]]
    assert "bf16 channels-last" in report, report
    peaks = [float(line.split("peak")[1].split("MiB")[0].replace(",", "")) for line in report.splitlines()
             if "ms/step" in line]
    assert all(peak > 0 for peak in peaks), report  # the CPU step peak is measured, not left out
    check = float(report.rsplit("differ by at most ", 1)[1].split()[0])
    assert check < 1e-4, report
    with pytest.raises(UserError, match="size 64 gives maps under 7x7"):
        BENCHES.get("pdisconet")(size=64, device="cpu")
    with pytest.raises(UserError, match="amp must be bf16 or none"):
        BENCHES.get("pdisconet")(amp="fp16", device="cpu")


def test_bf16_training_is_a_named_setting_of_the_run():
    data = labelled_synthetic(num_train=4, image_size=32)
    cls = METHODS.get("pdisconet")
    plain, fast = cls(num_parts=2, preset="tiny"), cls(num_parts=2, preset="tiny", amp="bf16")
    assert "amp" not in plain.training_record(data) and fast.training_record(data)["amp"] == "bf16"
    assert fast.trainer(data, out_dir=None, seed=0, device="cpu").config.amp == "bf16"
    assert plain.trainer(data, out_dir=None, seed=0, device="cpu").config.amp is None
    layout = cls(num_parts=2, preset="tiny", channels_last=True)
    assert layout.training_record(data)["channels_last"] is True and "channels_last" not in plain.training_record(data)
    net = layout.trainer(data, out_dir=None, seed=0, device="cpu").model
    assert net.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(UserError, match="pdisconet --amp must be bf16"):
        cls(num_parts=2, preset="tiny", amp="fp16").check_params()


def test_the_training_estimate_times_a_tiny_step_and_leaves_paper_sizes_unmeasured():
    cls = METHODS.get("pdisconet")
    seconds = cls.training_seconds({"preset": "tiny"}, "cpu")
    assert seconds is not None and 0 < seconds < 600
    assert "measured" in cls.training_estimate({"preset": "tiny"}, "cpu")
    # the paper preset counts epochs of the dataset, and one of its steps takes minutes on a CPU
    assert cls.training_seconds({}, "cpu") is None and cls.training_seconds({"steps": 5}, "cpu") is None
    assert "duration not measured" in cls.training_estimate({}, "cpu")
