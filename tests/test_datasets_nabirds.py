"""NABirds on a miniature tree in the official format (string image ids, 11 keypoints with ids from 0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import benchmark.datasets as D
from benchmark.core.errors import UserError

PARTS = ["bill", "crown", "nape", "left eye", "right eye", "belly", "breast", "back", "tail", "left wing",
         "right wing"]
# uuid -> (path, is_train, class, (W, H), box)
IMAGES = {
    "0a1b2c3d-0000-4000-8000-000000000001": ("0295/aaa1.jpg", 0, 295, (60, 40), (5, 4, 40, 30)),
    "0a1b2c3d-0000-4000-8000-000000000002": ("0295/aaa2.jpg", 1, 295, (50, 50), (2, 3, 40, 40)),
    "0a1b2c3d-0000-4000-8000-000000000003": ("0313/bbb3.jpg", 0, 313, (40, 64), (1, 2, 30, 50)),
    "0a1b2c3d-0000-4000-8000-000000000004": ("0313/bbb4.jpg", 1, 313, (48, 36), (2, 2, 40, 30)),
}


def write_tree(root):
    (root / "parts").mkdir(parents=True, exist_ok=True)
    write = lambda name, lines: (root / name).write_text("\n".join(lines) + "\n")  # noqa: E731
    write("images.txt", [f"{u} {v[0]}" for u, v in IMAGES.items()])
    write("train_test_split.txt", [f"{u} {v[1]}" for u, v in IMAGES.items()])
    write("bounding_boxes.txt", [f"{u} " + " ".join(str(c) for c in v[4]) for u, v in IMAGES.items()])
    write("image_class_labels.txt", [f"{u} {v[2]}" for u, v in IMAGES.items()])
    write("classes.txt", ["295 American Goldfinch (Breeding male)", "313 Blue Jay"])
    write("parts/parts.txt", [f"{k} {n}" for k, n in enumerate(PARTS)])
    lines = []
    for u, (_, _, _, (w, h), _) in IMAGES.items():
        for k in range(len(PARTS)):
            visible = int(k % 4 != 3)
            lines.append(f"{u} {k} {(3 + 3 * k) % w if visible else 0} {(2 + 2 * k) % h if visible else 0} {visible}")
    write("parts/part_locs.txt", lines)
    for u, (rel, _, _, (w, h), _) in IMAGES.items():
        path = root / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(path)
    return root


def build_fixture(tmp_path):
    """Miniature tree for the shared contract tests (tests/dataset_fixtures.py): ``(root, options)``."""
    return write_tree(tmp_path / "nabirds"), {"masks": "none"}


def test_index_views_and_flip(tmp_path):
    root = write_tree(tmp_path / "nabirds")
    test = D.load("nabirds", root=root, split="test", view="whole", protocol="whole-image:32-crop", masks="none")
    assert len(test) == 2 and test.keypoint_names == tuple(PARTS) and test.num_keypoints == 11
    sample = test[0]  # 60x40 -> 48x32 -> crop 32x32 at left 8
    assert sample.size == (32, 32)
    assert torch.allclose(sample.keypoints[1], torch.tensor([6 * 0.8 - 8, 4 * 0.8]))
    assert not sample.visible[3] and not sample.visible[1]  # invisible in the file / left of the crop
    assert test.flip_permutation[3] == 4 and test.flip_permutation[9] == 10 and test.flip_permutation[0] == 0
    train = D.load("nabirds", root=root, split="train", view="train", masks="none")
    assert len(train) == 2 and train[0].keypoints.shape == (11, 2)
    with pytest.raises(UserError, match="no foreground masks"):
        D.load("nabirds", root=root, split="test", masks="gt")


def test_bad_lines_and_data_check(tmp_path):
    from benchmark.cli import cli

    root = write_tree(tmp_path / "nabirds")
    ok = CliRunner().invoke(cli, ["data", "check", "-d", "nabirds", "--data-root", str(root), "-q"])
    assert ok.exit_code == 0, ok.output
    locs = root / "parts" / "part_locs.txt"
    lines = locs.read_text().splitlines()
    locs.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(UserError, match="has 0 lines for part 10"):
        D.load("nabirds", root=root, masks="none")
    locs.write_text("\n".join(lines[:5] + ["broken line"] + lines[5:]) + "\n")
    bad = CliRunner().invoke(cli, ["data", "check", "-d", "nabirds", "--data-root", str(root), "-q"])
    assert bad.exit_code == 2 and "part_locs.txt, line 6" in bad.output
    steps = CliRunner().invoke(cli, ["data", "download", "nabirds"])
    assert steps.exit_code == 0 and "dl.allaboutbirds.org/nabirds" in steps.output
