"""Tests of the synthetic renderer on its own (NumPy level)."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import rgb_to_hsv

from benchmark.datasets._synthetic_render import (
    KEYPOINT_PARTS,
    NUM_PARTS,
    PART_HUES,
    keypoint_visibility,
    render_scene,
)


def test_keypoint_visibility_reads_the_pixel_under_the_keypoint():
    head = KEYPOINT_PARTS[0]
    labels = np.zeros((4, 5), dtype=np.int64)
    labels[1, 2] = head
    kp = np.zeros((len(KEYPOINT_PARTS), 2), dtype=np.float32)
    kp[:] = (2.5, 1.5)  # centre of pixel (row 1, col 2)
    kp[0] = (2.01, 1.99)  # near a corner of the same pixel
    kp[1] = (5.2, 1.5)  # outside the image
    vis = keypoint_visibility(kp, labels)
    expected = np.array([part == head for part in KEYPOINT_PARTS])  # keypoints of other parts: occluded
    expected[1] = False
    assert np.array_equal(vis, expected) and expected.sum() >= 2


def test_scene_is_a_pure_function_of_the_generator():
    a = render_scene(np.random.default_rng(5), 40, 0.5)
    b = render_scene(np.random.default_rng(5), 40, 0.5)
    for name in ("image", "labels", "keypoints", "visible"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.image.dtype == np.float32 and a.labels.dtype == np.int64
    assert a.image.min() >= 0 and a.image.max() <= 1


def test_difficulty_adds_part_coloured_clutter():
    """More saturated (part-like) background pixels at higher difficulty (the palette overlap knob)."""
    fractions = []
    for difficulty in (0.0, 1.0):
        values = []
        for seed in range(12):
            scene = render_scene(np.random.default_rng(seed), 40, difficulty)
            background = scene.labels == 0
            values.append((rgb_to_hsv(scene.image)[..., 1][background] > 0.45).mean())
        fractions.append(np.mean(values))
    assert fractions[1] > fractions[0] + 0.1


def test_parts_keep_their_hue_family():
    """The median hue of every part stays near its palette hue, so colour tells the part types apart."""
    hues = {label: [] for label in range(1, NUM_PARTS + 1)}
    for seed in range(12):
        scene = render_scene(np.random.default_rng(seed), 48, 0.5)
        hsv = rgb_to_hsv(scene.image)
        for label in hues:
            hues[label].extend(hsv[..., 0][scene.labels == label].tolist())
    for label, values in hues.items():
        offset = (np.asarray(values) - PART_HUES[label] + 0.5) % 1.0 - 0.5  # circular difference
        assert abs(np.median(offset)) < 0.06, label
