"""The evaluation protocol object: the one binarisation rule, the mask-source parser and its kinds, the run
key of a mask folder, and that no module outside the protocol compares protocol names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import benchmark.datasets as D
from benchmark.core.errors import UserError
from benchmark.core.protocol import (MASK_KINDS, EvaluationProtocol, MaskSource, binarise, mask_code_max,
                                     register_mask_kind)
from benchmark.runner import RunConfig, run, run_key

from helpers import SYNTHETIC_TINY
from test_datasets_cub import IMAGES as CUB_IMAGES
from test_datasets_cub import write_tree as write_cub

REPO = Path(__file__).resolve().parents[1]


# -- one binarisation rule ----------------------------------------------------------------------------------
def test_maximum_code_comes_from_the_file_format():
    assert mask_code_max(np.array([0, 1], np.uint8)) == 1  # a 0/1 file
    assert mask_code_max(np.array([0, 100], np.uint8)) == 255  # an 8-bit file that does not use 255
    assert mask_code_max(np.array([0, 300], np.uint16)) == 65535
    assert mask_code_max(np.array([0, 300], np.int32)) == 65535  # PIL's 32-bit view of a 16-bit PNG
    assert mask_code_max(np.array([True, False])) == 1
    assert binarise(np.array([0, 127, 128, 255], np.uint8)).tolist() == [0, 0, 1, 1]
    assert binarise(np.array([0, 1], np.uint8)).tolist() == [0, 1]
    assert binarise(np.array([0.0, 0.49, 0.5], np.float32)).tolist() == [0, 0, 1]


def _save_masks(folder: Path, relpaths, shape_of, value: int) -> None:
    for rel in relpaths:
        h, w = shape_of(rel)
        mask = np.zeros((h, w), np.uint8)
        mask[: h // 2] = value
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(path)


@pytest.mark.parametrize("value, foreground", [(100, False), (200, True), (1, True)])
def test_a_mask_value_means_the_same_on_real_and_synthetic_data(tmp_path, value, foreground):
    """{0, 100} in an 8-bit file is background everywhere (100 < 128); {0, 200} and {0, 1} foreground."""
    root = write_cub(tmp_path / "CUB_200_2011")
    real_dir = tmp_path / "real"
    _save_masks(real_dir, [v[0].replace(".jpg", ".png") for v in CUB_IMAGES.values()],
                lambda rel: next(v[3][::-1] for v in CUB_IMAGES.values() if v[0].replace(".jpg", ".png") == rel),
                value)
    real = D.load("cub", root=root, split="test", view="full", masks=f"predicted:{real_dir}")[0].mask
    synthetic_dir = tmp_path / "synthetic"
    size = SYNTHETIC_TINY["image_size"]
    _save_masks(synthetic_dir, [f"test/{i:06d}.png" for i in range(SYNTHETIC_TINY["num_test"])],
                lambda rel: (size, size), value)
    synthetic = D.load("synthetic", split="test", view="full", masks=f"predicted:{synthetic_dir}",
                       **SYNTHETIC_TINY)[0].mask
    assert bool(real.max() == 1) is foreground
    assert bool(synthetic.max() == 1) is foreground


# -- the mask-source parser and its kinds -------------------------------------------------------------------
def test_one_parser_for_every_mask_source(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    source = MaskSource.parse(f"predicted:{folder}")
    assert source.kind == "predicted" and source.folder == folder.resolve() and source.dataset_reads == "folder"
    assert MaskSource.parse(source) is source
    assert MaskSource.parse(None).spec == "gt" and MaskSource.parse("gt").needs_gt_masks
    assert not MaskSource.parse("none").needs_gt_masks and MaskSource.parse("none").background == "none"
    with pytest.raises(UserError, match="gt, predicted:DIR, method or none"):
        MaskSource.parse("predicted")


def test_a_new_mask_kind_is_a_small_class(tmp_path):
    """A kind that computes masks per batch (as a model would): registered once, parsed by the one parser,
    its masks reach scoring through the shared traversal."""

    @register_mask_kind("test-everything")
    class Everything(MaskSource):
        """Every pixel is foreground."""

        def batch_masks(self, batch):
            return torch.ones(len(batch), *batch.size, device=batch.device)

    try:
        assert MaskSource.parse("test-everything").dataset_reads is None
        common = dict(method="random", dataset="synthetic", dataset_options=SYNTHETIC_TINY, metrics=("nmi",))
        everything = run(RunConfig(masks="test-everything", **common), out_dir=None).rows[0]
        nothing = run(RunConfig(masks="none", **common), out_dir=None).rows[0]
        assert everything["masks"] == "test-everything"
        assert everything["value"] == pytest.approx(nothing["value"], abs=1e-12)  # all foreground = no background
    finally:
        MASK_KINDS.pop("test-everything")


def test_a_mask_kind_can_write_its_masks_once_per_run(tmp_path):
    """A kind with ``needs_preparation`` (as a model writing masks into a cache): ``prepare`` gets the FG view
    of every split the run evaluates and returns the source the datasets read; rows keep the kind's spec."""
    from benchmark.core.protocol import FolderMasks

    calls = []

    class Written(FolderMasks):
        @property
        def spec(self):
            return "test-written"

    @register_mask_kind("test-written")
    class WriteEverything(MaskSource):
        needs_preparation = True

        def prepare(self, views, **kwargs):
            calls.append(sorted(v.split for v in views))
            for view in views:
                for i in range(len(view)):
                    path = tmp_path / f"{view.sample_id(i)}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(path)
            return Written(str(tmp_path))

    try:
        common = dict(method="random", dataset="synthetic", dataset_options=SYNTHETIC_TINY, metrics=("nmi",))
        written = run(RunConfig(masks="test-written", **common), out_dir=None).rows[0]
        nothing = run(RunConfig(masks="none", **common), out_dir=None).rows[0]
        assert calls == [["test"]] and written["masks"] == "test-written"
        assert written["value"] == pytest.approx(nothing["value"], abs=1e-12)
    finally:
        MASK_KINDS.pop("test-written")


