"""Image-level class labels as training targets, for methods trained with ``supervision = "class-labels"``
(``pdiscoformer``, ``pdisconet``): ``batch.meta[i]["class_id"]`` mapped to classifier indices in the order of
the dataset's :meth:`~benchmark.core.dataset.Dataset.class_ids`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from benchmark.core.errors import UserError
from benchmark.core.types import Batch


def labelled_datasets() -> list[str]:
    """The registered datasets that declare class labels (override :meth:`Dataset.class_ids`)."""
    from benchmark.core.dataset import Dataset
    from benchmark.core.registry import DATASETS

    return [name for name in DATASETS.names() if DATASETS.get(name).class_ids is not Dataset.class_ids]


class ClassTargets:
    """Maps ``meta["class_id"]`` to the classifier's indices (the order of ``data.class_ids()``); ``method``
    names the method in the one-line refusals (a dataset without labels, or with fewer than two classes)."""

    def __init__(self, data: Any, method: str):
        ids = data.class_ids()  # Dataset declares it (None: no class labels)
        name = getattr(data, "name", "this dataset")
        if ids is None:
            raise UserError(f"{method} trains with image-level class labels and dataset {name!r} has none; "
                            f"train it on a dataset with class labels ({', '.join(labelled_datasets())}) or "
                            f"evaluate a trained model with --checkpoint PATH")
        if len(ids) < 2:
            raise UserError(f"{method} trains a classifier and the training split of {name!r} has "
                            f"{len(ids)} class; pass a split (or -o classes) with at least two")
        self.method, self.dataset = method, name
        self.index = {cid: i for i, cid in enumerate(ids)}

    @property
    def num_classes(self) -> int:
        return len(self.index)

    def __call__(self, batch: Batch) -> Tensor:
        try:
            targets = [self.index[meta["class_id"]] for meta in batch.meta]
        except KeyError as exc:
            raise UserError(f"{self.method}: a training sample of {self.dataset!r} has class label {exc} outside "
                            f"the dataset's class_ids(); the dataset's index is inconsistent") from None
        ids = torch.tensor(targets, dtype=torch.long)
        if batch.device.type == "cuda":
            ids = ids.pin_memory()  # an asynchronous copy: the host does not wait for the stream
        return ids.to(batch.device, non_blocking=True)
