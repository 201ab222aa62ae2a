"""The mask sources the harness computes: the ``model:CKPT``, ``unsupervised:NAME`` and ``fgbg`` kinds of
``--masks`` (:class:`~benchmark.core.protocol.MaskSource` subclasses, registered when :mod:`benchmark` is
imported, so every parse of a mask spelling knows them while :mod:`benchmark.core` imports nothing of the
harness).

* :class:`ModelMasks` (``--masks model:CKPT``) and :class:`UnsupervisedMasks` (``--masks unsupervised:NAME``)
  are :class:`GeneratedMasks`: their :meth:`~GeneratedMasks.prepare` writes the masks of the run's views once
  per run into ``<cache>/masks/<key>`` with :func:`benchmark.maskgen.predict_masks` (the key digests the
  checkpoint's content or the unsupervised source's name and settings, the dataset, its root and options,
  and the prediction code) and returns a :class:`PreparedMasks` source that reads the folder like
  ``predicted:DIR``.
* :class:`PlanFgBgMasks` (``fgbg``) names, in a reproduce plan, the masks of the fg/bg model the plan trains
  per dataset; the plan's own steps make them, so a single run refuses the spelling.

This module imports no torch (``import benchmark`` stays cheap): predicting imports it when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from benchmark.core.atomic import output_dir
from benchmark.core.cache import content_key, file_digest
from benchmark.core.errors import UserError
from benchmark.core.protocol import FolderMasks, MaskSource, register_mask_kind

if TYPE_CHECKING:
    from benchmark.maskgen import Predictor

PREDICT_VERSION = "masks-predict-v1"  # bump when a change to benchmark.maskgen alters the written masks


# --------------------------------------------------------------------------------------------------
# model:CKPT and unsupervised:NAME: mask kinds of the evaluation protocol
# --------------------------------------------------------------------------------------------------
class GeneratedMasks(MaskSource):
    """A mask kind whose masks are predicted (by a trained model or a training-free source) into a cache
    folder once per run (:meth:`prepare`), then read exactly like ``predicted:DIR``.

    The folder is ``<cache>/masks/<key>``; the key digests :meth:`fingerprint` (the checkpoint's content or
    the source's name and settings, and the prediction code), the dataset, its root and options -- not the
    split or view: the folder mirrors the whole image tree and every split adds its own files."""

    dataset_reads = "folder"
    needs_preparation = True

    def predictor(self, device: str = "cpu") -> Predictor:
        raise NotImplementedError

    def identity(self) -> Any:
        raise NotImplementedError

    def fingerprint(self) -> Any:
        return {"kind": self.kind, "source": self.identity(), "code": PREDICT_VERSION}

    @property
    def folder(self) -> Path:
        raise UserError(f"--masks {self.spec}: the masks are predicted when a run starts; load the dataset "
                        f"through `benchmark run`/`export`/`train` (or `benchmark masks predict` them first and "
                        f"pass --masks predicted:DIR)")

    def cache_folder(self, dataset, cache_dir: str | Path | None) -> Path:
        if cache_dir is None:
            from benchmark.core.cache import default_cache_dir

            cache_dir = default_cache_dir()
        key = content_key({"source": self.fingerprint(), "dataset": dataset.name,
                           "root": str(Path(dataset.root).resolve()) if dataset.root else None,
                           "options": dataset.options()})
        return Path(cache_dir) / "masks" / key

    def prepare(self, views: Sequence[Any], *, device: str, cache_dir: Any = None, batch_size: int = 16,
                progress: bool = False, num_workers: int = 0) -> MaskSource:
        """Predict the masks of every image of ``views`` not yet in the cache folder; the source that reads
        it (its :attr:`spec` and :meth:`fingerprint` stay this kind's, so rows and run keys name the model)."""
        views = list(views)
        if not views:
            raise ValueError("prepare needs at least one view")
        folder = self.cache_folder(views[0], cache_dir)
        with output_dir(folder, "mask cache folder"):  # a model that fails to load leaves no empty cache folder
            return PreparedMasks(self, folder).prepare(views, device=device, batch_size=batch_size,
                                                       progress=progress, num_workers=num_workers)


class PreparedMasks(FolderMasks):
    """The cache folder of a :class:`GeneratedMasks` source, read like ``predicted:DIR`` but named (row,
    run key) by the source that wrote it. Preparing it again for more views (e.g. the training split of a
    method that trains within the run) adds their masks to the same folder."""

    needs_preparation = True

    def __init__(self, origin: GeneratedMasks, folder: Path):
        super().__init__(str(folder))
        self.origin = origin

    def prepare(self, views: Sequence[Any], *, device: str = "cpu", cache_dir: Any = None, batch_size: int = 16,
                progress: bool = False, num_workers: int = 0) -> MaskSource:
        from benchmark.maskgen import pending_files, predict_masks

        predictor = None
        for data in views:
            if not pending_files(data, self.folder)[0]:
                continue
            predictor = predictor or self.origin.predictor(device)
            predict_masks(predictor, data, self.folder, batch_size=batch_size, device=device,
                          num_workers=num_workers, progress=progress)
        return self

    @property
    def spec(self) -> str:
        return self.origin.spec

    @property
    def trains_methods(self) -> bool:  # type: ignore[override]
        return self.origin.trains_methods

    @property
    def predicted(self) -> bool:  # type: ignore[override]
        return self.origin.predicted

    def fingerprint(self) -> Any:
        return self.origin.fingerprint()


@register_mask_kind("model")
class ModelMasks(GeneratedMasks):
    """Masks predicted by a trained fg/bg model (``model.pt`` of ``benchmark train -m fgbg``)."""

    argument = "CKPT"
    predicted = True
    in_plans = False  # a plan trains its own fg/bg model (``fgbg``) and keys its steps by that model

    def __init__(self, argument: str | None = None):
        path = Path(str(argument)).expanduser()
        if not path.is_file():
            raise UserError(f"--masks model:{argument}: {path} is not a file; pass the model.pt written by "
                            f"`benchmark train -m fgbg`")
        super().__init__(str(path.resolve()))

    def identity(self) -> Any:
        return file_digest(self.value)

    def predictor(self, device: str = "cpu") -> Predictor:
        from benchmark.methods.fgbg import load_mask_model

        return load_mask_model(Path(self.value)).to(device)


@register_mask_kind("unsupervised")
class UnsupervisedMasks(GeneratedMasks):
    """Masks of a training-free source (:data:`benchmark.methods.saliency.UNSUPERVISED`)."""

    argument = "NAME"
    trains_methods = True  # the unsupervised setting trains and evaluates with the same masks

    def __init__(self, argument: str | None = None):
        from benchmark.methods.saliency import UNSUPERVISED

        name = str(argument)
        if name not in UNSUPERVISED:
            raise UserError(f"--masks unsupervised:{name}: unknown unsupervised mask source {name!r}; known: "
                            f"{', '.join(sorted(UNSUPERVISED))}")
        super().__init__(name)

    def identity(self) -> Any:
        from benchmark.methods.saliency import unsupervised_source

        return unsupervised_source(self.value).identity

    def predictor(self, device: str = "cpu") -> Predictor:
        from benchmark.methods.saliency import unsupervised_source

        return unsupervised_source(self.value).to(device)


@register_mask_kind("fgbg")
class PlanFgBgMasks(MaskSource):
    """The masks of the fg/bg model a reproduce plan trains on each dataset (its ``fgbg-train`` step),
    predicted by its ``masks-predict`` step into a folder the evaluations read as ``predicted:DIR``; for a
    single run, train the model with `benchmark train -m fgbg` and pass --masks model:OUT/model.pt."""

    dataset_reads = "folder"
    needs_gt_masks = True  # the plan trains the fg/bg model on the dataset's annotation masks
    predicted = True
    in_runs = False
