"""How a run is scored: the :class:`EvaluationProtocol` and the :class:`MaskSource` of foreground masks.

Both are resolved **once** per run, from the dataset, ``--protocol`` and ``--masks``::

    protocol = EvaluationProtocol.resolve("legacy", "predicted:/data/cub/supervisedlabels", dataset=CUB)
    protocol.masks.background          # "mask": the background label of every metric comes from masks
    protocol.align_corners("fg")       # False: the notebook's upsampling of the FG view
    protocol.label_set("fg", "keypoints", "ari")   # "fg_with_background" (the notebook's FG-ARI)

and then handed to the datasets (constructor ``protocol=`` / ``masks=``), to prediction (per-view
``align_corners``) and to scoring (:func:`benchmark.metrics.scoring.label_pairs`, the metrics), which read
its rules instead of comparing names. ``docs/protocol.md`` describes every rule for users.

Protocols (:data:`PROTOCOL_NAMES`):

* ``corrected`` (default): the evaluation with the known defects of the released notebooks fixed.
* ``legacy``: what the released evaluation notebooks compute, quirks included, so that the published
  numbers are reproduced from the released checkpoints.
* ``whole-image``: the evaluation of the 2023-2025 papers (PDiscoNet, PDiscoFormer, MPAE): no box crop, the
  whole image with its short side resized to :attr:`EvaluationProtocol.image_size` (448 by default), with an
  optional centred square crop (``whole-image:518-crop`` for ViTs), and an argmax over K + 1 channels whose
  background channel sits *last*, as those models emit it. Spelt ``whole-image[:SIZE[-crop]]``
  (:func:`canonical_protocol`); the dataset's ``whole_image_view`` serves every clustering metric.

The rules each protocol fixes are the fields of :class:`ProtocolRules`; dataset-specific reproductions of
a notebook (e.g. CUB's keypoint shift by the float box corner) are switched by
:attr:`ProtocolRules.reference_quirks` and documented in the dataset's docstring.

Mask sources (``--masks``): a :class:`MaskSource` subclass per *kind*, registered with
:func:`register_mask_kind` and parsed by the single parser :meth:`MaskSource.parse`. A kind declares

* ``argument``: the metavar after the colon (``"DIR"`` for ``predicted:DIR``) or ``None`` (no argument);
* ``needs_gt_masks``: whether the dataset's annotation masks must exist on disk;
* ``dataset_reads``: what the dataset loads as ``Sample.mask``: ``"annotations"``, ``"folder"`` (the
  files under :attr:`MaskSource.folder`, in the dataset's own layout) or ``None`` (nothing);
* ``background``: the background mode of scoring: ``"mask"`` (from masks), ``"method"`` (the method's own
  background channel) or ``"none"`` (no background label);
* :meth:`~MaskSource.fingerprint`: what enters the run key (a folder: its resolved path and the digest
  of every file in it, so a changed mask file is a new run);
* :meth:`~MaskSource.prepare` (with ``needs_preparation = True``): computes the masks once per run
  before any view is loaded (e.g. a model predicting into a cache folder) and returns the source the
  datasets read;
* :meth:`~MaskSource.batch_masks`: masks computed for a batch of images at evaluation time, or ``None``
  to keep what the dataset loaded.

and tags saying what it is and where it may be named: ``predicted`` (fg/bg predictions, the setting of the
paper's published numbers), ``in_runs`` (``--masks`` of a run) and ``in_plans`` (a reproduce plan's
``masks``). :meth:`MaskSource.split` / :meth:`MaskSource.kind_of` read a spelling without touching the
disk (plans, whose arguments hold templates); :meth:`MaskSource.parse` builds the source. Nothing else
parses mask spellings.

Built-in kinds: ``gt``, ``predicted:DIR``, ``method``, ``none``; and, registered by the harness
(:mod:`benchmark.mask_sources`, imported with :mod:`benchmark`, so this module imports nothing of the
project), ``model:CKPT``, ``unsupervised:NAME`` and the plan-only ``fgbg``.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from benchmark.core.cache import folder_digest
from benchmark.core.errors import UserError

PROTOCOL_NAMES = ("corrected", "legacy", "whole-image")
CORRECTED, LEGACY, WHOLE_IMAGE = PROTOCOL_NAMES
#: the protocol of a run that names none (``--protocol``'s default)
DEFAULT_PROTOCOL = CORRECTED
#: the protocol the published tables were computed with (paper rows sit beside results of this protocol)
PAPER_PROTOCOL = LEGACY
#: the protocols of the Choudhury et al. notebooks (box-cropped FG view + full view); a plan that names no
#: protocols evaluates under these
NOTEBOOK_PROTOCOLS = (LEGACY, CORRECTED)
#: ``whole-image`` without a size: the short side of the ResNet models of PDiscoNet / PDiscoFormer
WHOLE_IMAGE_DEFAULT_SIZE = 448


# --------------------------------------------------------------------------------------------------
# the one binarisation rule of the corrected protocol
# --------------------------------------------------------------------------------------------------
def mask_code_max(values: np.ndarray) -> float:
    """The largest code a mask *file* can hold, from its format (not from the values a file happens to use):

    * a file whose values all lie in {0, 1} (bit masks, logical .mat masks, 0/1 PNGs): 1;
    * otherwise an integer file: 255 for 8-bit data, 65535 for 16-bit data (PIL may return 16-bit PNGs as
      32-bit integers, which PNG cannot exceed 16 bits of, so any integer wider than 8 bits counts as 16-bit);
    * otherwise floating-point values: 255 (8-bit codes stored as floats).
    """
    values = np.asarray(values)
    if values.dtype == bool or values.size == 0 or float(values.max()) <= 1:
        return 1.0
    if np.issubdtype(values.dtype, np.integer):
        return 255.0 if values.dtype.itemsize == 1 else 65535.0
    return 255.0


def binarise(values: np.ndarray) -> np.ndarray:
    """The corrected protocol's mask rule: foreground = value >= half of the file's maximum code
    (:func:`mask_code_max`): >= 128 in 0/255 files, >= 0.5 in 0/1 files. float32 array of 0/1.
    A uint8 mask holding {0, 100} is therefore background everywhere, on real and synthetic data."""
    values = np.asarray(values)
    if values.dtype == bool:
        return values.astype(np.float32)
    return (values >= mask_code_max(values) / 2).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# mask sources
# --------------------------------------------------------------------------------------------------
MASK_KINDS: dict[str, type["MaskSource"]] = {}


def register_mask_kind(name: str) -> Callable[[type["MaskSource"]], type["MaskSource"]]:
    """Class decorator registering a :class:`MaskSource` kind under ``name`` (the text before the colon)."""

    def decorator(cls: type[MaskSource]) -> type[MaskSource]:
        if name in MASK_KINDS and MASK_KINDS[name] is not cls:
            raise ValueError(f"mask kind {name!r} is registered twice")
        cls.kind = name
        MASK_KINDS[name] = cls
        return cls

    return decorator


def mask_spellings(*, in_plans: bool = False,
                   accepts: Callable[[type["MaskSource"]], bool] | None = None) -> list[str]:
    """Every spelling a run accepts (``gt``, ``predicted:DIR``, ...), in the order the kinds were registered;
    ``in_plans``: those a reproduce plan accepts instead; ``accepts``: only the kinds a job takes (e.g.
    training: those that give the dataset masks). Messages and ``--help`` are written from it."""
    return [kind.spell(kind.argument) for kind in MASK_KINDS.values()
            if (kind.in_plans if in_plans else kind.in_runs) and (accepts is None or accepts(kind))]


def mask_kinds_text(*, in_plans: bool = False, accepts: Callable[[type["MaskSource"]], bool] | None = None) -> str:
    """``gt, predicted:DIR, method or none``: :func:`mask_spellings` for a message."""
    names = mask_spellings(in_plans=in_plans, accepts=accepts)
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)


# which jobs take a kind: the tasks ask these, and ``--help`` lists the kinds they let through
# (``mask_spellings(accepts=...)``)
def gives_masks(kind: type["MaskSource"]) -> bool:
    """Whether the dataset loads foreground masks of the kind: what a training needs (``method`` and
    ``none`` give none)."""
    return kind.dataset_reads is not None


def is_mask_folder(kind: type["MaskSource"]) -> bool:
    """Whether the kind's masks are a folder of files the dataset reads (given, or predicted into one): what
    mask scoring scores."""
    return kind.dataset_reads == "folder"


class MaskSource:
    """Where the foreground masks of a run come from (one ``--masks`` value); see the module docstring."""

    kind: ClassVar[str] = "?"
    argument: ClassVar[str | None] = None
    needs_gt_masks: ClassVar[bool] = False
    dataset_reads: ClassVar[str | None] = None
    background: ClassVar[str] = "mask"
    needs_preparation: ClassVar[bool] = False
    # Whether a method that trains within a run trains on these masks too. The paper trains on GT masks
    # and evaluates with predicted ones; only its fully unsupervised setting (a training-free source)
    # uses the same masks for both.
    trains_methods: ClassVar[bool] = False
    # Masks predicted by a fg/bg model (a folder of its predictions, a checkpoint, a plan's trained model)
    # rather than annotated or absent: the setting in which the paper's published numbers were computed.
    predicted: ClassVar[bool] = False
    # Where the kind may be named: ``--masks`` of a single run (``in_runs``) and the ``masks`` of a
    # reproduce plan (``in_plans``, whose steps must know how to key and make the masks).
    in_runs: ClassVar[bool] = True
    in_plans: ClassVar[bool] = True

    def __init__(self, argument: str | None = None):
        self.value = argument

    # -- the single parser ----------------------------------------------------------------------------
    @classmethod
    def split(cls, text: str | None, *, in_plans: bool = False) -> tuple[type["MaskSource"], str | None]:
        """The spelling alone, checked without touching the disk: ``"predicted:DIR"`` -> ``(FolderMasks,
        "DIR")``, ``"gt"`` -> ``(GroundTruthMasks, None)``. ``in_plans``: the spellings of a reproduce plan
        (whose arguments may hold templates such as ``{root}``, so nothing is opened here)."""
        text = (text or "gt").strip()
        name, colon, argument = text.partition(":")
        kind = MASK_KINDS.get(name.strip())
        if kind is None or bool(colon) != bool(kind.argument) or (kind.argument and not argument.strip()):
            raise UserError(f"unknown --masks {text!r}; use {mask_kinds_text(in_plans=in_plans)}")
        if not (kind.in_plans if in_plans else kind.in_runs):
            about = " ".join((inspect.getdoc(kind) or "").split()).replace("``", "")
            raise UserError(f"--masks {text!r} cannot be used in {'a reproduce plan' if in_plans else 'a single run'}"
                            f" ({about}); use {mask_kinds_text(in_plans=in_plans)}")
        return kind, (argument.strip() if kind.argument else None)

    @classmethod
    def kind_of(cls, text: str | None, *, in_plans: bool = False) -> type["MaskSource"]:
        """The kind (class) a spelling names, see :meth:`split`."""
        return cls.split(text, in_plans=in_plans)[0]

    @classmethod
    def spell(cls, argument: str | None = None) -> str:
        """The spelling of this kind with ``argument`` (``FolderMasks.spell("/m")`` -> ``"predicted:/m"``)."""
        return f"{cls.kind}:{argument}" if cls.argument else cls.kind

    @classmethod
    def parse(cls, text: "str | MaskSource | None") -> "MaskSource":
        """``"gt"``, ``"predicted:DIR"``, ... -> the kind's instance (an instance is returned as is)."""
        if isinstance(text, MaskSource):
            return text
        kind, argument = cls.split(text)
        return kind(argument)

    # -- what a kind tells the harness ---------------------------------------------------------------
    @property
    def spec(self) -> str:
        """The canonical text (recorded in the ``masks`` column of result rows)."""
        return self.spell(self.value)

    @property
    def folder(self) -> Path | None:
        """The folder of mask files when :attr:`dataset_reads` is ``"folder"``."""
        return None

    @property
    def gives_background(self) -> bool:
        """Whether scoring has a background label at all (from masks or the method's own channel)."""
        return self.background != "none"

    def files_to_check(self) -> "MaskSource":
        """The source whose mask files a check of the data tree must find before a run: this one when the
        dataset reads files that must already exist (annotations, a given folder), else ``none`` (computed
        masks are written by the run itself; ``none``/``method`` read no mask file)."""
        return self if self.reads_existing_files() else NoMasks()

    @classmethod
    def reads_existing_files(cls) -> bool:
        """Whether the dataset reads mask files that must exist before a run (annotations, a given folder),
        rather than files the run writes or none at all."""
        return cls.needs_gt_masks or (cls.dataset_reads == "folder" and not cls.needs_preparation)

    def fingerprint(self) -> Any:
        """What identifies these masks in the run key and in caches derived from a view."""
        return self.spec

    def prepare(self, views: Sequence[Any], *, device: str, cache_dir: Any = None, batch_size: int = 16,
                progress: bool = False, num_workers: int = 0) -> "MaskSource":
        """The source the datasets read in this run, for a kind with ``needs_preparation``: e.g. write the
        masks of ``views`` (the dataset's full view of every split the job reads, loaded with
        ``masks="none"``) to a folder and return a source reading that folder, whose :attr:`spec` and
        :meth:`fingerprint` stay this kind's. Every job calls it through one function,
        ``benchmark.maskgen.prepare_masks``, which decides the splits and the view."""
        return self

    def batch_masks(self, batch: Any) -> Any:
        """``(N, H, W)`` masks computed for ``batch`` at evaluation time, or ``None`` to keep ``batch.masks``.

        The harness applies it to every batch it predicts (``benchmark.runner.traverse``, shared by ``run``
        and ``export``). A method that fits on a dataset itself (e.g. K-means on foreground pixels) sees
        only what the dataset loads, so a kind whose masks matter at fit time should rather write them to
        a folder and read like ``predicted:DIR`` (``dataset_reads = "folder"``)."""
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MaskSource) and type(other) is type(self) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def __repr__(self) -> str:
        return f"MaskSource({self.spec!r})"


