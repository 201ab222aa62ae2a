"""``predictions``: evaluate part maps saved by any method, in any code base, without writing Python.

``benchmark run --method predictions -p dir=DIR --dataset D`` reads one file per evaluated image from
``DIR`` and evaluates it with the same metrics as any registered method. ``benchmark export`` writes this
format from any registered method (then ``run --method predictions`` reproduces the direct run exactly).

The file format (version 1)
===========================

**Where.** One file per image at ``DIR/<sample id>.<ext>``: the sample id is the path of the image
relative to the dataset's image tree as the dataset names it (``benchmark`` prints ids in its result
files; e.g. ``001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg``). The image's own
extension may be kept or dropped (``.../X_0001_796111.jpg.npz`` or ``.../X_0001_796111.npz``); exactly
one candidate may exist. ``<ext>`` is one of:

* ``.npz`` (NumPy ``savez``): key ``scores`` -- a float array ``(C, h, w)`` (float16/32/64), channels
  first. Optional keys: ``kind`` (``"logits"``: softmax over channels gives probabilities; ``"probs"``:
  already probabilities), ``has_background`` (bool: channel 0 is the method's own background and
  channels 1..K are the parts), ``align_corners`` (bool, the bilinear convention used to upsample the
  maps; default false), ``image_size`` (``(H, W)`` of the image the maps were computed for: checked
  exactly when present), ``image_sha256`` (digest of the evaluated image, written by ``export`` to tell
  evaluation views apart). Instead of ``scores`` a file may hold exactly one of ``logits`` or ``probs``
  (which then also says the kind).
* ``.npy``: the ``(C, h, w)`` float array alone; its description comes from ``DIR/predictions.json``
  (below) or, without one, from the rules below.
* ``.png``: a single-channel label image (8- or 16-bit grey or palette indices) with ``0`` = background
  and ``1..K`` = parts, at the image's aspect ratio; it is resized with nearest neighbour to the image and
  evaluated as one-hot probabilities with a background channel (usable with ``--masks method``).

**Description of a directory.** An optional ``DIR/predictions.json`` gives defaults for every file::

    {"format": "partbench-predictions/1", "num_parts": 4, "kind": "logits",
     "has_background": false, "align_corners": false}

Keys inside an ``.npz`` override it. ``export`` also writes ``"folders"``: the maps are then stored per
evaluation view in ``DIR/<split>/<view>/`` (the same image can appear in several views, e.g. a bbox crop
and the full image); for each image only the file whose ``image_sha256`` (else ``image_size``) matches the
evaluated image is used: when the file of one view is deleted, the image is missing in that view (an error,
or a skip counted in the rows under ``-p on_missing=skip``), never replaced by another view's maps. Plus ``"method"``, ``"weights_id"``, ... (provenance; ``weights_id`` goes into
the result rows).

**Rules when something is not said.** ``kind``: probabilities if every value is in ``[0, 1]`` and the
channels of every pixel sum to 1 (within 1e-3), else logits (values in ``[0, 1]`` whose channels sum to
1 or to 0 are probability maps with empty pixels, refused below). ``has_background``: true iff ``C == K + 1``
with ``K`` the number of parts (``-p num_parts=K``/``--num-parts``, the json, or else ``C`` of the first
file read). A channel count other than ``K`` or ``K + 1`` is an error.

**Sizes.** The maps may be coarser than the image (e.g. 33x33 logits for a 256x256 image) but must have
its aspect ratio up to one map pixel of rounding; they are resized bilinearly to the image by the
harness (:class:`~benchmark.core.types.PartMaps`), after which softmax/argmax are taken.

**Bad input** (a missing file, a shape that does not match its image, a wrong channel count, NaN or
infinite values, maps that are zero everywhere, negative probabilities, probabilities whose channels sum
to 0 at some pixel, a label outside ``0..K``, mixed formats within a batch) raises
one :class:`~benchmark.core.errors.UserError` naming the file. With ``-p on_missing=skip`` missing files
are skipped instead: their ids are collected (once each) in :attr:`PredictionsMethod.skipped_ids` and their
rows of the returned scores are NaN; the runner drops every image listed in ``skipped_ids`` before scoring
and records ``len(skipped_ids)`` as ``skipped_images``.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.core.atomic import atomic_open, atomic_write_text
from benchmark.core.errors import UserError
from benchmark.core.method import Method
from benchmark.core.registry import register_method
from benchmark.core.types import Batch, PartMaps

FORMAT = "partbench-predictions/1"
SIDECAR = "predictions.json"
EXTENSIONS = (".npz", ".npy", ".png")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
PROBS_SUM_TOL = 1e-3


# -- writing ---------------------------------------------------------------------------------------------
def image_digest(image: torch.Tensor) -> str:
    """SHA-256 of an image tensor's float32 bytes: identifies which evaluation view a map belongs to."""
    return hashlib.sha256(image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


def map_path(root: Path, sample_id: str, ext: str = ".npz") -> Path:
    """``root/<sample id><ext>`` for a safe relative id (no absolute paths, no ``..``)."""
    return root / (_safe_relative(sample_id) + ext)


def save_part_maps(root: str | Path, batch: Batch, maps: PartMaps) -> list[Path]:
    """Write one ``.npz`` per image of ``batch`` (scores exactly as predicted, with their description)."""
    root = Path(root)
    scores = maps.scores.detach().to("cpu")
    paths = []
    for i, sample_id in enumerate(batch.ids):
        path = map_path(root, sample_id)
        with atomic_open(path, "wb") as handle:
            np.savez(handle, scores=scores[i].numpy(), kind=np.array(maps.kind),
                     has_background=np.array(bool(maps.has_background)),
                     align_corners=np.array(bool(maps.align_corners)),
                     image_size=np.array(batch.size, dtype=np.int64),
                     image_sha256=np.array(image_digest(batch.images[i])))
        paths.append(path)
    return paths


def write_sidecar(root: str | Path, description: dict[str, Any]) -> Path:
    path = Path(root) / SIDECAR
    atomic_write_text(path, json.dumps({"format": FORMAT, **description}, indent=2, sort_keys=True) + "\n")
    return path


# -- reading ---------------------------------------------------------------------------------------------
@dataclass
class _Entry:
    """One image's maps, as read from its file."""

    path: Path
    scores: np.ndarray  # (C, h, w) float
    kind: str
    has_background: bool
    align_corners: bool


#: The types of the description keys this reader uses (``num_parts`` a positive integer, ``folders`` a list of
#: relative folder names, flags true/false): a hand-edited file with another type is named, never half-used.
_SIDECAR_TYPES = {"num_parts": "a positive integer", "folders": "a list of folder names",
                  "has_background": "true or false", "align_corners": "true or false"}


def _check_sidecar_types(path: Path, sidecar: dict[str, Any]) -> None:
    for key, wanted in _SIDECAR_TYPES.items():
        if key not in sidecar or sidecar[key] is None:
            continue
        value = sidecar[key]
        if key == "num_parts":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        elif key == "folders":
            ok = isinstance(value, list) and all(isinstance(v, str) and v for v in value)
        else:
            ok = isinstance(value, bool)
        if not ok:
            raise UserError(f"{path}: {key!r} must be {wanted}, got {value!r}; fix it or export the maps again")


def _safe_relative(sample_id: str) -> str:
    rel = PurePosixPath(sample_id.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise UserError(f"sample id {sample_id!r} is not a safe relative path; the predictions format needs "
                        "ids that mirror the image tree")
    return rel.as_posix()


@register_method("predictions")
class PredictionsMethod(Method):
    """Part maps saved by any method (.npz/.npy scores or label PNGs, one file per image) in -p dir=DIR."""

    reads_saved_maps = True  # `benchmark export` refuses it: it would only copy its folder

    def __init__(self, num_parts: int | None = None, dir: str | None = None, on_missing: str = "error"):
        self.num_parts = num_parts
        self.dir = dir
        self.on_missing = on_missing

    @classmethod
    def demo_params(cls) -> dict[str, Any] | None:
        return None  # needs a folder of saved maps: not part of the demo

    def fit(self, data, *, seed: int = 0, device: str = "cpu") -> "PredictionsMethod":
        """Nothing to learn; the folder and its description are checked now, before any image is read."""
        self._root()
        self._sidecar()
        return self

    def supervision_track(self) -> str:
        """The supervision of the method that made the maps: the sidecar's ``supervision``, else the tag of
        the registered method its ``method`` names (``benchmark export`` writes both); ``""`` (unknown)
        for maps of an external code base that declares neither."""
        from benchmark.core.method import SUPERVISION_TRACKS
        from benchmark.core.registry import METHODS

        sidecar = self._sidecar() if self.dir else {}
        declared = sidecar.get("supervision")
        if declared in SUPERVISION_TRACKS:
            return declared
        name = sidecar.get("method")
        if isinstance(name, str) and name in METHODS.names() and name != self.name:
            return METHODS.get(name).supervision or ""
        return ""

    def weights_id(self) -> str:
        sidecar = self._sidecar() if self.dir else {}
        return str(sidecar.get("weights_id", "external"))

    def input_fingerprint(self) -> Any:
        """Digest of the folder's listing (path, size, modification time of every file): re-exporting into
        the same folder makes a new run instead of reusing the old rows."""
        from benchmark.core.cache import content_key

        if not self.dir or not Path(self.dir).is_dir():
            return None
        root = Path(self.dir)
        listing = sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                         for p in root.rglob("*") if p.is_file())
        return {"predictions": content_key(listing), "files": len(listing)}

    # -- helpers ---------------------------------------------------------------------------------------
    def _root(self) -> Path:
        if not self.dir:
            raise UserError("method 'predictions' needs the folder of saved part maps: pass -p dir=DIR")
        root = Path(self.dir)
        if not root.is_dir():
            raise UserError(f"predictions folder {root} does not exist; pass -p dir=DIR pointing at the saved "
                            "part maps (see `benchmark export`)")
        return root

    def _sidecar(self) -> dict[str, Any]:
        cached = getattr(self, "_sidecar_cache", None)
        if cached is not None:
            return cached
        path = self._root() / SIDECAR
        sidecar: dict[str, Any] = {}
        if path.is_file():
            try:
                sidecar = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise UserError(f"{path}: not readable JSON ({exc}); fix or delete it") from None
            if not isinstance(sidecar, dict):
                raise UserError(f"{path}: must hold a JSON object; fix or delete it")
            fmt = sidecar.get("format", FORMAT)
            if fmt != FORMAT:
                raise UserError(f"{path}: unknown format {fmt!r}; this partbench reads {FORMAT!r}")
            if sidecar.get("kind") not in (None, "logits", "probs"):
                raise UserError(f"{path}: kind must be 'logits' or 'probs', got {sidecar['kind']!r}")
            _check_sidecar_types(path, sidecar)
        self._sidecar_cache = sidecar
        return sidecar

    def _expected_parts(self) -> int | None:
        declared = self._sidecar().get("num_parts")
        if self.num_parts is not None and declared is not None and int(declared) != int(self.num_parts):
            raise UserError(f"{self._root() / SIDECAR} says num_parts={declared} but the run asks for "
                            f"{self.num_parts}; pass --num-parts {declared}")
        if self.num_parts is not None:
            return int(self.num_parts)
        if declared is not None:
            return int(declared)
        return getattr(self, "num_parts_", None)

    def _candidates(self, sample_id: str, image: torch.Tensor, size: tuple[int, int]) -> list[Path]:
        """Existing files for one image (one folder per view when the folder was written per view)."""
        root = self._root()
        views = self._sidecar().get("folders")
        rel = _safe_relative(sample_id)
        stems = [rel]
        suffix = PurePosixPath(rel).suffix
        if suffix.lower() in IMAGE_SUFFIXES:
            stems.append(rel[: -len(suffix)])
        folders = [root / _safe_relative(str(v)) for v in views] if views else [root]
        found = [folder / (stem + ext) for folder in folders for stem in stems for ext in EXTENSIONS]
        found = [p for p in found if p.is_file()]
        if views:
            found = self._for_this_image(found, image, size)
        return found

    def _for_this_image(self, paths: list[Path], image: torch.Tensor, size: tuple[int, int]) -> list[Path]:
        """Among per-view files of one id, only those written for this very image: the file's
        ``image_sha256`` must equal the evaluated image's digest (else its ``image_size`` its size, for
        files without a digest). A file written for another view of the same id is never a stand-in: when
        this view's file is missing the image is missing (an error, or a skip under ``on_missing=skip``)."""
        digest = None
        kept = []
        for p in paths:
            saved_digest = saved_size = None
            if p.suffix == ".npz":
                try:
                    with np.load(p, allow_pickle=False) as z:
                        if "image_sha256" in z.files:
                            saved_digest = str(z["image_sha256"])
                        if "image_size" in z.files:
                            saved_size = tuple(int(v) for v in np.asarray(z["image_size"]).reshape(-1))
                except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # a truncated .npz is no zip
                    raise UserError(f"{p}: cannot read part maps ({exc}); export them again") from None
            if saved_digest is not None:
                digest = digest or image_digest(image)
                if saved_digest == digest:
                    kept.append(p)
            elif saved_size is not None:
                if saved_size == tuple(size):
                    kept.append(p)
            elif len(paths) == 1:
                kept.append(p)  # no description to check (.npy/.png): the only file of this id
        return kept

    def _read(self, path: Path, image_size: tuple[int, int]) -> _Entry:
        sidecar = self._sidecar()
        kind = sidecar.get("kind")
        has_bg = sidecar.get("has_background")
        align = bool(sidecar.get("align_corners", False))
        try:
            if path.suffix == ".png":
                return self._read_label_png(path, image_size)
            if path.suffix == ".npy":
                scores = np.load(path, allow_pickle=False)
            else:
                with np.load(path, allow_pickle=False) as z:
                    keys = [k for k in ("scores", "logits", "probs") if k in z.files]
                    if len(keys) != 1:
                        raise UserError(f"{path}: an .npz must hold exactly one of 'scores', 'logits', 'probs' "
                                        f"(found {sorted(z.files)}); see the format in `benchmark.methods.predictions`")
                    scores = z[keys[0]]
                    if keys[0] != "scores":
                        kind = keys[0]
                    if "kind" in z.files:
                        kind = str(z["kind"])
                    if "has_background" in z.files:
                        has_bg = bool(z["has_background"])
                    if "align_corners" in z.files:
                        align = bool(z["align_corners"])
                    if "image_size" in z.files:
                        saved = tuple(int(v) for v in np.asarray(z["image_size"]).reshape(-1))
                        if saved != tuple(image_size):
                            raise UserError(f"{path}: maps were saved for a {saved[0]}x{saved[1]} image but the "
                                            f"evaluated image is {image_size[0]}x{image_size[1]}; export them "
                                            "again for this dataset view")
        except UserError:
            raise
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
            raise UserError(f"{path}: cannot read part maps ({exc}); save a (C, h, w) float array") from None
        if kind not in (None, "logits", "probs"):
            raise UserError(f"{path}: kind must be 'logits' or 'probs', got {kind!r}")
        if scores.ndim != 3 or not np.issubdtype(scores.dtype, np.floating):
            raise UserError(f"{path}: part maps must be a float (C, h, w) array, got {scores.dtype} "
                            f"{tuple(scores.shape)}; save channels first")
        if not np.isfinite(scores).all():
            raise UserError(f"{path}: part maps contain NaN or infinite values; fix the method's output")
        self._check_aspect(path, scores.shape[1:], image_size)
        channels = scores.shape[0]
        if has_bg is None:
            has_bg = self._infer_background(path, channels)
        parts = channels - int(has_bg)
        self._check_parts(path, parts, channels, has_bg)
        if not scores.any():
            # Zero everywhere: no part information at all (an unwritten buffer), whatever the kind says.
            raise UserError(f"{path}: part maps are zero everywhere; save the method's real scores")
        sums = scores.sum(axis=0, dtype=np.float64)
        if kind is None:
            in_unit = scores.min() >= 0 and scores.max() <= 1
            ones = np.abs(sums - 1) <= PROBS_SUM_TOL
            if in_unit and not ones.all() and (ones | (sums <= PROBS_SUM_TOL)).all():
                # Probabilities with empty pixels: read as logits, they would give those pixels part 0.
                kind = "probs"
            else:
                kind = "probs" if in_unit and ones.all() else "logits"
        if kind == "probs":
            if scores.min() < 0:
                raise UserError(f"{path}: probabilities must not be negative; save logits with kind='logits'")
            empty = np.argwhere(sums <= 0)
            if len(empty):
                y, x = (int(v) for v in empty[0])
                raise UserError(f"{path}: the probabilities of {len(empty)} pixel(s) sum to 0 (first at row {y}, "
                                f"column {x}), so they name no part; save maps whose channels sum to 1 per pixel")
        return _Entry(path, scores, kind, bool(has_bg), align)

    def _read_label_png(self, path: Path, image_size: tuple[int, int]) -> _Entry:
        from PIL import Image

        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise UserError(f"{path}: a label PNG must be single-channel (grey or palette) with 0 = "
                                f"background and 1..K = parts, got mode {img.mode}")
            labels = np.asarray(img).astype(np.int64)
        self._check_aspect(path, labels.shape, image_size)
        parts = self._expected_parts()
        if parts is None:
            raise UserError(f"{path}: a label PNG does not say how many parts there are; pass --num-parts K "
                            "(or -p num_parts=K)")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high > parts:
            raise UserError(f"{path}: labels must be in 0..{parts} (0 = background), found {low}..{high}; "
                            f"pass the right --num-parts or fix the labels")
        self.num_parts_ = parts
        resized = F.interpolate(torch.from_numpy(labels)[None, None].float(), size=tuple(image_size),
                                mode="nearest")[0, 0].long()
        one_hot = F.one_hot(resized, parts + 1).permute(2, 0, 1).numpy().astype(np.float32)
        return _Entry(path, one_hot, "probs", True, False)

    def _infer_background(self, path: Path, channels: int) -> bool:
        parts = self._expected_parts()
        if parts is None:
            return False  # nothing else known: every channel is a part; fixes K for the run
        if channels == parts:
            return False
        if channels == parts + 1:
            return True
        raise UserError(f"{path}: {channels} channels, expected {parts} parts or {parts + 1} (background + "
                        f"parts); pass --num-parts to match the saved maps")

    def _check_parts(self, path: Path, parts: int, channels: int, has_bg: bool) -> None:
        expected = self._expected_parts()
        if parts < 1:
            raise UserError(f"{path}: {channels} channel(s) leave no part channel")
        if expected is not None and parts != expected:
            raise UserError(f"{path}: {channels} channels ({'background + ' if has_bg else ''}{parts} parts) but "
                            f"the run expects {expected} parts; pass --num-parts {parts} or save "
                            f"{expected} part channels")
        self.num_parts_ = parts

    @staticmethod
    def _check_aspect(path: Path, map_size: tuple[int, ...], image_size: tuple[int, int]) -> None:
        h, w = int(map_size[0]), int(map_size[1])
        big_h, big_w = image_size
        if (h, w) == tuple(image_size):
            return
        # Coarse maps must keep the image's aspect ratio up to rounding each side by one map pixel.
        if h < 1 or w < 1 or abs(h / w - big_h / big_w) > (big_h / big_w) * (1.0 / h + 1.0 / w):
            raise UserError(f"{path}: maps of size {h}x{w} do not match the {big_h}x{big_w} image (aspect "
                            f"ratio differs); save maps for the evaluated view of each image")

    # -- prediction ------------------------------------------------------------------------------------
    def predict(self, batch: Batch) -> PartMaps:
        if self.on_missing not in ("error", "skip"):
            raise UserError(f"on_missing must be 'error' or 'skip', got {self.on_missing!r}")
        if "skipped_ids" not in vars(self):  # the first batch: a list of this instance's own
            self.skipped_ids: list[str] = []
        size = batch.size
        entries: list[_Entry | None] = []
        for i, sample_id in enumerate(batch.ids):
            found = self._candidates(sample_id, batch.images[i], size)
            if len(found) > 1:
                raise UserError(f"several part-map files for image {sample_id!r}: "
                                f"{', '.join(str(p) for p in found)}; keep exactly one")
            if not found:
                if self.on_missing == "skip":
                    if sample_id not in self.skipped_ids:  # one count per image, whichever views miss it
                        self.skipped_ids.append(sample_id)
                    entries.append(None)
                    continue
                views = self._sidecar().get("folders")
                if views:
                    raise UserError(f"missing part maps for image {sample_id!r} in this evaluation view: no file "
                                    f"of the view folders ({', '.join(map(str, views))}) under {self._root()} was "
                                    "written for it; export again or pass -p on_missing=skip")
                expected = map_path(self._root(), sample_id, ".npz")
                raise UserError(f"missing part maps for image {sample_id!r}: expected {expected} (or .npy/.png); "
                                "save one file per image or pass -p on_missing=skip")
            entries.append(self._read(found[0], size))
        present = [e for e in entries if e is not None]
        if not present:
            parts = self._expected_parts() or 1
            nan = torch.full((len(batch), parts, *size), float("nan"), device=batch.device)
            return PartMaps(nan, image_size=size, kind="probs")
        first = present[0]
        for e in present[1:]:
            same = (e.kind, e.has_background, e.align_corners, e.scores.shape[0]) == \
                   (first.kind, first.has_background, first.align_corners, first.scores.shape[0])
            if not same:
                raise UserError(f"{e.path} and {first.path} describe their maps differently (kind, background, "
                                "align_corners or channels); save every image in one format")
        shapes = {e.scores.shape for e in present}
        target = next(iter(shapes))[1:] if len(shapes) == 1 else size
        maps = []
        for e in entries:
            if e is None:
                maps.append(torch.full((first.scores.shape[0], *target), float("nan"),
                                       dtype=torch.float64 if first.scores.dtype == np.float64 else torch.float32))
                continue
            t = torch.from_numpy(np.ascontiguousarray(e.scores))
            if t.dtype == torch.float16:  # float32/64 stay as saved: exported maps come back bit-identical
                t = t.float()
            if tuple(t.shape[1:]) != tuple(target):  # only when the files of one batch differ in size
                t = F.interpolate(t[None], size=tuple(target), mode="bilinear", align_corners=e.align_corners)[0]
            maps.append(t)
        scores = torch.stack(maps).to(batch.device)
        return PartMaps(scores, image_size=size, kind=first.kind, has_background=first.has_background,
                        align_corners=first.align_corners)
