"""The evaluation protocol object: the one binarisation rule, the mask-source parser and its kinds, the run
key of a mask folder, and that no module outside the protocol spells protocol names or parses mask
spellings."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import benchmark.datasets as D
from benchmark.core.errors import UserError
from benchmark.core.protocol import (MASK_KINDS, PROTOCOL_NAMES, EvaluationProtocol, MaskSource, binarise,
                                     mask_code_max, register_mask_kind)
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


@pytest.mark.parametrize("value, foreground", [(100, None), (200, None), (255, True), (1, True), (0, False)])
def test_a_mask_value_means_the_same_on_real_and_synthetic_data(tmp_path, value, foreground):
    """A predicted mask file holds a binary mask: 0 and the format's maximum code (255 in an 8-bit file, 1 in
    a 0/1 file). Anything else ({0, 100}, {0, 200}) is refused on real and synthetic data alike, naming the
    file; the rule for GT annotation masks (binarise at half the code range) is tested above."""
    root = write_cub(tmp_path / "CUB_200_2011")
    real_dir = tmp_path / "real"
    _save_masks(real_dir, [v[0].replace(".jpg", ".png") for v in CUB_IMAGES.values()],
                lambda rel: next(v[3][::-1] for v in CUB_IMAGES.values() if v[0].replace(".jpg", ".png") == rel),
                value)
    synthetic_dir = tmp_path / "synthetic"
    size = SYNTHETIC_TINY["image_size"]
    _save_masks(synthetic_dir, [f"test/{i:06d}.png" for i in range(SYNTHETIC_TINY["num_test"])],
                lambda rel: (size, size), value)

    def real():
        return D.load("cub", root=root, split="test", view="full", masks=f"predicted:{real_dir}")[0].mask

    def synthetic():
        return D.load("synthetic", split="test", view="full", masks=f"predicted:{synthetic_dir}",
                      **SYNTHETIC_TINY)[0].mask

    for load, folder in ((real, real_dir), (synthetic, synthetic_dir)):
        if foreground is None:
            with pytest.raises(UserError, match=rf"predicted mask {re.escape(str(folder.resolve()))}\S+\.png has "
                                                rf"values \{{0, {value}\}}; expected a binary mask"):
                load()
        else:
            assert bool(load().max() == 1) is foreground
    # the legacy protocol reads any greyscale file's raw codes, as the released notebooks did
    legacy = D.load("synthetic", split="test", view="full", protocol="legacy", masks=f"predicted:{synthetic_dir}",
                    **SYNTHETIC_TINY)[0].mask
    assert float(legacy.max()) == float(value)


# -- the mask-source parser and its kinds -------------------------------------------------------------------
def test_one_parser_for_every_mask_source(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    source = MaskSource.parse(f"predicted:{folder}")
    assert source.kind == "predicted" and source.folder == folder.resolve() and source.dataset_reads == "folder"
    assert MaskSource.parse(source) is source
    assert MaskSource.parse(None).spec == "gt" and MaskSource.parse("gt").needs_gt_masks
    assert not MaskSource.parse("none").needs_gt_masks and MaskSource.parse("none").background == "none"
    with pytest.raises(UserError, match="gt, predicted:DIR, method, none, model:CKPT or unsupervised:NAME"):
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


# -- one owner per concept: protocol names and mask spellings live in benchmark.core.protocol ------------------
CODE_FOLDERS = ("benchmark", "datasets", "metrics", "methods")
OWNER = REPO / "benchmark" / "core" / "protocol.py"


def _strings(path: Path):
    """``(line, node)`` of every string constant of a module that is no docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node


def protocol_name_literals(paths) -> list[str]:
    """Places that spell a protocol name (``"legacy"``, ``"corrected"``) instead of naming it through
    :data:`PROTOCOL_NAMES`, ``DEFAULT_PROTOCOL`` or the rules."""
    return [f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{line}: {node.value!r}"
            for path in paths for line, node in _strings(path) if node.value in PROTOCOL_NAMES]


def mask_spelling_parsers(paths) -> list[str]:
    """Places that take a mask spelling apart by hand: a prefix such as ``"predicted:"`` or a comparison with
    ``"gt"`` instead of :meth:`MaskSource.split` / :meth:`MaskSource.kind_of` and the kind's attributes."""
    prefixes = {f"{name}:" for name, kind in MASK_KINDS.items() if kind.argument}
    found = []
    for path in paths:
        where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        found += [f"{where}:{line}: {node.value!r}" for line, node in _strings(path) if node.value in prefixes]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value == "gt"
                                                     for c in (node.left, *node.comparators)):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def _code_files() -> list[Path]:
    return [path for folder in CODE_FOLDERS for path in sorted((REPO / folder).rglob("*.py")) if path != OWNER]