@register_mask_kind("gt")
class GroundTruthMasks(MaskSource):
    """The dataset's own annotation masks."""

    needs_gt_masks = True
    dataset_reads = "annotations"


@register_mask_kind("predicted")
class FolderMasks(MaskSource):
    """A folder of mask images mirroring the dataset's image tree (e.g. precomputed fg/bg predictions)."""

    argument = "DIR"
    dataset_reads = "folder"
    predicted = True

    def __init__(self, argument: str | None = None):
        directory = Path(str(argument)).expanduser()
        if not directory.is_dir():
            raise UserError(f"--masks predicted:{argument}: {directory} does not exist or is not a directory; pass a "
                            "folder of mask PNGs mirroring the dataset's image tree (e.g. supervisedlabels/)")
        super().__init__(str(directory.resolve()))

    @property
    def folder(self) -> Path:
        return Path(self.value)

    def fingerprint(self) -> Any:
        """The resolved folder and a digest of the bytes of every file in it: the same folder spelt
        relative or absolute is one key, another folder or a changed file is another (each file's digest
        is memoised on its size and modification time, so asking again only lists the folder)."""
        files, content = folder_digest(self.folder)
        return {"kind": self.kind, "folder": self.value, "files": files, "content": content[:16]}


@register_mask_kind("method")
class MethodMasks(MaskSource):
    """The method's own background channel (SCOPS-like methods); the dataset loads no masks."""

    background = "method"