def test_the_protocol_is_resolved_with_the_datasets_conventions():
    cls = D.DATASETS.get("deepfashion")
    legacy = EvaluationProtocol.resolve("legacy", "none", dataset=cls)
    assert legacy.align_corners("fg") is True and legacy.background_rule("full") == "max_normalised"
    corrected = EvaluationProtocol.resolve("corrected", "none", dataset=cls)
    assert corrected.align_corners("fg") is None and corrected.background_rule("full") is None
    assert legacy.label_set("fg", "keypoints", "ari") == "fg_with_background"
    assert legacy.label_set("fg", "keypoints", "nmi") == corrected.label_set("fg", "keypoints", "ari") == "fg"
    with pytest.raises(UserError, match="unknown protocol"):
        EvaluationProtocol.resolve("strict")
    ds = D.load("synthetic", split="test", view="fg", protocol=legacy, **SYNTHETIC_TINY)
    assert ds.protocol.name == "legacy" and ds.masks.spec == "none"  # the object's own mask source is kept


# -- the run key of a mask folder -----------------------------------------------------------------------------
def _key(masks: str) -> str:
    return run_key(RunConfig(method="random", dataset="synthetic", dataset_options=SYNTHETIC_TINY, masks=masks))


def test_mask_folder_run_key_follows_the_folder_and_its_content(tmp_path, monkeypatch):
    for where, value in (("a", 255), ("b", 0)):
        _save_masks(tmp_path / where / "masks", ["test/000000.png"], lambda rel: (32, 32), value)
    monkeypatch.chdir(tmp_path / "a")
    key_a = _key("predicted:masks")
    assert _key(f"predicted:{tmp_path / 'a' / 'masks'}") == key_a  # absolute spelling, same folder
    assert _key("predicted:./masks/") == key_a
    monkeypatch.chdir(tmp_path / "b")
    assert _key("predicted:masks") != key_a  # same text, another folder
    before = _key("predicted:masks")
    _save_masks(tmp_path / "b" / "masks", ["test/000000.png"], lambda rel: (32, 32), 255)  # a changed file
    changed = _key("predicted:masks")
    assert changed != before
    (tmp_path / "b" / "masks" / "test" / "000001.png").write_bytes(
        (tmp_path / "b" / "masks" / "test" / "000000.png").read_bytes())  # an added file
    assert _key("predicted:masks") not in (before, changed, key_a)


# -- the done criterion of the refactoring: no protocol names compared outside the protocol module ---------
def test_no_module_compares_protocol_names():
    offenders = []
    for folder in ("benchmark", "datasets", "metrics", "methods"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "protocol.py" and path.parent.name == "core":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if '"legacy"' in line and not re.search(r"click\.Choice\(", line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "read the rules of benchmark.core.protocol instead:\n" + "\n".join(offenders)
