"""NABirds (Van Horn et al., CVPR 2015): CUB's tree layout with string image ids and 11 keypoints; evaluated
with CUB's views (``whole`` for ``--protocol whole-image``, as PDiscoFormer's NABirds models are)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.core.errors import UserError
from benchmark.core.protocol import DEFAULT_PROTOCOL
from benchmark.core.registry import register_dataset

from ._base import Reporter
from .cub import CUB, KEYPOINT_SLACK

FIX = "The NABirds tree is damaged: re-extract nabirds.tar.gz (benchmark data download nabirds prints the steps)"

DOWNLOAD_STEPS = """NABirds is distributed after accepting its terms of use:
  1. Open https://dl.allaboutbirds.org/nabirds, accept the terms and download nabirds.tar.gz.
  2. Extract it: tar -xzf nabirds.tar.gz, giving <root>/images/, images.txt, train_test_split.txt,
     bounding_boxes.txt, image_class_labels.txt, classes.txt, parts/parts.txt, parts/part_locs.txt.
  3. Check the tree: benchmark data check -d nabirds --data-root <root>"""

#: the index files and their columns (image ids are strings: UUIDs)
COLUMNS = {
    "images.txt": ("id", "path"),
    "train_test_split.txt": ("id", "is_train"),
    "bounding_boxes.txt": ("id", "x", "y", "w", "h"),
    "image_class_labels.txt": ("id", "class_id"),
    "parts/part_locs.txt": ("id", "part", "x", "y", "visible"),
}


@register_dataset("nabirds")
class NABirds(CUB):
    """NABirds birds: CUB's views and metrics (keypoint NMI/ARI, landmark regression) on the NABirds tree.

    The tree has CUB's files (``images.txt``, ``train_test_split.txt``, ``bounding_boxes.txt``,
    ``image_class_labels.txt``, ``parts/parts.txt``, ``parts/part_locs.txt``) with image ids that are strings
    and the keypoints listed in ``parts/parts.txt`` (11 in the release, ids from 0); left/right keypoints
    are swapped by name in the flipped training view. There are no segmentation masks: evaluate with
    ``--masks none``, ``method`` or ``predicted:DIR``. The notebook-family views (``fg``, ``full``) apply
    CUB's rules; the whole-image view is the one PDiscoFormer's NABirds numbers use. Only the official
    split exists (``split_source="official"``).
    """

    expected_counts = {"train": 23929, "test": 24633}
    data_hint = ("Download: benchmark data download nabirds (prints the steps), then --data-root <nabirds folder> "
                 "(images.txt, parts/, images/).")
    protocol_description = "CUB's views on the NABirds tree (see cub); no segmentation masks"

    def __init__(self, root=None, *, split="test", view="fg", protocol=DEFAULT_PROTOCOL, masks=None,
                 classes=None, _collect: Reporter | None = None):
        self._parts_read = False
        super().__init__(root, split=split, view=view, protocol=protocol, masks=masks, classes=classes,
                         _collect=_collect or Reporter(fix=FIX))
        if self.masks.dataset_reads == "annotations":
            raise UserError("NABirds has no foreground masks: use --masks none, method or predicted:DIR")

    def options(self):
        return {"classes": list(self.classes) if self.classes is not None else None}

    def _read_index(self, report: Reporter):
        names = _read_parts(self.root, report)
        if names is None:
            return None
        self.keypoint_names = tuple(n for _, n in names)
        self.flip_permutation = _flip_permutation(self.keypoint_names)
        return _read_nabirds(self.root, [pid for pid, _ in names], report)

    @classmethod
    def check_tree(cls, root, **options):
        report = Reporter(collect=True)
        datasets = []
        for split in cls.splits:
            ds = cls(root, split=split, masks=options.pop("masks", "none"), _collect=report, **options)
            if report.problems and len(ds._paths) == 0:
                return [], report.problems
            datasets.append(ds)
        return datasets, list(report.problems)


def _read_parts(root: Path, report: Reporter) -> list[tuple[int, str]] | None:
    path = root / "parts" / "parts.txt"
    if not path.is_file():
        report(path, 0, "file is missing")
        return None
    names = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(None, 1)
        if len(fields) != 2 or not fields[0].isdigit():
            report(path, number, "expected '<part_id> <name>'")
            return None
        names.append((int(fields[0]), fields[1].strip()))
    if not names:
        report(path, 0, "lists no parts")
        return None
    return sorted(names)


def _flip_permutation(names: tuple[str, ...]) -> tuple[int, ...]:
    """Keypoint ``i`` of a flipped image is keypoint ``perm[i]``: ``left X`` <-> ``right X``, others fixed."""
    index = {n: i for i, n in enumerate(names)}
    swap = {"left": "right", "right": "left"}
    perm = []
    for name in names:
        side, _, rest = name.partition(" ")
        other = f"{swap[side]} {rest}" if side in swap else name
        perm.append(index.get(other, index[name]))
    return tuple(perm)


def _table(root: Path, name: str, report: Reporter):
    import pandas as pd

    path = root / name
    if not path.is_file():
        report(path, 0, "file is missing")
        return None
    columns = COLUMNS[name]
    try:
        frame = pd.read_csv(path, sep=r"\s+", header=None, names=list(columns), dtype={"id": str, "path": str},
                            engine="c", index_col=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        report(path, 0, f"cannot be parsed ({exc})")
        return None
    numeric = [c for c in columns if c not in ("id", "path")]
    values = frame[numeric].apply(pd.to_numeric, errors="coerce")
    bad = frame[columns[0]].isna() | values.isna().any(axis=1)
    if name == "images.txt":
        bad = frame["path"].isna() | frame["id"].isna()
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        report(path, line, f"expected {len(columns)} fields: {', '.join(columns)}")
        return None
    frame[numeric] = values
    frame["line"] = np.arange(1, len(frame) + 1)
    return frame


def _read_nabirds(root: Path, part_ids: list[int], report: Reporter) -> dict[str, np.ndarray] | None:
    """CUB's index dict (see ``cub._read_official``) from the NABirds files, rows in ``images.txt`` order."""
    tables = {name: _table(root, name, report) for name in COLUMNS}
    if any(t is None for t in tables.values()):
        return None
    images = tables["images.txt"]
    ids = images["id"].to_numpy()
    if len(set(ids)) != len(ids):
        report(root / "images.txt", 0, "lists some image ids more than once")
        return None
    aligned = {}
    for name in ("train_test_split.txt", "bounding_boxes.txt", "image_class_labels.txt"):
        table = tables[name].drop_duplicates("id").set_index("id")
        missing = ~images["id"].isin(table.index)
        if missing.any() or len(table) != len(tables[name]):
            k = int(np.flatnonzero(missing.to_numpy())[0]) if missing.any() else 0
            report(root / name, 0, f"has no line for image id {ids[k]}" if missing.any()
                   else "lists some image ids more than once")
            return None
        aligned[name] = table.loc[ids]
    locs = tables["parts/part_locs.txt"]
    n, p = len(ids), len(part_ids)
    row = {image_id: i for i, image_id in enumerate(ids)}
    col = {pid: j for j, pid in enumerate(part_ids)}
    r = locs["id"].map(row)
    c = locs["part"].astype(int).map(col)
    loc_path = root / "parts" / "part_locs.txt"
    if r.isna().any() or c.isna().any():
        k = int(np.flatnonzero((r.isna() | c.isna()).to_numpy())[0])
        report(loc_path, k + 1, f"image {locs['id'].iloc[k]} or part {locs['part'].iloc[k]} is not listed in "
                                "images.txt / parts/parts.txt")
        return None
    r, c = r.to_numpy(int), c.to_numpy(int)
    counts = np.bincount(r * p + c, minlength=n * p)
    if (counts != 1).any():
        k = int(np.flatnonzero(counts != 1)[0])
        report(loc_path, 0, f"image {ids[k // p]} has {counts[k]} lines for part {part_ids[k % p]}, expected 1")
        return None
    kp, vis, kp_line = np.zeros((n, p, 2)), np.zeros((n, p), bool), np.zeros((n, p), np.int64)
    kp[r, c, 0], kp[r, c, 1] = locs["x"].to_numpy(float), locs["y"].to_numpy(float)
    vis[r, c] = locs["visible"].to_numpy(float) > 0.5
    kp_line[r, c] = locs["line"].to_numpy()
    negative = vis & ((kp < -KEYPOINT_SLACK).any(axis=2))
    if negative.any():
        i, j = np.argwhere(negative)[0]
        report(loc_path, int(kp_line[i, j]), f"visible keypoint at ({kp[i, j, 0]:g}, {kp[i, j, 1]:g}) lies outside the image")
        return None
    boxes = aligned["bounding_boxes.txt"]
    bbox = boxes[["x", "y", "w", "h"]].to_numpy(float)
    bad = np.flatnonzero((bbox[:, 2] < 1) | (bbox[:, 3] < 1) | (bbox[:, :2] < 0).any(axis=1))
    if bad.size:
        report(root / "bounding_boxes.txt", int(boxes["line"].iloc[bad[0]]),
               f"image {ids[bad[0]]} has an invalid box {bbox[bad[0]].tolist()} (needs x, y >= 0 and w, h >= 1)")
        return None
    return {"ids": ids, "paths": images["path"].to_numpy(object),
            "is_train": aligned["train_test_split.txt"]["is_train"].to_numpy(int),
            "bbox": bbox, "bbox_line": boxes["line"].to_numpy(np.int64),
            "class_id": aligned["image_class_labels.txt"]["class_id"].to_numpy(int),
            "kp": kp, "vis": vis, "kp_line": kp_line}