@register_mask_kind("none")
class NoMasks(MaskSource):
    """No background: every pixel is foreground in the full-image metrics."""

    background = "none"


# --------------------------------------------------------------------------------------------------
# the protocol
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProtocolRules:
    """The rules a protocol fixes (one instance per protocol name, :data:`RULES`)."""

    #: masks: ``True`` = binarised with :func:`binarise` (then resized nearest); ``False`` = the raw codes,
    #: never thresholded (what the notebooks did: any value > 0 is foreground, fractional after resizing)
    binarise_masks: bool
    #: how masks are resized in the views the notebooks built with torchvision ``Resize`` (square training
    #: crops always use nearest, as the training code did)
    mask_resize: str
    #: how part label maps are resized where the notebooks resized them (DeepFashion full view)
    label_resize: str
    #: an unknown colour in a palette-coded label map: ``True`` = an error naming the file, ``False`` =
    #: label 255, as the reference silently did
    reject_unknown_labels: bool
    #: which pixel a keypoint reads: ``"containing_pixel"`` = the pixel whose square ``[j, j+1)`` holds the
    #: point (``floor``); ``"grid_sample"`` = the notebook's float32 ``x / W * 2 - 1`` read by
    #: ``grid_sample(mode="nearest", align_corners=False)``, whose own rounding decides exact ties
    keypoint_readout: str
    #: boxes extending past the image (CUB FG view): ``"pad"`` = the whole box, zero-filled outside the
    #: image; ``"clip"`` = the notebook's array slice, clipped at the image edge, resize factor from the
    #: clipped crop
    box_crop: str
    #: keypoint datasets: FG-ARI with the full formula's background label (the notebook before its fix)
    fg_ari_with_background: bool
    #: apply the dataset's reproductions of the reference evaluation: its per-view ``align_corners``
    #: (``legacy_align_corners``), its background rules for methods with a background channel
    #: (``legacy_background_rules``) and the quirks its docstring lists
    reference_quirks: bool
    #: ``True``: every clustering metric and the landmark regression read the dataset's ``whole_image_view``
    #: (whole image, short side to the protocol's ``image_size``, optional centred crop; the regression is
    #: the dataset's ``whole_image_landmark_protocol``); ``False``: the dataset's own ``fg_view`` /
    #: ``full_view`` / ``landmark_view``
    whole_image: bool = False
    #: where the background sits in the K + 1 channels the full-image argmax runs over: ``"first"`` (the
    #: notebooks' ``[background, parts]``) or ``"last"`` (the ``[parts, background]`` of PDiscoNet-style
    #: models). ``torch.argmax`` returns the first maximum, so this decides exact ties between the
    #: background and a part, and the label of a keypoint read outside the image (all-zero scores: the
    #: first channel)
    background_channel: str = "first"


