"""The :class:`Method` base class: the plug-in author's manual for part-discovery methods.

Adding a method is one class and a decorator::

    import torch
    from benchmark.core.method import Method
    from benchmark.core.registry import register_method
    from benchmark.core.types import PartMaps

    @register_method("colour-bins")
    class ColourBins(Method):
        \"\"\"Parts = bins of the red channel (a toy).\"\"\"

        def __init__(self, num_parts: int = 4):
            self.num_parts = num_parts          # store every parameter under its own name

        def predict(self, batch):
            bins = (batch.images[:, 0] * self.num_parts).long().clamp(max=self.num_parts - 1)
            probs = torch.nn.functional.one_hot(bins, self.num_parts).permute(0, 3, 1, 2).float()
            return PartMaps(probs, image_size=batch.size, kind="probs")

Conventions (scikit-learn's estimator rules, checked for every registered method by
``tests/test_contracts.py``):

* ``__init__`` takes keyword parameters with defaults -- always including ``num_parts`` -- and stores each
  unchanged under the same attribute name; no work and no validation of data happens there.
  :meth:`get_params` reads them back through the signature; they go into every result row.
* ``fit(data, *, seed, device)`` learns whatever the method needs and returns ``self``. ``data`` is a
  :class:`~benchmark.core.dataset.Dataset` view: the training view of the training split for methods with
  ``requires_training``; the *evaluation* view itself for ``transductive`` methods (K-means, DFF), which is
  recorded in the results. All randomness must come from ``seed``: same seed -> identical part maps.
  Iterate the data with ``data.batches(batch_size, device=device)``.
* ``predict(batch) -> PartMaps`` for a :class:`~benchmark.core.types.Batch` of images of one size,
  without side effects. Return coarse maps and let the harness upsample them (``PartMaps`` says how).
  ``batch.masks`` holds the run's foreground masks when the mask policy provides them.
* ``param_ranges`` (class attribute, ``{name: Range(low, high)}`` from :mod:`benchmark.core.plugin`): the values
  numeric parameters accept (a learning rate > 0, an image side <= 4096); the harness refuses a value outside
  in one line before the method is built, so ``__init__`` still validates nothing. Datasets declare theirs
  for ``-o`` options the same way.
* Tags (class attributes): ``requires_training``, ``transductive``, ``provides_background`` (a background
  channel 0, usable with ``--masks method``), ``uses_masks`` (needs ``batch.masks`` at fit/predict time).
* ``supervision`` (tag, required of every registered method): the strongest annotation the method learns
  from, one of :data:`SUPERVISION_TRACKS`:

  - ``"none"``: images only (pretrained backbones allowed), e.g. ``dff``, ``random``;
  - ``"fg-masks"``: foreground masks of the training or evaluated images (e.g. ``ours`` and ``scops``
    train on them, ``kmeans`` clusters only foreground features);
  - ``"class-labels"``: image-level class labels (PDiscoNet, PDiscoFormer train a classifier).

  ``benchmark list``, the ``supervision`` column of result rows and the tables show it; tables rank
  (bold) methods only within one track. A method whose supervision depends on its input (``predictions``)
  overrides :meth:`supervision_track`.
* :meth:`unavailable_reason` says why the method cannot run here (a missing optional dependency ...);
  the method then stays registered, is listed as unavailable by ``benchmark list`` and skipped by the demo.
* :meth:`demo_params` gives tiny settings for ``benchmark demo`` (2 CPU cores, a few seconds per method);
  returning ``None`` leaves the method out of the demo (for methods that need user input).
* :meth:`weights_id` names the pretrained weights the predictions depend on (recorded in every row);
  :meth:`input_fingerprint` digests the files the parameters point to (part of the run's key).
* ``reads_saved_maps`` (tag): the method only reads part maps saved by another method (``predictions``);
  ``benchmark export`` refuses it, since exporting it would merely copy its input folder.

Optional hooks
--------------
Everything the harness may ask a method is declared on this class with a default that does nothing
special; a method overrides only what applies to it (nothing is looked up by name at run time):

* ``skipped_ids`` (attribute, default empty): ids of images the method has no prediction for, collected
  during ``predict``. After every predicted batch the harness drops those images (their rows in the
  returned maps are ignored) and records their count in the ``skipped_images`` column.
* :meth:`effective_params`: the parameters the method really runs with (a preset's values in place of
  parameters left ``None``).
* :meth:`weights_needed` (classmethod): the weights files the method reads with ``params``, as data
  (:class:`~benchmark.core.requirements.WeightsFile`, from the catalogue in ``methods/pretrained.py``).
  ``benchmark list``, ``run``, ``train``, ``sweep`` and every ``reproduce`` step ask it (through
  :meth:`missing_weights`) to say "needs weights", stop before reading data, or block a step.
* :meth:`training_estimate` (classmethod): one sentence on what training from ``params`` will do and how
  long it should take on ``device``, or ``None`` when unknown. ``benchmark run`` prints it before it
  trains a ``requires_training`` method that has no ``checkpoint``.
* :meth:`training_seconds` (classmethod): that duration in seconds, or ``None`` when not measured. On a CPU,
  ``run``, ``sweep`` and ``export`` start a training estimated at no more than 10 minutes (a ``tiny``
  preset, a few ``-p steps``) and refuse anything longer or unknown without ``--train-if-missing``.
  A ``TrainableMethod`` (``methods/training/method.py``) derives both from one ``step_estimate``.
* ``train_view`` (tag, default ``"train"``): the dataset view ``benchmark train`` trains on.
* :meth:`cache_key` with :meth:`caches_training`: the key under which a trained model is cached between
  runs; ``benchmark reproduce`` plans a ``train`` step only for a method that has one.

Optional capability: training (``benchmark train``)
---------------------------------------------------
A method whose weights are worth keeping between runs (``ours``, ``scops``) implements
``train(data, *, out_dir, resume=False, seed=0, device="cpu", keep_checkpoints=0) -> TrainResult``
(:meth:`trainable` is then true, and ``benchmark train`` / ``benchmark list`` pick it up from the
registry; nothing names the method anywhere else):

* ``data`` is the training view of the training split (``split="train", view="train", masks="gt"``);
  ``out_dir`` receives ``checkpoints/``, ``train_log.csv`` and the final ``model.pt`` (``None``: write
  nothing); ``resume=True`` continues exactly from the latest checkpoint there. Under ``torchrun`` the
  method trains with DDP. :class:`benchmark.methods.training.Trainer` does all of this (checkpoints, exact
  resume, CSV log, DDP, bf16, ``torch.compile``); :class:`benchmark.methods.training.TrainableMethod`
  adds the rest of the life cycle (``fit`` = load ``checkpoint`` or train once and cache, weights identity,
  cache key, device placement), so a new trainable method supplies its network, loss and settings only.
* The parameter ``checkpoint`` (a path) loads the ``model.pt`` that ``train`` wrote, so that
  ``benchmark run --checkpoint OUT/model.pt`` evaluates it.
* The parameter ``preset`` selects one of :meth:`train_presets` (``paper`` = the published training,
  ``tiny`` = a few CPU seconds for the demo and tests); every setting of a preset can be overridden by a
  parameter of the same name. ``benchmark train`` options set the parameters of the same name when the
  method has them: ``preset``, ``steps``, ``batch_size`` (the global batch), ``image_size``, ``init``
  (``caffe:PATH | torchvision | random`` for the DeepLab segmenters), ``amp``, ``compile``, ``ablate``.
* ``tests/test_contracts.py`` trains every trainable method for one step on synthetic data, resumes it for
  a second step and loads the result back through ``checkpoint``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from benchmark.core.plugin import Plugin
from benchmark.core.requirements import WeightsFile, describe_missing

#: the supervision tracks a method declares (``Method.supervision``), from the weakest
SUPERVISION_TRACKS = ("none", "fg-masks", "class-labels")

if TYPE_CHECKING:
    from benchmark.core.dataset import Dataset
    from benchmark.core.types import Batch, PartMaps


@dataclass
class TrainResult:
    """What :meth:`Method.train` returns."""

    out_dir: Path
    model_path: Path  # OUT/model.pt (``Path()`` when nothing was written)
    steps: int  # steps completed in total
    resumed_from: int  # 0 for a fresh run
    last_losses: dict[str, float] | None  # the last logged value of every loss term


@dataclass
class RunContext:
    """Where a method may keep things between runs, and how chatty it may be. Set by the runner."""

    cache_dir: Path | None = None  # content-addressed caches (features, trained checkpoints); None = off
    work_dir: Path | None = None  # run-specific scratch/output (training logs, checkpoints)
    num_workers: int = 0  # DataLoader workers for the method's own passes over data
    progress: bool = False  # show tqdm progress bars
    data_root: Path | None = None  # root of the dataset being evaluated (for methods reading side files)


class Method(Plugin):
    """Base class of every part-discovery method (see the module docstring for the contract)."""

    name: ClassVar[str] = "?"  # set by @register_method
    requires_training: ClassVar[bool] = False
    transductive: ClassVar[bool] = False
    provides_background: ClassVar[bool] = False
    uses_masks: ClassVar[bool] = False
    supervision: ClassVar[str | None] = None  # one of SUPERVISION_TRACKS; see the module docstring
    reads_saved_maps: ClassVar[bool] = False
    train_view: ClassVar[str] = "train"

    num_parts: int
    context: RunContext = RunContext()
    #: ids of the images the method had no prediction for (see "Optional hooks"); a method that skips
    #: images assigns its own list
    skipped_ids: Sequence[str] = ()

    def __init__(self, num_parts: int = 4):
        self.num_parts = num_parts

    # -- description --------------------------------------------------------------------------------
    @classmethod
    def weights_needed(cls, params: dict[str, Any] | None = None) -> "list[WeightsFile]":
        """The weights files the method reads with ``params`` (its defaults when ``None``), as data: one
        :class:`~benchmark.core.requirements.WeightsFile` per file, with where it is looked for and how to
        get it (:mod:`benchmark.methods.pretrained` builds them). ``[]``: no pretrained weights. ``list``,
        ``run``, ``train``, ``sweep`` and ``reproduce`` all ask this one declaration."""
        return []

    @classmethod
    def missing_weights(cls, params: dict[str, Any] | None = None) -> str | None:
        """``None`` when every file of :meth:`weights_needed` is on this machine; else one sentence saying
        which are missing and how to get them. ``benchmark list`` then shows "needs weights", and ``run`` on
        the built-in synthetic dataset uses :meth:`random_weights_params` instead, with a loud warning
        (recorded in every row). Not meant to be overridden: declare :meth:`weights_needed`."""
        alternative = "or evaluate a trained model with --checkpoint PATH" if cls.requires_training else ""
        return describe_missing(cls.weights_needed(dict(params or {})), alternative=alternative)

    @classmethod
    def random_weights_params(cls) -> dict[str, Any]:
        """The parameters that replace every pretrained weight of the method by random ones (``{}``: the
        method has no pretrained weights)."""
        return {}

    @classmethod
    def demo_params(cls) -> dict[str, Any] | None:
        """Parameter overrides for ``benchmark demo`` (tiny settings, random weights allowed); ``None``
        leaves the method out of the demo."""
        return {}

    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        sig = inspect.signature(cls.__init__)
        return {p.name: p.default for p in sig.parameters.values()
                if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters, read back from the attributes ``__init__`` stored."""
        return {name: getattr(self, name) for name in self.param_names()}

    def effective_params(self) -> dict[str, Any]:
        """The settings the method really runs with: :meth:`get_params`, plus, for a method whose parameters
        left ``None`` mean "the preset's value", the preset's values in their place (and any setting the
        preset fixes that is no parameter). Called by ``benchmark reproduce`` to find the pretrained
        weights a step needs. The default is :meth:`get_params`."""
        return self.get_params()

    def input_fingerprint(self) -> Any:
        """A JSON-able digest of the *contents* of files the parameters point to (checkpoints, folders of
        saved predictions), so that a changed file at the same path makes a new run instead of reusing
        old results. The default is :meth:`weights_id`, which already digests checkpoint files."""
        return self.weights_id()

    def weights_id(self) -> str:
        """Identity of the pretrained weights the predictions depend on (``"none"`` if none)."""
        return "none"

    def supervision_track(self) -> str:
        """The supervision this instance learnt from (default: the class tag ``supervision``); ``""`` when
        it is not known."""
        return self.supervision or ""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- learning and prediction --------------------------------------------------------------------
    def fit(self, data: "Dataset", *, seed: int = 0, device: str = "cpu") -> "Method":
        """Learn from ``data`` (see the module docstring); the default learns nothing."""
        return self

    def predict(self, batch: "Batch") -> "PartMaps":
        raise NotImplementedError

    # -- optional capability: training ------------------------------------------------------------------
    @classmethod
    def trainable(cls) -> bool:
        """Whether the method implements ``train`` (the ``benchmark train`` capability)."""
        return cls.train is not Method.train

    @classmethod
    def caches_training(cls) -> bool:
        """Whether the method implements :meth:`cache_key` (trained models are cached between runs)."""
        return cls.cache_key is not Method.cache_key

    @classmethod
    def training_estimate(cls, params: dict[str, Any], device: str) -> str | None:
        """What training from ``params`` will do and how long it should take on ``device`` (one sentence, e.g.
        from a measured step), or ``None`` when unknown (the default). See "Optional hooks"."""
        return None

    @classmethod
    def training_seconds(cls, params: dict[str, Any], device: str) -> float | None:
        """How long training from ``params`` should take on ``device`` in seconds (e.g. a measured step times
        the steps), or ``None`` when not measured (the default). See "Optional hooks"."""
        return None

    def cache_key(self, data: "Dataset", seed: int) -> str:
        """The key of the model that training on ``data`` with ``seed`` produces, under
        ``context.cache_dir/<name>/<key>/model.pt``: it must digest everything that decides the training
        (code version, settings, initial weights, the data's :meth:`~benchmark.core.dataset.Dataset.identity`,
        seed). Implemented by :class:`benchmark.methods.training.TrainableMethod`."""
        raise NotImplementedError(f"method {self.name!r} does not cache trained models")

    @classmethod
    def train_presets(cls) -> dict[str, dict[str, Any]]:
        """The training presets of a trainable method: ``{name: {setting: value}}`` (every setting a
        preset fixes, for ``--help`` and the docs); empty for a method that does not train."""
        return {}

    def train(self, data: "Dataset", *, out_dir: "str | Path | None", resume: bool = False, seed: int = 0,
              device: str = "cpu", keep_checkpoints: int = 0) -> TrainResult:
        """Train on ``data`` and write the run to ``out_dir`` (see "Optional capability: training")."""
        raise NotImplementedError(f"method {self.name!r} cannot be trained with `benchmark train`")
