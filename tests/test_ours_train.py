"""`ours` training: the paper preset's values, parameter groups and LR schedule, the quirk switches, the
objective's reference features against torchvision's VGG19, and a real training step on synthetic data."""

from __future__ import annotations

import csv
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

import benchmark.methods.ours.method  # noqa: F401  (registers `ours`)
from benchmark.core.errors import UserError
from benchmark.core.registry import DATASETS, METHODS
from benchmark.core.types import Batch
from benchmark.methods.ours.presets import PRESETS, resolve_config
from benchmark.methods.ours.train_step import OursObjective, reference_features, segmenter_param_groups
from benchmark.methods.segmenter import PartSegmenter
from benchmark.methods.training import StepInfo, TrainConfig
from benchmark.methods.training.loop import build_optimizer
from benchmark.methods.training.schedule import set_lrs


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def synthetic(n=6, size=32, split="train", view="train"):
    return DATASETS.get("synthetic")(None, split=split, view=view, masks="gt", num_train=n, num_test=n,
                                     image_size=size)


def random_vgg(config):
    from benchmark.methods.backbones import VGGFeatures

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return VGGFeatures("vgg19", weights="random", layers=config.ref_layers, precision="fp32")


def test_paper_preset_is_section_1_6():
    c = PRESETS["paper"]
    assert (c.steps, c.batch_size, c.image_size, c.checkpoint_every) == (100_000, 6, 256, 5000)
    assert (c.lr, c.classifier_lr_mult, c.momentum, c.weight_decay, c.poly_power) == (1e-5, 10.0, 0.9, 5e-4, 0.9)
    assert (c.max_iter, c.clip_grad_norm) == (100_000, 5.0)
    assert (c.lambda_feature, c.lambda_color, c.lambda_contrastive, c.lambda_equivariance) == (5.0, 30.0, 2.3e3, 5.7e3)
    assert (c.temperature, c.ref_layers, c.ref_weights, c.use_lab) == (0.19, ("relu3_2", "relu5_4"), (0.33, 1.0), True)
    # the quirks, reference behaviour
    assert (c.feature_reduction, c.legacy_positive, c.mean_order) == ("sum", True, "rgb_caffe_bgr_quirk")
    assert (c.jitter_p, c.brightness, c.contrast, c.saturation, c.hue, c.grayscale_p) == (0.8, 0.3, 0.3, 0.2, 0.2, 0.2)
    assert (c.warp_rotation_deg, c.warp_scale, c.warp_translation, c.tps_sigma) == (60.0, (0.7, 2.0), 0.1, 0.01)
    assert resolve_config("paper", dataset="pascal-part").lambda_equivariance == 5.7e4
    assert resolve_config("paper", dataset="cub").lambda_equivariance == 5.7e3
    assert resolve_config("paper", dataset="pascal-part", lambda_equivariance=1.0).lambda_equivariance == 1.0
    ours = METHODS.get("ours")(max_iter=0, steps=1000)
    assert ours.config_for("cub").max_iter is None  # -p max_iter=0 fixes the hard-coded horizon


def test_param_groups_weight_decay_and_poly_lr():
    model = PartSegmenter(4)
    config = PRESETS["paper"]
    train_config = TrainConfig(steps=config.steps, batch_size=6, lr=config.lr, max_iter=config.max_iter)
    optimizer = build_optimizer(segmenter_param_groups(model, config), train_config)
    names = {id(p): n for n, p in model.named_parameters()}
    backbone, classifier = optimizer.param_groups
    assert {names[id(p)].split(".")[0] for p in classifier["params"]} == {"layer5"}
    assert all(not names[id(p)].startswith("layer5") for p in backbone["params"])
    in_optimizer = {names[id(p)] for g in optimizer.param_groups for p in g["params"]}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert in_optimizer == trainable  # every trainable parameter, once
    assert "layer1.0.downsample.1.weight" in in_optimizer and "layer5.conv2d_list.3.bias" in in_optimizer
    assert "bn1.weight" not in in_optimizer and "layer2.1.bn2.bias" not in in_optimizer  # frozen BN affine
    assert backbone["weight_decay"] == classifier["weight_decay"] == 5e-4 and backbone["momentum"] == 0.9
    for step, expected in ((0, 1e-5), (50_000, 1e-5 * 0.5 ** 0.9), (60_000, 1e-5 * 0.4 ** 0.9),
                           (99_999, 1e-5 * 1e-5 ** 0.9)):
        set_lrs(optimizer, config.lr, step, train_config.schedule_horizon, config.poly_power)
        assert math.isclose(backbone["lr"], expected, rel_tol=1e-9)
        assert math.isclose(classifier["lr"], 10 * expected, rel_tol=1e-9)
    # the horizon stays 100000 when fewer steps are run (the reference quirk)
    assert TrainConfig(steps=10, batch_size=6, lr=1e-5, max_iter=config.max_iter).schedule_horizon == 100_000


