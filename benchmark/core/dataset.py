"""The :class:`Dataset` base class: the plug-in author's manual for datasets.

A dataset *instance* is one split seen through one *view*::

    ds = benchmark.datasets.load("cub", root="/data/CUB_200_2011", split="test", view="fg")
    sample = ds[0]          # a benchmark.core.types.Sample in the view's pixel coordinates

Views:

* ``"fg"`` / ``"full"`` -- the two evaluation views. The FG metrics (``fg_nmi``, ``fg_ari``) are computed on
  ``fg_view``, the full-image metrics (``nmi``, ``ari``) on ``full_view``; for a dataset where both are the
  same images, name the same view twice and the harness predicts once.
* ``"train"`` -- the (augmented) training view used by methods that train (random crops, flips, ...).

Class attributes describe the evaluation protocol (they go into ``benchmark list`` and the result rows):

* ``ground_truth``: ``"keypoints"`` (the label of a visible keypoint is its index; the predicted label is
  read at the keypoint, CUB) or ``"pixels"`` (every pixel with a part label map, DeepFashion/PASCAL-Part).
* ``landmark_protocol``: one of ``benchmark.metrics.landmarks.PROTOCOLS`` or ``None``; landmark regression
  fits on ``landmark_fit_split`` and evaluates on the evaluation split, both in ``landmark_view``.
* ``protocol_description``: the crop/resize rules in words.
* ``legacy_align_corners``: ``{view: bool}``, the ``align_corners`` with which the reference evaluation
  upsampled coarse part maps in that view; a protocol that reproduces the reference (``--protocol legacy``)
  applies it instead of the method's own :attr:`PartMaps.align_corners` (views not listed keep the
  method's convention).
* ``legacy_background_rules``: ``{role: rule}`` (role ``"fg"``/``"full"``), how the reference evaluation
  read a method's own background channel in that role under ``--protocol legacy`` (see
  ``benchmark.metrics.scoring``: ``"all_channels"``, ``"max_normalised"``).
* ``whole_image_view``: the view that serves *both* roles under a protocol with ``whole_image`` rules
  (``--protocol whole-image``): the whole image, short side resized to ``self.protocol.image_size`` and,
  with ``self.protocol.centre_crop``, a centred square cut; ``None`` = the dataset does not support that
  protocol (an error naming the protocols it does support). Under such a protocol the instance's
  ``fg_view`` / ``full_view`` both name this view (:meth:`Dataset.role_view`), and so does
  ``landmark_view``, whose regression is then ``whole_image_landmark_protocol``.
* ``whole_image_landmark_protocol``: the landmark protocol under ``--protocol whole-image`` (CUB-like
  datasets: ``"whole-image-bbox"``, the "Kp" of PDiscoNet / PDiscoFormer), or ``None`` (no landmark
  regression under that protocol).
* ``metric_kinds``: the metric kinds (:attr:`~benchmark.core.metric.Metric.kind`) its ground truth can score;
  a run asks only for those (naming another is an error). Flowers-102 has foreground masks only:
  ``("foreground",)`` (``fg_iou``).
* ``whole_image_align_corners``: the ``align_corners`` with which the reference upsampled part maps in the
  ``whole_image_view`` (``False`` for the NMI/ARI evaluators, ``True`` for PDiscoFormer's fg/bg IoU).

Constructor: ``__init__(self, root=None, *, split="test", view="fg", protocol="corrected", masks="gt",
**options)``. ``protocol`` is an :class:`~benchmark.core.protocol.EvaluationProtocol` (or its name) and
``masks`` a :class:`~benchmark.core.protocol.MaskSource` (or its ``--masks`` text); this base class turns
both into objects once (``self.protocol``, ``self.masks``), so a dataset never parses or compares names.
Read the rules from ``self.protocol.rules`` (e.g. ``binarise_masks``, ``mask_resize``, ``label_resize``,
``box_crop``, ``reference_quirks``; binarise with :func:`benchmark.core.protocol.binarise`, the one rule)
and what to load as ``Sample.mask`` from ``self.masks.dataset_reads``: ``"annotations"`` (the dataset's
own masks), ``"folder"`` (files under ``self.masks.folder`` mirroring the image tree) or ``None``.
``docs/protocol.md`` describes the rules for users. Validate the tree in ``__init__`` cheaply (index
files, not images) and raise :class:`~benchmark.core.errors.UserError` naming the file and the fix. Decode
images lazily in ``__getitem__`` (it runs in DataLoader workers). Implement :meth:`image_size` cheaply
when sizes vary, so batches can be formed from equal sizes.

Optional hooks (declared here with defaults; override what applies):

* :meth:`check_tree` (classmethod) with ``expected_counts``: a dataset read from a tree on disk validates
  it for ``benchmark data check`` and for the quick check before ``run``/``reproduce``
  (:meth:`has_tree_check` says whether it does; built-in data has nothing to check).
* :meth:`mask_file` and :meth:`source_image`: a dataset that reads ``--masks predicted:DIR`` folders says
  where each image's mask lives, and gives the whole image ``benchmark masks predict`` predicts on.
* :meth:`class_ids`: a dataset with image-level class labels (CUB's species, PartImageNet's ImageNet
  synsets) puts each sample's label in ``Sample.meta["class_id"]`` and lists the split's distinct labels
  here; methods trained with class labels (``supervision = "class-labels"``) read both and refuse a dataset
  whose ``class_ids()`` is ``None``.
* :meth:`demo_options`, :meth:`options`, :meth:`identity`: see their docstrings.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal

import torch
from torch.utils.data import DataLoader

from benchmark.core.errors import UserError
from benchmark.core.plugin import Plugin
from benchmark.core.protocol import DEFAULT_PROTOCOL, EvaluationProtocol, MaskSource
from benchmark.core.types import Batch, Sample, collate


class Dataset(Plugin, torch.utils.data.Dataset):
    """Base class of every dataset (see the module docstring for the contract)."""

    name: ClassVar[str] = "?"  # set by @register_dataset
    needs_data_root: ClassVar[bool] = True
    ground_truth: ClassVar[Literal["keypoints", "pixels"]] = "pixels"
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    views: ClassVar[tuple[str, ...]] = ("fg", "full", "train")
    fg_view: ClassVar[str] = "fg"
    full_view: ClassVar[str] = "full"
    landmark_protocol: ClassVar[str | None] = None
    landmark_view: ClassVar[str] = "fg"
    landmark_fit_split: ClassVar[str] = "train"
    legacy_align_corners: ClassVar[dict[str, bool]] = {}
    legacy_background_rules: ClassVar[dict[str, str]] = {}
    whole_image_view: ClassVar[str | None] = None
    whole_image_landmark_protocol: ClassVar[str | None] = None
    whole_image_align_corners: ClassVar[bool] = False
    metric_kinds: ClassVar[tuple[str, ...]] = ("clustering", "landmarks")
    keypoint_names: ClassVar[tuple[str, ...]] = ()
    protocol_description: ClassVar[str] = ""
    data_hint: ClassVar[str] = ""  # how to get the data (shown by `benchmark list` and in errors)
    #: samples per split in the complete official tree (``data check`` warns about a partial tree)
    expected_counts: ClassVar[dict[str, int]] = {}

    def __init__(self, root: str | Path | None = None, *, split: str = "test", view: str = "fg",
                 protocol: str | EvaluationProtocol = DEFAULT_PROTOCOL, masks: str | MaskSource | None = None):
        self.check_split(split, self.splits)
        if view not in self.views:
            raise UserError(f"dataset {self.name!r} has no view {view!r}; choose one of {', '.join(self.views)}")
        self.protocol = EvaluationProtocol.resolve(protocol, masks, dataset=type(self))
        self.masks = self.protocol.masks
        if self.protocol.rules.whole_image:
            self.fg_view = self.full_view = self.landmark_view = self.role_view("fg", self.protocol)
            self.landmark_protocol = self.whole_image_landmark_protocol
        if self.needs_data_root:
            if root is None:
                raise UserError(f"dataset {self.name!r} needs --data-root. {self.data_hint}".strip())
            if not Path(root).is_dir():
                raise UserError(f"data root {root} does not exist or is not a directory; pass --data-root "
                                f"pointing at the {self.name} tree. {self.data_hint}".strip())
        self.root = Path(root) if root is not None else None
        self.split = split
        self.view = view

    @classmethod
    def check_split(cls, split: str, splits: tuple[str, ...] | None = None) -> None:
        """Refuse a split the dataset does not have (``splits``: those of the chosen options, e.g. CUB's
        Kanazawa split source; default :attr:`splits`). Loading and ``data check`` both ask here."""
        splits = splits or cls.splits
        if split not in splits:
            raise UserError(f"dataset {cls.name!r} has no split {split!r}; choose one of {', '.join(splits)}")

    @classmethod
    def splits_for(cls, **options: Any) -> tuple[str, ...]:
        """The splits of the dataset under ``options`` (default: :attr:`splits` whatever the options)."""
        return cls.splits

    @classmethod
    def role_view(cls, role: str, protocol: str | EvaluationProtocol) -> str:
        """The view the metrics of ``role`` (``"fg"``/``"full"``) read under ``protocol``."""
        protocol = EvaluationProtocol.resolve(protocol)
        if protocol.rules.whole_image:
            if cls.whole_image_view is None:
                raise UserError(f"dataset {cls.name!r} has no whole-image view, so --protocol {protocol} does not "
                                f"apply to it; use --protocol corrected or legacy")
            return cls.whole_image_view
        return cls.fg_view if role == "fg" else cls.full_view

    # -- description --------------------------------------------------------------------------------
    @classmethod
    def demo_options(cls) -> dict[str, Any]:
        """Options for ``benchmark demo`` (only the built-in synthetic dataset is used there)."""
        return {}

    @classmethod
    def check_tree(cls, root: str | Path, **options: Any) -> tuple[list["Dataset"], list[Any]]:
        """Validate the tree at ``root`` with the dataset ``options``: ``(datasets, problems)``, where
        ``problems`` lists every malformed index line (:class:`benchmark.datasets._io.Problem`, nothing
        raised) and ``datasets`` holds one instance per split when the index is sound (whose
        ``check_files`` then checks every file). Called by ``benchmark data check`` and by the quick check
        before ``run``/``reproduce``; implemented by datasets read from disk (:meth:`has_tree_check`)."""
        raise NotImplementedError(f"dataset {cls.name!r} has no data tree to check")

    @classmethod
    def has_tree_check(cls) -> bool:
        """Whether the dataset implements :meth:`check_tree` (built-in data has no tree to check)."""
        return cls.check_tree.__func__ is not Dataset.check_tree.__func__

    def options(self) -> dict[str, Any]:
        """Dataset-specific constructor options (subclasses add theirs); recorded in result rows."""
        return {}

    def identity(self) -> dict[str, Any]:
        """Everything that determines this view's samples: the key of caches derived from it."""
        return {"dataset": self.name, "root": str(self.root.resolve()) if self.root else None,
                "split": self.split, "view": self.view, **self.protocol.identity(),
                "options": self.options(), "size": len(self)}

    def with_view(self, *, split: str | None = None, view: str | None = None,
                  masks: str | MaskSource | None = None) -> "Dataset":
        """The same dataset, options and protocol, another split/view/mask source."""
        return type(self)(self.root, split=split or self.split, view=view or self.view,
                          protocol=self.protocol, masks=masks, **self.options())

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    # -- data ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        raise NotImplementedError

    def image_size(self, index: int) -> tuple[int, int] | None:
        """The (H, W) of sample ``index`` in this view, cheaply; ``None`` if unknown without decoding."""
        return None

    def class_ids(self) -> tuple | None:
        """The image-level class labels that this split's samples carry in ``meta["class_id"]``, sorted (ints
        or strings; every sample's label is among them); ``None`` when the dataset has no class labels. Read
        from the index, cheaply (no image is decoded)."""
        return None

    # -- foreground mask files (``benchmark masks predict``, ``--masks model:CKPT``) ---------------------
    def mask_file(self, index: int) -> str:
        """Where ``masks="predicted:DIR"`` reads the mask of sample ``index``: a path relative to ``DIR``
        (``/``-separated, mirroring the image tree). Samples of one image share its file."""
        raise NotImplementedError(f"dataset {self.name!r} does not read predicted mask folders")

    def source_image(self, index: int) -> torch.Tensor:
        """The whole original image of sample ``index``, (3, H, W) float in [0, 1], at the resolution the
        file of :meth:`mask_file` must have."""
        raise NotImplementedError(f"dataset {self.name!r} does not read predicted mask folders")

    def batches(self, batch_size: int = 16, *, device: str | torch.device = "cpu", shuffle: bool = False,
                generator: torch.Generator | None = None, num_workers: int = 0,
                progress: bool | str = False, drop_last: bool = False) -> Iterator[Batch]:
        """Iterate over :class:`Batch` es of equal-size images, moved to ``device``.

        Samples whose size is known from :meth:`image_size` are grouped by size (order within a size is
        kept unless ``shuffle``); with unknown sizes, batches hold one image.
        """
        batch_indices = size_buckets(self, batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last)
        loader = DataLoader(self, batch_sampler=batch_indices, collate_fn=collate, num_workers=num_workers,
                            pin_memory=torch.device(device).type == "cuda", persistent_workers=False)
        iterator: Any = loader
        if progress:
            from tqdm.auto import tqdm

            desc = progress if isinstance(progress, str) else f"{self.name}/{self.split}/{self.view}"
            iterator = tqdm(loader, desc=desc, unit="batch", leave=False)
        for batch in iterator:
            yield batch.to(device, non_blocking=True)


def size_buckets(dataset: Dataset, batch_size: int, *, shuffle: bool = False,
                 generator: torch.Generator | None = None, drop_last: bool = False) -> list[list[int]]:
    """Lists of indices with equal image size, at most ``batch_size`` each, in a deterministic order."""
    n = len(dataset)
    order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
    groups: dict[Any, list[int]] = defaultdict(list)
    for i in order:
        size = dataset.image_size(i)
        groups[size if size is not None else ("unknown", i)].append(i)
    batches: list[list[int]] = []
    for key, members in groups.items():
        step = batch_size if not (isinstance(key, tuple) and key and key[0] == "unknown") else 1
        for start in range(0, len(members), step):
            chunk = members[start:start + step]
            if drop_last and len(chunk) < batch_size:
                continue
            batches.append(chunk)
    if shuffle:
        perm = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[i] for i in perm]
    else:
        batches.sort(key=lambda b: b[0])
    return batches