RULES: dict[str, ProtocolRules] = {
    CORRECTED: ProtocolRules(binarise_masks=True, mask_resize="nearest", label_resize="nearest",
                             reject_unknown_labels=True, keypoint_readout="containing_pixel", box_crop="pad",
                             fg_ari_with_background=False, reference_quirks=False),
    LEGACY: ProtocolRules(binarise_masks=False, mask_resize="bilinear", label_resize="bilinear",
                          reject_unknown_labels=False, keypoint_readout="grid_sample", box_crop="clip",
                          fg_ari_with_background=True, reference_quirks=True),
    # The reference evaluators of PDiscoNet/PDiscoFormer/MPAE (docs/protocol.md, "whole-image"): nothing to
    # binarise there (their CUB evaluation reads no masks); a run that takes its background from masks
    # uses the corrected rules for them.
    WHOLE_IMAGE: ProtocolRules(binarise_masks=True, mask_resize="nearest", label_resize="nearest",
                               reject_unknown_labels=True, keypoint_readout="grid_sample", box_crop="pad",
                               fg_ari_with_background=False, reference_quirks=False, whole_image=True,
                               background_channel="last"),
}


def parse_protocol(text: str) -> tuple[str, int | None, bool]:
    """``"whole-image:518-crop"`` -> ``("whole-image", 518, True)``; ``"legacy"`` -> ``("legacy", None, False)``.
    Only ``whole-image`` takes a size (default :data:`WHOLE_IMAGE_DEFAULT_SIZE`) and ``-crop``."""
    text = str(text).strip()
    name, colon, argument = text.partition(":")
    name = name.strip()
    usage = (f"unknown protocol {text!r}; choose one of {', '.join(PROTOCOL_NAMES)} (whole-image takes a size: "
             f"whole-image:448, or whole-image:518-crop for a centred square crop)")
    if name not in RULES:
        raise UserError(usage)
    if not RULES[name].whole_image:
        if colon:
            raise UserError(usage)
        return name, None, False
    if not colon:
        return name, WHOLE_IMAGE_DEFAULT_SIZE, False
    size, dash, crop = argument.strip().partition("-")
    if not size.isdigit() or int(size) < 1 or (dash and crop != "crop"):
        raise UserError(usage)
    return name, int(size), bool(dash)


