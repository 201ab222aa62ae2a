"""SCOPS training: a real step on tiny synthetic images (finite losses, checkpoint written and loadable),
and the quirk switches changing what they should."""

from __future__ import annotations

import math

import pytest
import torch

import benchmark.datasets as datasets
from benchmark.core.method import RunContext
from benchmark.core.registry import METHODS
from benchmark.core.types import Batch
from benchmark.methods.scops.method import CAFFE_MEAN_BGR, PRESETS, StepLoss
from benchmark.methods.scops.optim import DuplicatedSGD, scops_optimizer_factory
from benchmark.methods.segmenter import PartSegmenter
from benchmark.methods.training import ParamGroup, TrainConfig

TINY = dict(preset="tiny", steps=2, image_size=16, batch_size=2, checkpoint_every=1)


def test_tiny_training_runs_with_finite_losses_and_reloads(tmp_path):
    data = datasets.load("synthetic", split="train", view="train", num_train=4, num_test=2, image_size=16)
    method = METHODS.get("scops")(num_parts=3, **TINY)
    method.context = RunContext(cache_dir=tmp_path / "cache")
    method.fit(data, seed=0, device="cpu")  # trains into the cache
    losses = method.train_result_.last_losses
    assert set(losses) == {"total", "con", "eqv", "lmeqv", "sc", "orth"}
    assert all(math.isfinite(v) for v in losses.values())
    assert losses["total"] == pytest.approx(sum(v for k, v in losses.items() if k != "total"), rel=1e-5)
    batch = Batch(images=torch.rand(1, 3, 16, 16), ids=["x"])
    maps = method.predict(batch)
    assert maps.scores.shape[1] == 4 and maps.has_background
    # the same training again comes from the cache
    again = METHODS.get("scops")(num_parts=3, **TINY)
    again.context = RunContext(cache_dir=tmp_path / "cache")
    again.fit(data, seed=0, device="cpu")
    model_file = again.trained_from_cache_
    torch.testing.assert_close(again.predict(batch).scores, maps.scores)
    # the model.pt written by the trainer loads back as a checkpoint and predicts the same
    reloaded = METHODS.get("scops")(num_parts=3, checkpoint=model_file).fit(None)
    torch.testing.assert_close(reloaded.predict(batch).scores, maps.scores)


def test_mean_swap_quirk_shifts_red_and_blue():
    images = torch.full((1, 3, 2, 2), 0.5)
    on = StepLoss(None, PRESETS["tiny"], concentration_b2=True, mean_swap=True, mask_features=True)
    off = StepLoss(None, PRESETS["tiny"], concentration_b2=True, mean_swap=False, mask_features=True)
    shift = (on._rebuilt_images(images) - images)[0, :, 0, 0]
    expected = torch.tensor([CAFFE_MEAN_BGR[0] - CAFFE_MEAN_BGR[2], 0.0, CAFFE_MEAN_BGR[2] - CAFFE_MEAN_BGR[0]]) / 255
    torch.testing.assert_close(shift, expected)
    assert torch.equal(off._rebuilt_images(images), images)


def test_duplicate_params_quirk_selects_the_legacy_optimiser():
    seg = PartSegmenter(3)
    groups = [ParamGroup("backbone", list(seg.backbone_parameters())),
              ParamGroup("classifier", list(seg.classifier_parameters()), lr_mult=10.0)]
    config = TrainConfig(steps=1, batch_size=2, lr=1e-5)
    legacy = scops_optimizer_factory(seg, duplicate_params=True)(groups, config)
    fixed = scops_optimizer_factory(seg, duplicate_params=False)(groups, config)
    assert isinstance(legacy, DuplicatedSGD) and isinstance(fixed, torch.optim.SGD)
    repeats = legacy._repeats
    assert repeats[id(seg.conv1.weight)] == 1
    assert repeats[id(seg.layer1[0].conv1.weight)] == 3
    assert repeats[id(seg.layer1[0].downsample[0].weight)] == 4
    assert id(seg.layer5.conv2d_list[0].weight) not in repeats  # the classifier is listed once
    assert [g["lr_mult"] for g in legacy.param_groups] == [1.0, 10.0]


def test_resume_is_exact_with_the_legacy_optimiser(tmp_path):
    """1 step + resume to 2 == 2 steps straight (momentum buffers of DuplicatedSGD and the basis restored)."""
    data = datasets.load("synthetic", split="train", view="train", num_train=4, num_test=2, image_size=16)
    from benchmark.core.seeding import seed_everything

    params = dict(TINY, steps=2)
    seed_everything(1)  # the synthetic train view augments from the global RNG (no DataLoader workers)
    straight = METHODS.get("scops")(num_parts=2, **params)
    straight.train(data, out_dir=tmp_path / "a", seed=1, device="cpu")
    seed_everything(1)
    first = METHODS.get("scops")(num_parts=2, **dict(params, steps=1))
    first.train(data, out_dir=tmp_path / "b", seed=1, device="cpu")
    resumed = METHODS.get("scops")(num_parts=2, **params)
    result = resumed.train(data, out_dir=tmp_path / "b", resume=True, seed=1, device="cpu")
    assert result.resumed_from == 1
    a, b = straight.net_.state_dict(), resumed.net_.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
