import pytest
import torch

from benchmark.core.types import Batch, PartMaps, Sample, collate


def _sample(i, h=8, w=6):
    return Sample(image=torch.rand(3, h, w), id=f"s{i}", keypoints=torch.rand(3, 2) * 5,
                  visible=torch.tensor([True, False, True]), mask=torch.ones(h, w),
                  part_labels=torch.zeros(h, w, dtype=torch.int64), bbox=torch.tensor([0.0, 0.0, w, h]))


def test_collate_stacks_and_keeps_ids():
    batch = collate([_sample(0), _sample(1)])
    assert isinstance(batch, Batch) and len(batch) == 2 and batch.ids == ["s0", "s1"]
    assert batch.images.shape == (2, 3, 8, 6) and batch.keypoints.shape == (2, 3, 2)
    assert batch.masks.shape == (2, 8, 6) and batch.size == (8, 6)


def test_collate_refuses_mixed_sizes_and_drops_partial_fields():
    with pytest.raises(ValueError, match="different sizes"):
        collate([_sample(0), _sample(1, h=9)])
    a, b = _sample(0), _sample(1)
    b.mask = None
    assert collate([a, b]).masks is None


def test_sample_validate_catches_shape_errors():
    s = _sample(0)
    s.validate()
    s.mask = torch.ones(3, 3)
    with pytest.raises(ValueError, match="mask shape"):
        s.validate()


def test_partmaps_resize_softmax_and_labels():
    logits = torch.randn(2, 4, 5, 5)
    maps = PartMaps(logits, image_size=(20, 20), kind="logits", align_corners=True)
    big = maps.resized()
    assert big.scores.shape == (2, 4, 20, 20)
    expected = torch.nn.functional.interpolate(logits, size=(20, 20), mode="bilinear", align_corners=True)
    torch.testing.assert_close(big.scores, expected)
    torch.testing.assert_close(big.probabilities().sum(1), torch.ones(2, 20, 20))
    assert torch.equal(big.part_labels(), expected.argmax(1))


def test_partmaps_background_channel():
    scores = torch.randn(1, 5, 4, 4)
    maps = PartMaps(scores, image_size=(4, 4), has_background=True)
    assert maps.num_parts == 4
    assert torch.equal(maps.part_labels(), scores[:, 1:].argmax(1))
    torch.testing.assert_close(maps.part_probabilities(), scores.softmax(1)[:, 1:])
    torch.testing.assert_close(maps.background_probability(), scores.softmax(1)[:, 0])


def test_partmaps_rejects_bad_shapes():
    with pytest.raises(ValueError):
        PartMaps(torch.zeros(4, 4), image_size=(4, 4))
    with pytest.raises(ValueError):
        PartMaps(torch.zeros(1, 1, 4, 4), image_size=(4, 4), has_background=True)
