"""``dff`` (methods/dff.py): one NMF over the split, DFF's heatmaps and part assignment, beating ``random``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmark.core.errors import UserError
from benchmark.core.registry import DATASETS, METHODS
from benchmark.core.seeding import derive_seed
from benchmark.methods.nmf import nmf
from helpers import sklearn_fg_nmi as fg_nmi

pytestmark = pytest.mark.filterwarnings("ignore::benchmark.methods.backbones.RandomWeightsWarning")


def synthetic(num_test=6, image_size=32, view="fg", **options):
    return DATASETS.get("synthetic")(split="test", view=view, num_test=num_test, image_size=image_size, **options)


def tiny_dff(**params):
    defaults = dict(weights="random", max_iter=60, batch_size=4)
    defaults.update(params)
    return METHODS.get("dff")(**defaults)


def test_registered_with_tags_and_defaults():
    cls = METHODS.get("dff")
    assert cls.transductive and not cls.requires_training
    d = cls.param_defaults()
    assert (d["backbone"], d["max_iter"], d["tol"], d["assign"]) == ("vgg19", 200, 1e-4, "normalised")
    assert d["layer"] is None  # the backbone's default: relu5_4 for VGG (test_one_factorisation_... reads it)
    assert cls.demo_params()["weights"] == "random" and tiny_dff().weights_id() == "random:seed0"
    with pytest.raises(UserError, match="assign"):
        tiny_dff(assign="softmax").fit(synthetic(num_test=1), seed=0)


def test_beats_random_on_synthetic():
    data = synthetic(num_test=12, image_size=48)
    baseline = fg_nmi(METHODS.get("random")().fit(data, seed=0), data)
    method = tiny_dff(max_iter=100).fit(data, seed=0)
    for assign in ("normalised", "raw"):  # the rule only matters at predict time: one fit for both
        method.assign = assign
        score = fg_nmi(method, data)
        assert score > 0.2 and score > baseline + 0.15, (assign, score, baseline)


def test_one_factorisation_of_the_whole_split_and_dff_heatmaps():
    """Oracle: V assembled by hand from the backbone (all positions of all images, channels as columns),
    factorised with the same seed; heatmaps = bilinear upsampling + per-image, per-factor max normalisation
    (NumPy), assignment = their argmax."""
    data = synthetic(num_test=5, image_size=48)
    method = tiny_dff().fit(data, seed=4)
    assert method.layer_ == "relu5_4"
    batches = list(data.batches(4))
    rows = []
    for batch in batches:
        f = method.extractor_.backbone(batch.images)["relu5_4"].half().float()
        rows.append(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
    V = torch.cat(rows)
    assert V.shape == (5 * 3 * 3, 512)
    W, H, history = nmf(V, 4, max_iter=60, tol=1e-4, seed=derive_seed(4, "dff", "init"))
    torch.testing.assert_close(method.W_, W)
    torch.testing.assert_close(method.H_, H)
    assert method.n_iter_ == history.n_iter

    batch = batches[1]  # the fifth image: rows 36..44 of V
    maps = method.predict(batch)
    assert maps.kind == "probs" and maps.scores.shape == (1, 4, 48, 48)
    torch.testing.assert_close(maps.scores.sum(1), torch.ones(1, 48, 48))
    heat = F.interpolate(W[36:45].reshape(1, 3, 3, 4).permute(0, 3, 1, 2), size=(48, 48), mode="bilinear",
                         align_corners=False).numpy()[0]
    normalised = heat / heat.max(axis=(1, 2), keepdims=True)
    assert (maps.part_labels()[0].numpy() == normalised.argmax(0)).mean() > 0.999
    method.assign = "raw"
    raw = method.predict(batch)
    assert (raw.part_labels()[0].numpy() == heat.argmax(0)).mean() > 0.999


def test_seeds_and_unseen_images():
    data = synthetic(num_test=4)
    a = tiny_dff().fit(data, seed=0)
    b = tiny_dff().fit(data, seed=0)
    c = tiny_dff().fit(data, seed=1)
    assert torch.equal(a.W_, b.W_) and not torch.equal(a.W_, c.W_)
    batch = next(iter(data.batches(4)))
    assert torch.equal(a.predict(batch).scores, b.predict(batch).scores)

    # Same ids, different pixels (another view of the same scenes): projected onto the fixed H, not looked up.
    H = a.H_.clone()
    other = next(iter(synthetic(num_test=4, view="full").batches(4)))
    assert other.ids == batch.ids
    maps = a.predict(other)
    assert torch.equal(a.H_, H) and maps.scores.shape == (4, 4, 32, 32)
    assert torch.isfinite(maps.scores).all()
    # Projection of a seen image onto H reproduces its jointly factorised assignment (mostly).
    projected = a._project(batch.images, batch.ids)
    joint = a.W_.reshape(4, -1, 4).argmax(-1)
    agree = (projected.permute(0, 2, 3, 1).reshape(4, -1, 4).argmax(-1) == joint).float().mean()
    assert agree > 0.7, agree


def test_backbone_input_size_option():
    method = tiny_dff(image_size="40", max_iter="5").fit(synthetic(num_test=2), seed=0)  # text, as from the CLI
    assert method.W_.shape == (2 * 2 * 2, 4)  # 32 px images fed at 40 px: relu5_4 maps of 2x2
    batch = next(iter(synthetic(num_test=2).batches(2)))
    assert method.predict(batch).scores.shape == (2, 4, 32, 32)  # heatmaps at the image's own size