def test_no_module_spells_protocol_names():
    offenders = protocol_name_literals(_code_files())
    assert not offenders, "name protocols through benchmark.core.protocol instead:\n" + "\n".join(offenders)


def test_no_module_parses_mask_spellings_by_hand():
    offenders = mask_spelling_parsers(_code_files())
    assert not offenders, "ask MaskSource (split, kind_of, the kind's attributes) instead:\n" + "\n".join(offenders)


def test_the_guards_see_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('"""Docstrings may say legacy."""\nif protocol == "legacy":\n    ok = masks != "gt" or '
                   'text.startswith("predicted:")\n')
    assert [o.split(": ", 1)[1] for o in protocol_name_literals([bad])] == ["'legacy'"]
    assert len(mask_spelling_parsers([bad])) == 2


def test_mask_spellings_are_read_by_the_kinds():
    """Plans read spellings without touching the disk (templates, folders made later); where a kind may be
    named is the kind's own attribute; fgbg is a real kind that only plans may name."""
    from benchmark.core.protocol import FolderMasks, mask_kinds_text
    from benchmark.mask_sources import ModelMasks, PlanFgBgMasks

    assert MaskSource.split("predicted:{root}/masks", in_plans=True) == (FolderMasks, "{root}/masks")
    assert MaskSource.kind_of("fgbg", in_plans=True) is PlanFgBgMasks and PlanFgBgMasks.predicted
    assert FolderMasks.spell("/m") == "predicted:/m" and MaskSource.kind_of(None).spell() == "gt"
    with pytest.raises(UserError, match="--masks 'fgbg' cannot be used in a single run.*benchmark train -m fgbg"):
        MaskSource.parse("fgbg")
    with pytest.raises(UserError, match="cannot be used in a reproduce plan"):
        MaskSource.split("model:x.pt", in_plans=True)
    assert ModelMasks.in_runs and not ModelMasks.in_plans
    assert "fgbg" not in mask_kinds_text() and "fgbg" in mask_kinds_text(in_plans=True)
    # the --masks metavar of the CLI names every kind a run accepts
    from benchmark.options import masks_metavar

    runs = {kind.spell(kind.argument) for kind in MASK_KINDS.values() if kind.in_runs}
    assert set(masks_metavar().split("|")) == runs


def test_every_masks_help_is_read_from_the_kinds(monkeypatch):
    """--help of run, train, masks score and data check lists the kinds each takes, from the registry: a kind
    registered later (a plug-in) appears where its tags let it, and no command spells the list by hand."""
    from click.testing import CliRunner

    import benchmark.core.protocol as protocol
    from benchmark.cli import cli

    root = Path(__file__).resolve().parents[1]
    by_hand = re.compile(r"predicted:DIR\||\|predicted:DIR|gt\|none")
    assert [p.name for f in ("benchmark", "datasets", "methods") for p in (root / f).rglob("*.py")
            if by_hand.search(p.read_text())] == []

    def masks_metavar(*command: str) -> str:
        text = CliRunner().invoke(cli, [*command, "--help"], terminal_width=200).output
        return re.search(r"^ +--masks (\S+)", text, re.M).group(1)

    assert masks_metavar("train") == "gt|predicted:DIR|model:CKPT|unsupervised:NAME"
    assert masks_metavar("masks", "score") == "predicted:DIR|model:CKPT|unsupervised:NAME"
    assert masks_metavar("data", "check") == "gt|predicted:DIR|none"
    monkeypatch.setattr(protocol, "MASK_KINDS", dict(MASK_KINDS))  # the registration is undone after the test

    @protocol.register_mask_kind("plugin-kind")
    class PluginMasks(MaskSource):
        """A plug-in's folder of masks."""

        argument = "DIR"
        dataset_reads = "folder"
        needs_preparation = True

    assert masks_metavar("run").endswith("|plugin-kind:DIR") and masks_metavar("train").endswith("|plugin-kind:DIR")
    assert "plugin-kind" not in masks_metavar("data", "check")


def test_the_background_comes_from_the_mask_source():
    assert not MaskSource.parse("none").gives_background
    assert MaskSource.parse("gt").gives_background and MaskSource.parse("method").gives_background


def test_a_mask_folder_is_digested_by_the_one_folder_digest(tmp_path):
    from benchmark.core.cache import folder_digest

    _save_masks(tmp_path / "masks", ["test/000000.png", "test/000001.png"], lambda rel: (8, 8), 255)
    source = MaskSource.parse(f"predicted:{tmp_path / 'masks'}")
    files, content = folder_digest(source.folder)
    assert source.fingerprint() == {"kind": "predicted", "folder": str((tmp_path / "masks").resolve()),
                                    "files": 2, "content": content[:16]}
