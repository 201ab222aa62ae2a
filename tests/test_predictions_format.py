"""The `predictions` method: its file format, the round trip from saved PartMaps, and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark.runner import without_skipped
from PIL import Image

from benchmark.core.errors import UserError
from benchmark.core.registry import METHODS
from benchmark.core.types import Batch, PartMaps
from benchmark.methods import predictions as pred_mod

IDS = ["birds/a.jpg", "birds/b.jpg", "c.png"]


def _batch(size=(16, 24), ids=IDS, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Batch(images=torch.rand(len(ids), 3, *size, generator=gen), ids=list(ids))


def _method(tmp_path, **params):
    return METHODS.get("predictions")(dir=str(tmp_path), **params)


def test_registered_with_its_parameters():
    cls = METHODS.get("predictions")
    assert set(cls.param_names()) == {"num_parts", "dir", "on_missing"}
    assert not cls.requires_training


@pytest.mark.parametrize("kind,has_bg,align", [("logits", True, True), ("probs", False, False)])
def test_round_trip_is_bit_identical(tmp_path, kind, has_bg, align):
    batch = _batch()
    scores = torch.randn(3, 5, 4, 6)
    if kind == "probs":
        scores = scores.softmax(1)
    maps = PartMaps(scores, image_size=batch.size, kind=kind, has_background=has_bg, align_corners=align)
    pred_mod.save_part_maps(tmp_path, batch, maps)
    assert (tmp_path / "birds" / "a.jpg.npz").is_file()
    got = _method(tmp_path).predict(batch)
    assert torch.equal(got.scores, maps.scores)
    assert (got.kind, got.has_background, got.align_corners, got.image_size) == (kind, has_bg, align, batch.size)


def test_npy_rules_kind_and_background(tmp_path):
    batch = _batch(ids=["x.jpg", "y.jpg"])
    logits = np.random.default_rng(0).normal(size=(2, 5, 8, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", logits[0])  # image extension dropped: allowed
    np.save(tmp_path / "y.jpg.npy", logits[1])
    got = _method(tmp_path, num_parts=4).predict(batch)  # 5 = K + 1 channels -> background
    assert got.has_background and got.kind == "logits" and got.num_parts == 4
    np.testing.assert_array_equal(got.scores.numpy(), logits)
    probs = torch.from_numpy(logits).softmax(1).numpy()
    np.save(tmp_path / "x.npy", probs[0])
    np.save(tmp_path / "y.jpg.npy", probs[1])
    got = _method(tmp_path).predict(batch)  # no K known: every channel is a part
    assert got.kind == "probs" and not got.has_background and got.num_parts == 5


def test_sidecar_describes_npy_files(tmp_path):
    batch = _batch(ids=["x"])
    np.save(tmp_path / "x.npy", np.full((3, 4, 6), 0.25, dtype=np.float32))  # looks like nothing in particular
    (tmp_path / "predictions.json").write_text(json.dumps({"num_parts": 2, "kind": "logits", "has_background": True,
                                                          "align_corners": True}))
    got = _method(tmp_path).predict(batch)
    assert (got.kind, got.has_background, got.align_corners, got.num_parts) == ("logits", True, True, 2)


def test_label_png_is_one_hot_at_image_size_with_nearest(tmp_path):
    batch = _batch(size=(8, 12), ids=["img"])
    labels = np.array([[0, 1, 2], [3, 0, 1]], dtype=np.uint8)  # 2x3, the image's aspect
    Image.fromarray(labels).save(tmp_path / "img.png")
    got = _method(tmp_path, num_parts=3).predict(batch)
    assert got.has_background and got.kind == "probs" and got.scores.shape == (1, 4, 8, 12)
    expected = np.repeat(np.repeat(labels, 4, axis=0), 4, axis=1)  # nearest upsampling by 4, by hand
    assert np.array_equal(got.scores[0].argmax(0).numpy(), expected)
    assert np.array_equal(got.scores[0].sum(0).numpy(), np.ones((8, 12)))


def _error(tmp_path, batch, **params):
    with pytest.raises(UserError) as info:
        _method(tmp_path, **params).predict(batch)
    return str(info.value)


def test_missing_file_names_the_expected_path(tmp_path):
    msg = _error(tmp_path, _batch(ids=["sub/q.jpg"]))
    assert str(tmp_path / "sub" / "q.jpg.npz") in msg and "on_missing=skip" in msg


def test_missing_dir_and_no_dir(tmp_path):
    assert "does not exist" in _error(tmp_path / "nope", _batch())
    with pytest.raises(UserError, match="dir=DIR"):
        METHODS.get("predictions")().predict(_batch())


def test_wrong_channel_count(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((7, 4, 6), dtype=np.float32))
    msg = _error(tmp_path, _batch(ids=["x"]), num_parts=4)
    assert "x.npy" in msg and "7 channels" in msg


def test_nan_values(tmp_path):
    a = np.zeros((4, 4, 6), dtype=np.float32)
    a[1, 2, 3] = np.nan
    np.save(tmp_path / "x.npy", a)
    assert "NaN" in _error(tmp_path, _batch(ids=["x"]))


def test_label_outside_range(tmp_path):
    Image.fromarray(np.array([[0, 5], [1, 2]], dtype=np.uint8)).save(tmp_path / "x.png")
    msg = _error(tmp_path, _batch(size=(8, 8), ids=["x"]), num_parts=4)
    assert "x.png" in msg and "0..4" in msg


def test_label_png_must_be_single_channel(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    assert "single-channel" in _error(tmp_path, _batch(size=(8, 8), ids=["x"]), num_parts=4)


def test_shape_not_matching_the_image(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 6, 6), dtype=np.float32))  # square maps, 16x24 image
    msg = _error(tmp_path, _batch(ids=["x"]))
    assert "x.npy" in msg and "6x6" in msg and "16x24" in msg


def test_coarse_maps_with_rounded_aspect_are_accepted(tmp_path):
    np.save(tmp_path / "x.npy", np.full((4, 33, 26), 2.0, dtype=np.float32))  # stride-8 maps of a 256x200 image
    assert _method(tmp_path).predict(_batch(size=(256, 200), ids=["x"])).scores.shape == (1, 4, 33, 26)


def test_saved_image_size_is_checked(tmp_path):
    batch = _batch()
    pred_mod.save_part_maps(tmp_path, batch, PartMaps(torch.zeros(3, 4, 4, 6), image_size=batch.size))
    assert "16x24" in _error(tmp_path, _batch(size=(32, 48)))


def test_ambiguous_files(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 4, 6), dtype=np.float32))
    np.save(tmp_path / "x.jpg.npy", np.zeros((4, 4, 6), dtype=np.float32))
    assert "keep exactly one" in _error(tmp_path, _batch(ids=["x.jpg"]))


def test_mixed_formats_in_a_batch(tmp_path):
    np.save(tmp_path / "x.npy", np.full((4, 4, 6), 2.0, dtype=np.float32))  # logits
    np.save(tmp_path / "y.npy", np.full((4, 4, 6), 0.25, dtype=np.float32))  # looks like probabilities
    assert "one format" in _error(tmp_path, _batch(ids=["x", "y"]))


def test_unsafe_ids_are_rejected(tmp_path):
    assert "safe relative path" in _error(tmp_path, _batch(ids=["../etc/x"]))


def test_skip_missing_counts_and_drops(tmp_path):
    batch = _batch()
    maps = PartMaps(torch.randn(3, 4, 4, 6), image_size=batch.size)
    pred_mod.save_part_maps(tmp_path, batch, maps)
    (tmp_path / "birds" / "b.jpg.npz").unlink()
    method = _method(tmp_path, on_missing="skip")
    got = method.predict(batch)
    assert method.skipped_ids == ["birds/b.jpg"]
    assert torch.isnan(got.scores[1]).all() and not torch.isnan(got.scores[[0, 2]]).any()
    kept_batch, kept_maps = without_skipped(batch, got, method.skipped_ids)
    assert kept_batch.ids == ["birds/a.jpg", "c.png"]
    assert torch.equal(kept_maps.scores, maps.scores[[0, 2]])
    assert torch.equal(kept_batch.images, batch.images[[0, 2]])
    assert without_skipped(batch, got, IDS) is None


def test_per_view_folders_pick_the_maps_of_this_image(tmp_path):
    fg, full = _batch(seed=1), _batch(seed=2)  # same ids and size, different pixels (two views)
    fg_maps = PartMaps(torch.randn(3, 4, 4, 6), image_size=fg.size)
    full_maps = PartMaps(torch.randn(3, 4, 4, 6), image_size=full.size)
    pred_mod.save_part_maps(tmp_path / "fg", fg, fg_maps)
    pred_mod.save_part_maps(tmp_path / "full", full, full_maps)
    pred_mod.write_sidecar(tmp_path, {"folders": ["fg", "full"], "num_parts": 4})
    method = _method(tmp_path)
    assert torch.equal(method.predict(fg).scores, fg_maps.scores)
    assert torch.equal(method.predict(full).scores, full_maps.scores)
