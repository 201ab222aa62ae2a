"""``pdiscoformer`` training (methods/pdiscoformer/{presets,train_step}.py) through the shared trainer: the
release's recipe, its augmentation, class labels, and a tiny run that learns parts, resumes and reloads.

Known answers only: the recipe is compared with the numbers of the release's ``training_instructions.md``
(written out here), the augmentation with torchvision's own ``affine`` on the same image."""

from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner

from benchmark.cli import cli
from benchmark.core.errors import UserError
from benchmark.core.registry import DATASETS, METHODS
from benchmark.core.types import Batch
from benchmark.methods.pdiscoformer.network import build_network
from benchmark.methods.pdiscoformer.presets import resolve_config, schedule
from benchmark.methods.training.class_targets import ClassTargets
from benchmark.methods.pdiscoformer.train_step import adam, param_groups, random_affine
from benchmark.methods.pdiscoformer.warp import affine_images, rigid_affine
from benchmark.methods.training import TrainConfig
from helpers import sklearn_fg_nmi as fg_nmi


def synthetic(split="train", **options):
    view = "train" if split == "train" else "fg"
    return DATASETS.get("synthetic")(split=split, view=view, **{"num_train": 16, "num_test": 8, "image_size": 64,
                                                                  **options})


def test_paper_preset_is_the_release_training_command():
    c = resolve_config("paper", "cub", num_parts=8)
    assert (c.backbone, c.image_size, c.batch_size, c.epochs, c.lr, c.num_parts) == (
        "vit_base_patch14_reg4_dinov2", 518, 32, 28, 1.414e-6, 8)
    assert (c.scratch_lr_factor, c.modulation_lr_factor, c.finer_lr_factor) == (1e4, 1e4, 1e3)
    assert (c.decay_epochs, c.decay_gamma, c.weight_decay, c.clip_grad_norm, c.part_dropout) == (4, 0.5, 0.0, 2.0, 0.3)
    assert c.freeze_backbone and c.gumbel and c.gumbel_tau == 1.0 and c.ema_decay is None and c.augment
    assert (c.degrees, c.translate, c.scale_low, c.scale_high) == (90.0, 0.11, 0.8, 1.4)
    plan = schedule(c, 5994)  # CUB's training images, drop_last: 187 steps per epoch
    assert (plan.steps, plan.decay_every, plan.checkpoint_every) == (28 * 187, 4 * 187, 187)
    p = resolve_config("paper", "partimagenet", num_parts=25)
    assert (p.image_size, p.batch_size, p.num_parts) == (224, 128, 25)
    assert math.isclose(p.lr, 1e-6 * math.sqrt(128 / 16), rel_tol=1e-3)
    assert resolve_config("tiny", "partimagenet").image_size == 64  # dataset overrides apply to paper only
    with pytest.raises(UserError, match="unknown pdiscoformer preset"):
        resolve_config("fast")
    with pytest.raises(UserError, match="ema_decay must be in"):
        resolve_config("paper", ema_decay=1.5)
    with pytest.raises(UserError, match="fewer than one batch"):
        schedule(c, 31)


def test_param_groups_are_the_releases():
    net = build_network("test_vit", 32, 3, 5, patch_size=16)
    config = resolve_config("paper")
    groups = {g.name: g for g in param_groups(net, config)}
    names = {id(p): n for n, p in net.named_parameters()}
    members = {name: {names[id(p)] for p in g.params} for name, g in groups.items()}
    assert members["scratch"] == {"fc_class_landmarks.weight"} and members["finer"] == {"fc_landmarks.weight"}
    assert members["modulation"] == {"modulation.weight", "modulation.bias"}
    assert {"cls_token", "pos_embed", "norm.weight"} <= members["no_decay"] and "blocks.0.attn.qkv.weight" in members["backbone"]
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == members["scratch"] | members["finer"] | members["modulation"] | {"cls_token", "pos_embed"}
    optimizer = adam(list(groups.values()), TrainConfig(steps=1, batch_size=1, lr=1e-6, weight_decay=0.0))
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == pytest.approx({"no_decay": 1e-6, "finer": 1e-3, "modulation": 1e-2, "scratch": 1e-2})
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults["betas"] == (0.9, 0.999)
    assert all(g["weight_decay"] == 0.0 for g in optimizer.param_groups)