def canonical_protocol(text: str) -> str:
    """The one spelling of a protocol (what result rows and run keys record): ``whole-image`` for
    ``whole-image:448``, ``whole-image:518-crop``, ``legacy`` ... Raises :class:`UserError` on bad text."""
    return EvaluationProtocol.resolve(text).spec


@dataclass(frozen=True)
class EvaluationProtocol:
    """One run's protocol: its name, its :attr:`rules`, its mask source and the dataset's per-view
    conventions."""

    name: str = CORRECTED
    masks: MaskSource = field(default_factory=GroundTruthMasks)
    #: ``{view: align_corners}`` with which coarse part maps are upsampled (empty: the method's own)
    view_align_corners: Mapping[str, bool] = field(default_factory=dict)
    #: ``{role: rule}`` for methods with their own background channel (see ``benchmark.metrics.scoring``)
    background_rules: Mapping[str, str] = field(default_factory=dict)
    #: ``whole-image``: the short side of the evaluated image (``None`` for the other protocols)
    image_size: int | None = None
    #: ``whole-image``: cut a centred ``image_size`` square after resizing (ViTs need a fixed input)
    centre_crop: bool = False

    def __post_init__(self):
        name, size, crop = parse_protocol(self.name)
        if name != self.name:
            raise UserError(f"protocol {self.name!r}: give the size with EvaluationProtocol.resolve({self.name!r})")
        if self.rules.whole_image and self.image_size is None:
            object.__setattr__(self, "image_size", size)
        if not self.rules.whole_image and (self.image_size is not None or self.centre_crop):
            raise UserError(f"protocol {self.name!r} takes no image size")

    @classmethod
    def resolve(cls, name: "str | EvaluationProtocol" = CORRECTED, masks: "str | MaskSource | None" = None,
                dataset: Any = None) -> "EvaluationProtocol":
        """The protocol ``name`` with mask source ``masks`` (``None``: keep an object's own, else ``gt``);
        ``dataset`` (a dataset class or instance) supplies the per-view conventions when the rules apply
        the reference's."""
        if isinstance(name, EvaluationProtocol):
            protocol = name if masks is None else dataclasses.replace(name, masks=MaskSource.parse(masks))
        else:
            family, size, crop = parse_protocol(str(name))
            protocol = cls(family, MaskSource.parse(masks), image_size=size, centre_crop=crop)
        if dataset is not None and protocol.rules.reference_quirks:
            protocol = dataclasses.replace(
                protocol, view_align_corners=dict(dataset.legacy_align_corners or {}),
                background_rules=dict(dataset.legacy_background_rules or {}))
        if dataset is not None and protocol.rules.whole_image and dataset.whole_image_view:
            # the reference evaluators upsample with a fixed align_corners whatever the model (False for the
            # NMI/ARI evaluators, True for PDiscoFormer's fg/bg IoU): the dataset says which
            protocol = dataclasses.replace(
                protocol, view_align_corners={dataset.whole_image_view: bool(dataset.whole_image_align_corners)})
        return protocol

    @property
    def spec(self) -> str:
        """The canonical text of this protocol (see :func:`canonical_protocol`)."""
        if not self.rules.whole_image:
            return self.name
        if self.image_size == WHOLE_IMAGE_DEFAULT_SIZE and not self.centre_crop:
            return self.name
        return f"{self.name}:{self.image_size}" + ("-crop" if self.centre_crop else "")

    @property
    def rules(self) -> ProtocolRules:
        return RULES[self.name]

    def __str__(self) -> str:
        return self.spec

    # -- per view, role and metric --------------------------------------------------------------------
    def align_corners(self, view: str) -> bool | None:
        """The ``align_corners`` of the part-map upsampling in ``view``; ``None`` = the method's own."""
        value = self.view_align_corners.get(view)
        return None if value is None else bool(value)

    def background_rule(self, role: str) -> str | None:
        """How a method's own background channel is read in ``role`` (``"fg"``/``"full"``), or ``None``."""
        return self.background_rules.get(role)

    def label_set(self, role: str, ground_truth: str, score: str) -> str:
        """The label pairs a clustering metric (``role``, ``score`` = ``"nmi"``/``"ari"``) consumes."""
        if role == "fg" and score == "ari" and ground_truth == "keypoints" and self.rules.fg_ari_with_background:
            return "fg_with_background"
        return role

    def needs_fg_background(self, ground_truth: str) -> bool:
        """Whether the FG view needs a background label too (for :meth:`label_set`'s variant)."""
        return ground_truth == "keypoints" and self.rules.fg_ari_with_background

    def identity(self) -> dict[str, Any]:
        """What identifies this protocol in caches derived from a dataset view."""
        return {"protocol": self.spec, "masks": self.masks.fingerprint()}