def test_small_batch_with_legacy_positive_is_explained():
    with pytest.raises(UserError, match=r"batch size 2 .*randint\(1, B-1\).*reference crashes"):
        resolve_config("paper", batch_size=2)
    assert resolve_config("paper", batch_size=2, legacy_positive=False).batch_size == 2
    assert resolve_config("paper", batch_size=2, ablate=("contrastive",)).batch_size == 2
    with pytest.raises(UserError, match="unknown loss term"):
        resolve_config("paper", ablate=("colour",))
    with pytest.raises(UserError, match="unknown ours training option"):
        resolve_config("paper", lamda_feature=1.0)


def test_reference_features_match_torchvision_vgg19():
    import torchvision

    config = PRESETS["tiny"]
    vgg = random_vgg(config)
    reference = torchvision.models.vgg19(weights=None).features.eval()
    reference.load_state_dict(vgg.features.state_dict(), strict=False)  # VGGFeatures keeps the prefix up to relu5_4
    images = torch.rand(2, 3, 32, 32)
    x = (images - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    taps = {}
    with torch.no_grad():
        for index, layer in enumerate(reference[:36]):
            x = layer(x)
            if index in (13, 35):  # relu3_2, relu5_4 in torchvision's vgg19.features
                taps[index] = x.clone()
    expected = torch.cat([F.interpolate(taps[13] * 0.33, size=(32, 32), mode="bilinear", align_corners=True),
                          F.interpolate(taps[35] * 1.0, size=(32, 32), mode="bilinear", align_corners=True)], 1)
    got = reference_features(vgg, images, config)
    assert got.shape == (2, 768, 32, 32)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


class CountingModel(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.model(x)


def _batch(n=3, size=32):
    data = synthetic(n, size)
    from benchmark.core.types import collate

    return collate([data[i] for i in range(n)])


def test_objective_terms_reductions_and_ablation():
    batch = _batch()
    torch.manual_seed(0)
    model = CountingModel(PartSegmenter(4).train())

    def run(**overrides):
        config = resolve_config("tiny", batch_size=3, image_size=32, **overrides)
        g = torch.Generator().manual_seed(5)
        s = torch.Generator().manual_seed(6)
        with torch.no_grad():
            return OursObjective(config, random_vgg(config))(model, batch, StepInfo(0, g, s))

    total, terms = run(feature_reduction="sum")
    assert set(terms) == {"feature", "color", "contrastive", "equivariance"}
    assert all(torch.isfinite(v) for v in terms.values()) and model.calls == 2
    expected = 5.7e3 * terms["equivariance"] + 5 * terms["feature"] + 30 * terms["color"] + 2.3e3 * terms["contrastive"]
    torch.testing.assert_close(total, expected)
    _, mean_terms = run(feature_reduction="mean")
    torch.testing.assert_close(terms["feature"], 3 * mean_terms["feature"])  # sum over B=3 vs mean
    model.calls = 0
    total, terms = run(ablate=("equivariance", "contrastive"))
    assert set(terms) == {"feature", "color"} and model.calls == 1  # no warped pass without L_e
    torch.testing.assert_close(total, 5 * terms["feature"] + 30 * terms["color"])
    objective = OursObjective(resolve_config("tiny"), random_vgg(PRESETS["tiny"]))
    with pytest.raises(UserError, match="needs foreground masks"):
        objective(model, Batch(images=batch.images, ids=batch.ids), StepInfo(0, torch.Generator(), torch.Generator()))


def test_real_training_steps_on_synthetic_data_and_prediction(tmp_path):
    data = synthetic(6, 32)
    ours = METHODS.get("ours")(preset="tiny", steps=2, batch_size=3, image_size=32, init="random",
                               vgg_weights="random")
    result = ours.train(data, out_dir=tmp_path, seed=0, device="cpu")
    with open(tmp_path / "train_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [0, 1]
    for row in rows:
        for term in ("total", "feature", "color", "contrastive", "equivariance"):
            assert math.isfinite(float(row[term]))
    assert result.model_path.is_file()
    test = synthetic(4, 32, split="test", view="fg")
    batch = next(iter(test.batches(4)))
    maps = ours.predict(batch)
    assert maps.kind == "logits" and not maps.align_corners and maps.image_size == (32, 32)
    assert tuple(maps.scores.shape) == (4, 4, 5, 5)  # output stride 8 with the ceil-mode pool
    # the written weights load back through the checkpoint path and predict the same
    loaded = METHODS.get("ours")(checkpoint=str(result.model_path), preset="tiny").fit(None, seed=0)
    torch.testing.assert_close(loaded.predict(batch).scores, maps.scores)


def test_bf16_autocast_loss_close_to_float32():
    """bf16 autocast changes only the network's precision: the statistics of L_f, L_v, L_c are float32.
    (L_e, a KL between two nearly uniform predictions of a random network, is dominated by the bf16
    rounding of the logits and is not compared here; see the report.)"""
    batch = _batch(3, 32)
    config = resolve_config("paper", batch_size=3, image_size=32)
    torch.manual_seed(0)
    model = PartSegmenter(4).train()
    objective = OursObjective(config, random_vgg(config))
    results = {}
    for amp in (False, True):
        g, s = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            results[amp] = objective(model, batch, StepInfo(0, g, s))
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-2, atol=0)
    for term in ("feature", "color", "contrastive"):
        torch.testing.assert_close(results[True][1][term], results[False][1][term], rtol=1e-2, atol=0)
