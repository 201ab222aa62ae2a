"""Deterministic, checkpointable training data order (epoch-wise shuffles, ``drop_last``) and loaders.

:class:`DataOrder` draws one permutation of the dataset per epoch from its own ``torch.Generator``
(seeded from the run's seed) and cuts it into global batches of ``batch_size`` indices, dropping the
incomplete last batch (the reference's ``shuffle=True, drop_last=True`` loader: the warp grids have a fixed
batch dimension). Its state -- the generator's state at the start of the current epoch, the epoch and the
position in it -- goes into every checkpoint, so a resumed run continues with the very same batches.

Under DDP every rank draws the same global batches and keeps its contiguous share ``[r*b, (r+1)*b)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from benchmark.core.errors import UserError
from benchmark.core.seeding import derive_seed
from benchmark.core.types import Batch, Sample, collate


class DataOrder:
    """Global batches of dataset indices, epoch after epoch (see the module docstring)."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, *, shuffle: bool = True):
        if num_samples < batch_size:
            raise UserError(f"the training data has {num_samples} samples, fewer than one batch of "
                            f"{batch_size} (incomplete batches are dropped); use a smaller training batch "
                            f"(--train-batch-size with `benchmark train`, -p batch_size=N with `benchmark run`)")
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(derive_seed(seed, "data-order"))
        self.epoch = 0
        self.position = 0  # batches of the current epoch already handed out
        self._epoch_start_state = self.generator.get_state()
        self._perm = self._draw()

    @property
    def batches_per_epoch(self) -> int:
        return self.num_samples // self.batch_size

    def _draw(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_samples))
        return torch.randperm(self.num_samples, generator=self.generator).tolist()

    def next_batch(self) -> list[int]:
        if self.position >= self.batches_per_epoch:
            self.epoch += 1
            self.position = 0
            self._epoch_start_state = self.generator.get_state()
            self._perm = self._draw()
        start = self.position * self.batch_size
        self.position += 1
        return self._perm[start:start + self.batch_size]

    def take(self, count: int) -> list[list[int]]:
        return [self.next_batch() for _ in range(count)]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_start_state": self._epoch_start_state.clone(), "epoch": self.epoch,
                "position": self.position, "num_samples": self.num_samples, "batch_size": self.batch_size,
                "shuffle": self.shuffle}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["num_samples"], state["batch_size"]) != (self.num_samples, self.batch_size):
            raise UserError(f"cannot resume: the checkpoint was trained on {state['num_samples']} samples with "
                            f"batch {state['batch_size']}, this run has {self.num_samples} samples and batch "
                            f"{self.batch_size}; resume with the same dataset and --train-batch-size")
        self.shuffle = bool(state["shuffle"])
        self.generator.set_state(state["epoch_start_state"])
        self._epoch_start_state = state["epoch_start_state"].clone()
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._perm = self._draw()


def shard(batches: Sequence[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """Each rank's contiguous share of every global batch."""
    out = []
    for indices in batches:
        per_rank = len(indices) // world_size
        out.append(list(indices[rank * per_rank:(rank + 1) * per_rank]))
    return out


class ResizingCollate:
    """:func:`benchmark.core.types.collate`, after resizing every sample whose size differs from
    ``size`` (bilinear+antialias for the image, nearest for mask and labels, keypoints scaled).
    Picklable, so it works in DataLoader workers."""

    def __init__(self, size: int | None):
        self.size = size

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        if self.size is not None:
            samples = [_resize_sample(s, self.size) for s in samples]
        try:
            return collate(samples)
        except ValueError as exc:
            raise UserError(f"{exc}; pass an image size so that training batches can be formed") from None


def _resize_sample(sample: Sample, size: int) -> Sample:
    h, w = sample.size
    if (h, w) == (size, size):
        return sample
    from dataclasses import replace

    image = F.interpolate(sample.image[None], size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)[0].clamp_(0, 1)
    mask = None if sample.mask is None else F.interpolate(sample.mask[None, None], size=(size, size), mode="nearest")[0, 0]
    labels = None if sample.part_labels is None else F.interpolate(
        sample.part_labels[None, None].float(), size=(size, size), mode="nearest")[0, 0].long()
    keypoints = None
    if sample.keypoints is not None:
        keypoints = sample.keypoints * torch.tensor([size / w, size / h], dtype=sample.keypoints.dtype)
    bbox = None
    if sample.bbox is not None:
        bbox = sample.bbox * torch.tensor([size / w, size / h, size / w, size / h], dtype=sample.bbox.dtype)
    return replace(sample, image=image, mask=mask, part_labels=labels, keypoints=keypoints, bbox=bbox)


def segment_loader(dataset, batches: list[list[int]], *, seed: int, segment_start: int, rank: int,
                   num_workers: int, image_size: int | None, pin_memory: bool) -> DataLoader:
    """A DataLoader over exactly ``batches``. Its own generator (hence the worker seeds of random
    augmentations in ``__getitem__``) is derived from (seed, segment start, rank): segments begin at
    checkpoint boundaries, so a resumed run rebuilds the very same loader."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "loader", segment_start, rank))
    return DataLoader(dataset, batch_sampler=batches, collate_fn=ResizingCollate(image_size),
                      num_workers=num_workers, pin_memory=pin_memory, generator=generator,
                      persistent_workers=False)
