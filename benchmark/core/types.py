"""The data that flows through partbench: dataset -> :class:`Sample` -> :class:`Batch` -> method ->
:class:`PartMaps` -> metrics.

Coordinate conventions (shared by every dataset, method and metric):

* Images are float32 tensors ``(3, H, W)`` with RGB values in ``[0, 1]``; each method applies its own
  input normalisation (Caffe means, ImageNet statistics, ...).
* Keypoints are ``(P, 2)`` float32 ``(x, y)`` in continuous pixel coordinates of the sample's view:
  pixel ``(i, j)`` (row ``i``, column ``j``) covers ``[j, j+1) x [i, i+1)``; a keypoint is read from the
  pixel ``round(x - 0.5), round(y - 0.5)`` (nearest sampling, as ``grid_sample(mode='nearest',
  align_corners=False)``). Invisible keypoints have ``visible == False`` and arbitrary coordinates.
* Part label maps are int64 ``(H, W)`` with 0 = background, 1..L = annotated parts.
* Masks are float32 ``(H, W)``: exactly {0, 1} under the corrected protocol; under the legacy protocol the
  raw (possibly un-thresholded, bilinearly resized) values the reference evaluation used.
* Bounding boxes are ``(x0, y0, w, h)`` float32 in view pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Sample:
    """One image of a dataset view with its annotations (see the module docstring for conventions)."""

    image: Tensor  # (3, H, W) float32 RGB in [0, 1]
    id: str  # unique, stable within the dataset (e.g. the image's relative path, plus an object index)
    keypoints: Tensor | None = None  # (P, 2) float32 (x, y)
    visible: Tensor | None = None  # (P,) bool
    mask: Tensor | None = None  # (H, W) float32 foreground mask (source chosen by the run's mask policy)
    part_labels: Tensor | None = None  # (H, W) int64, 0 = background
    bbox: Tensor | None = None  # (4,) float32 (x0, y0, w, h) of the object in view pixels
    meta: dict[str, Any] = field(default_factory=dict)  # anything else (class id, original size, crop)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[-2]), int(self.image.shape[-1])

    def validate(self) -> None:
        """Raise ``ValueError`` if the fields do not agree in shape and dtype."""
        if self.image.ndim != 3 or self.image.shape[0] != 3 or self.image.dtype != torch.float32:
            raise ValueError(f"sample {self.id}: image must be float32 (3, H, W), got {tuple(self.image.shape)} {self.image.dtype}")
        h, w = self.size
        if self.mask is not None and tuple(self.mask.shape) != (h, w):
            raise ValueError(f"sample {self.id}: mask shape {tuple(self.mask.shape)} != image size {(h, w)}")
        if self.part_labels is not None and (tuple(self.part_labels.shape) != (h, w) or self.part_labels.dtype != torch.int64):
            raise ValueError(f"sample {self.id}: part_labels must be int64 {(h, w)}, got {tuple(self.part_labels.shape)} {self.part_labels.dtype}")
        if (self.keypoints is None) != (self.visible is None):
            raise ValueError(f"sample {self.id}: keypoints and visible must be given together")
        if self.keypoints is not None:
            p = self.keypoints.shape[0]
            if tuple(self.keypoints.shape) != (p, 2) or tuple(self.visible.shape) != (p,) or self.visible.dtype != torch.bool:
                raise ValueError(f"sample {self.id}: keypoints must be (P, 2) with visible (P,) bool")


@dataclass
class Batch:
    """Samples of one size stacked along a leading batch axis (``N``). Optional fields are ``None`` when
    any sample lacks them. ``images`` is always present; everything is on ``images.device``."""

    images: Tensor  # (N, 3, H, W)
    ids: list[str]
    keypoints: Tensor | None = None  # (N, P, 2)
    visible: Tensor | None = None  # (N, P) bool
    masks: Tensor | None = None  # (N, H, W)
    part_labels: Tensor | None = None  # (N, H, W) int64
    bboxes: Tensor | None = None  # (N, 4)
    meta: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: str | torch.device, non_blocking: bool = False) -> "Batch":
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return replace(self, images=move(self.images), keypoints=move(self.keypoints), visible=move(self.visible),
                       masks=move(self.masks), part_labels=move(self.part_labels), bboxes=move(self.bboxes))

    def select(self, keep: Sequence[int]) -> "Batch":
        """The images at positions ``keep`` (in that order)."""
        index = torch.as_tensor(list(keep), dtype=torch.long, device=self.images.device)

        def take(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.index_select(0, index.to(t.device))

        return replace(self, images=take(self.images), ids=[self.ids[i] for i in keep], keypoints=take(self.keypoints),
                       visible=take(self.visible), masks=take(self.masks), part_labels=take(self.part_labels),
                       bboxes=take(self.bboxes), meta=[self.meta[i] for i in keep] if self.meta else self.meta)

    def pin_memory(self) -> "Batch":  # used by DataLoader(pin_memory=True)
        def pin(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.pin_memory()

        return replace(self, images=pin(self.images), keypoints=pin(self.keypoints), visible=pin(self.visible),
                       masks=pin(self.masks), part_labels=pin(self.part_labels), bboxes=pin(self.bboxes))


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack samples of equal image size into a :class:`Batch` (``DataLoader(collate_fn=collate)``)."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    sizes = {s.size for s in samples}
    if len(sizes) != 1:
        raise ValueError(f"cannot collate samples of different sizes {sorted(sizes)}; batch them by size")

    def stack(name: str) -> Tensor | None:
        values = [getattr(s, name) for s in samples]
        if any(v is None for v in values):
            return None
        return torch.stack(values)

    return Batch(images=torch.stack([s.image for s in samples]), ids=[s.id for s in samples],
                 keypoints=stack("keypoints"), visible=stack("visible"), masks=stack("mask"),
                 part_labels=stack("part_labels"), bboxes=stack("bbox"), meta=[s.meta for s in samples])


@dataclass(frozen=True)
class PartMaps:
    """What a method predicts for a :class:`Batch`: per-pixel part scores covering the whole image.

    ``scores`` is ``(N, C, h, w)``: ``C = K`` part channels, or ``C = K + 1`` when ``has_background``
    (channel 0 is then the method's own background, as in SCOPS). ``kind`` says whether the scores are
    ``"logits"`` (softmax over channels gives probabilities) or ``"probs"`` (already probabilities that sum
    to 1 over the channels). The maps may be coarser than the image (e.g. 33x33 for a 256x256 input):
    the harness resizes them bilinearly to ``image_size`` with the method's ``align_corners`` convention,
    *then* takes softmax/argmax -- exactly what the reference evaluations do with logits.
    """

    scores: Tensor
    image_size: tuple[int, int]
    kind: Literal["logits", "probs"] = "logits"
    has_background: bool = False
    align_corners: bool = False

    def __post_init__(self) -> None:
        if self.scores.ndim != 4:
            raise ValueError(f"PartMaps.scores must be (N, C, h, w), got shape {tuple(self.scores.shape)}")
        if self.kind not in ("logits", "probs"):
            raise ValueError(f"PartMaps.kind must be 'logits' or 'probs', got {self.kind!r}")
        if self.num_parts < 1:
            raise ValueError("PartMaps needs at least one part channel")

    @property
    def num_parts(self) -> int:
        return int(self.scores.shape[1]) - int(self.has_background)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def resized(self, size: tuple[int, int] | None = None) -> "PartMaps":
        """Scores bilinearly resized to ``size`` (default: ``image_size``)."""
        size = tuple(size or self.image_size)
        if tuple(self.scores.shape[-2:]) == size:
            return self
        scores = F.interpolate(self.scores.float(), size=size, mode="bilinear", align_corners=self.align_corners)
        return replace(self, scores=scores)

    def select(self, keep: Sequence[int]) -> "PartMaps":
        """The maps at positions ``keep`` (in that order)."""
        index = torch.as_tensor(list(keep), dtype=torch.long, device=self.scores.device)
        return replace(self, scores=self.scores.index_select(0, index))

    def probabilities(self) -> Tensor:
        """``(N, C, h, w)`` probabilities over all channels (background included when present)."""
        return self.scores.float().softmax(dim=1) if self.kind == "logits" else self.scores.float()

    def part_probabilities(self) -> Tensor:
        """``(N, K, h, w)`` probabilities of the K parts (for background methods: channels 1..K of the
        (K+1)-way softmax, not renormalised, as SCOPS computes part centres)."""
        probs = self.probabilities()
        return probs[:, 1:] if self.has_background else probs

    def part_labels(self) -> Tensor:
        """``(N, h, w)`` int64 argmax over the K part channels (0..K-1), ignoring any background channel."""
        scores = self.scores[:, 1:] if self.has_background else self.scores
        return scores.argmax(dim=1)

    def background_probability(self) -> Tensor | None:
        """``(N, h, w)`` the method's own background probability, or ``None``."""
        return self.probabilities()[:, 0] if self.has_background else None