def test_warps_equal_torchvision_affine():
    """The batched, sync-free warps (methods/pdiscoformer/warp.py) against torchvision's own ``affine``."""
    from torchvision.transforms.functional import InterpolationMode, affine

    images = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    cases = [(30.0, (2.0, -4.0), 1.1), (-90.0, (0.0, 5.0), 0.8), (47.0, (-3.0, 1.0), 1.2)]
    ours = affine_images(images, torch.tensor([c[0] for c in cases]), torch.tensor([c[1] for c in cases]),
                         torch.tensor([c[2] for c in cases]))
    for i, (angle, shift, scale) in enumerate(cases):
        expected = affine(images[i:i + 1], angle=angle, translate=list(shift), scale=scale, shear=[0.0, 0.0])
        assert torch.equal(ours[i:i + 1], expected), i
    wide = torch.rand(2, 4, 12, 20, generator=torch.Generator().manual_seed(1))  # maps: other shapes, float shifts
    for angle, shift, scale, mode in [(-61.3, (1.75, -0.5), 1.31, InterpolationMode.BILINEAR),
                                      (12.0, (-2.25, 3.0), 0.87, InterpolationMode.NEAREST), (0.0, (-3.0, 2.0), 1.0,
                                                                                           InterpolationMode.NEAREST)]:
        expected = affine(wide, angle=angle, translate=list(shift), scale=scale, shear=[0.0, 0.0], interpolation=mode)
        got = rigid_affine(wide, angle=angle, translate=shift, scale=scale, mode=mode.value)
        # bilinear: the grid's float32 rounding differs from torchvision's by an ulp; nearest: the same pixels
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 if mode == InterpolationMode.BILINEAR else 0)
    config = resolve_config("paper")
    first = random_affine(images, config, torch.Generator().manual_seed(5))
    assert torch.equal(first, random_affine(images, config, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, random_affine(images, config, torch.Generator().manual_seed(6)))


def test_class_labels_are_read_from_the_samples_and_required():
    data = synthetic(num_train=16)
    assert data.class_ids() == (0, 1, 2, 3)
    samples = [data[i] for i in range(6)]
    assert [s.meta["class_id"] for s in samples] == [data.scene(i).torso_class for i in range(6)]
    assert {data.scene(i).torso_class for i in range(16)} == {0, 1, 2, 3}
    from benchmark.datasets._synthetic_render import torso_class

    # known answers: HSV value and saturation of the torso's base colour against 0.75 and 0.7
    assert [torso_class(rgb) for rgb in ([0.2, 0.2, 0.3], [0.1, 0.05, 0.6], [0.9, 0.8, 0.8], [0.9, 0.1, 0.1])] == [0, 1, 2, 3]
    targets = ClassTargets(data, "pdiscoformer")
    batch = Batch(images=torch.zeros(6, 3, 4, 4), ids=[str(i) for i in range(6)], meta=[s.meta for s in samples])
    assert targets(batch).tolist() == [s.meta["class_id"] for s in samples] and targets.num_classes == 4

    class Unlabelled:
        name = "unlabelled"

        def class_ids(self):
            return None

    with pytest.raises(UserError, match="dataset 'unlabelled' has none") as err:
        ClassTargets(Unlabelled(), "pdiscoformer")
    assert "\n" not in str(err.value)


def test_a_dataset_without_class_labels_is_refused_by_train_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(DATASETS.get("synthetic"), "class_ids", lambda self: None)
    out = tmp_path / "never"
    result = CliRunner().invoke(cli, ["train", "-m", "pdiscoformer", "-d", "synthetic", "-o", "num_train=8",
                                      "--preset", "tiny", "-p", "backbone_weights=random", "--out", str(out), "-q"])
    assert result.exit_code == 2 and "trains with image-level class labels" in result.output, result.output
    assert "Traceback" not in result.output and not out.exists()


def test_tiny_training_learns_parts_and_beats_random(tmp_path):
    """60 steps of the tiny preset (a random test ViT trained whole) on 64 synthetic creatures; the model.pt it
    writes reloads through --checkpoint to the same maps."""
    train, test = synthetic(num_train=64), synthetic("test", num_test=16)
    method = METHODS.get("pdiscoformer")(**METHODS.get("pdiscoformer").demo_params())
    method.train(train, out_dir=tmp_path, seed=0)
    score = fg_nmi(method, test)
    baseline = fg_nmi(METHODS.get("random")().fit(test, seed=0), test)
    # seed 0 reaches 0.205 here; a run that collapses (some other seeds, docs/pdiscoformer.md) ends below 0.1
    assert score > 0.12 and score > baseline + 0.1, (score, baseline)
    reloaded = METHODS.get("pdiscoformer")(checkpoint=str(tmp_path / "model.pt")).fit(None)
    batch = next(iter(test.batches(4)))
    torch.testing.assert_close(reloaded.predict(batch).scores, method.predict(batch).scores)


def test_train_resumes_after_a_kill_and_its_model_is_evaluated(tmp_path):
    data = ["-d", "synthetic", "-o", "num_train=8", "-o", "num_test=4", "-q", "--num-workers", "0"]
    common = ["-m", "pdiscoformer", "--preset", "tiny", "-p", "backbone_weights=random", "-p", "image_size=32",
              "-p", "checkpoint_every=1", "-p", "ema_decay=0.9", "--batch-size", "4", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(cli, ["train", *common, *data, "--steps", "2"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["train", *common, *data, "--steps", "3", "--resume"])
    assert result.exit_code == 0 and "resumed at step 2" in result.output, result.output
    result = CliRunner().invoke(cli, ["run", "-m", "pdiscoformer", *data, "-o", "image_size=32", "-k", "4",
                                      "--checkpoint", str(tmp_path / "run" / "model.pt"), "--out", str(tmp_path / "rows")])
    assert result.exit_code == 0, result.output


def test_bench_runs_both_steps_on_the_same_computation():
    from benchmark.core.registry import BENCHES

    report = BENCHES.get("pdiscoformer")(batch_size=2, size=32, backbone="test_vit", patch_size=8, num_parts=2,
                                         classes=3, steps=1, warmup=0, device="cpu")
    difference = float(report.split("one transform) = ")[1].split()[0])
    assert difference < 1e-5, report
    assert "release's step, float32 eager" in report and "partbench, float32 eager" in report and "speed-up: x" in report
    # a precision the steps cannot run is refused, not run in float32 under its name
    for option in ("amp", "release_amp"):
        with pytest.raises(UserError, match=f"{option} must be bf16 or none, got 'fp16'"):
            BENCHES.get("pdiscoformer")(**{option: "fp16"}, device="cpu")


def test_the_training_estimate_times_a_tiny_step_and_leaves_paper_sizes_unmeasured():
    cls = METHODS.get("pdiscoformer")
    tiny = {"preset": "tiny", "backbone_weights": "random"}
    seconds = cls.training_seconds(tiny, "cpu")
    assert seconds is not None and 0 < seconds < 600
    assert "60 steps of batch 8 at 64 px on test_vit (preset tiny), measured" in cls.training_estimate(tiny, "cpu")
    assert cls.training_seconds({}, "cpu") is None and cls.training_seconds({"steps": 5}, "cpu") is None
    assert "28 epochs of batch 32 at 518 px" in cls.training_estimate({}, "cpu")
