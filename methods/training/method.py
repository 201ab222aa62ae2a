""":class:`TrainableMethod`: the shared base of methods that "load a checkpoint or train, then predict".

``ours`` and ``scops`` (and any network method that trains through :class:`~.loop.Trainer`) differ in
their network, losses and settings, but not in the life cycle around them, which lives here once:

* **weights identity** -- :meth:`weights_id` is ``<checkpoint_label>:<sha256 of the file>`` when the
  ``checkpoint`` parameter is set, else ``trained(<source>=<identity>, ...)`` over the method's
  :meth:`weight_sources` (a ``caffe:PATH``/file source is identified by its content, so a replaced file
  makes a new run key);
* **cache key** -- :meth:`cache_key` digests the code version, :meth:`training_record` (every setting that
  decides what training produces), the weight identities, the dataset's identity and the seed;
  ``fit`` trains into ``context.cache_dir/<name>/<key>/`` and reuses ``model.pt`` there (an interrupted
  cached training resumes, see :func:`~.cache.train_or_reuse`);
* **device placement** -- the trained or loaded network is kept in eval mode and moved once to the device
  of the batches it predicts (under ``torchrun`` training happens on ``cuda:LOCAL_RANK``).

A subclass provides: :meth:`trainer` (the configured :class:`~.loop.Trainer`, not yet run),
:meth:`trained_network` (the module to predict with once the trainer has run), :meth:`load_network`
(the module from a checkpoint file or a ``model.pt`` written by :meth:`train`), :meth:`predict_with`
(part maps from the network), :meth:`training_record` and :meth:`weight_sources`; optionally
:meth:`check_params`, and :meth:`step_estimate`, from which the training-time estimate that ``run`` prints
(and the CPU rule of ``benchmark/training_cost.py`` reads) is derived. It also implements the ``train`` capability of
:class:`~benchmark.core.method.Method` (``benchmark train``) and lists its presets in ``train_presets``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from benchmark.core.cache import content_key, file_digest
from benchmark.core.errors import UserError
from benchmark.core.method import Method, TrainResult
from benchmark.core.plugin import Range
from benchmark.core.types import Batch, PartMaps


def source_identity(spec: str, *, option: str = "init") -> str:
    """The identity of a weights source: ``imagenet``/``random`` as they are, ``torchvision`` as its
    ImageNet weights, ``caffe:PATH`` and plain paths by the content of the file."""
    if spec.startswith("caffe:"):
        path = Path(spec[len("caffe:"):]).expanduser()
        if not path.is_file():
            raise UserError(f"{option} caffe:{path}: no such file; pass the DeepLab ResNet-50 caffe weights "
                            "(resnet50-caffe-22edcc82.pth)")
        return f"caffe:{file_digest(path)}"
    if spec == "torchvision":
        return "torchvision:IMAGENET1K_V1"
    if spec in ("imagenet", "random") or spec.startswith("torchvision:"):
        return spec
    path = Path(spec).expanduser()
    return f"file:{file_digest(path)}" if path.is_file() else str(path)


@dataclass(frozen=True)
class StepEstimate:
    """What training from some parameters will do, and one of its steps timed on this machine: what
    :meth:`TrainableMethod.training_estimate` says and :meth:`TrainableMethod.training_seconds` computes."""

    what: str  # e.g. "20 steps of batch 4 at 64 px (preset tiny)"
    steps: int | None  # None: counted in epochs of the dataset, unknown before it is read
    ms: float | None  # one step's milliseconds here; None: not timed (a paper step takes minutes on a CPU)
    bench: str  # the speed benchmark that times a step, named when ``ms`` is None


#: The accepted values of the training settings every trainable method shares (a plug-in adds its own).
TRAINING_RANGES = {"steps": Range(1), "batch_size": Range(1), "image_size": Range(16, 4096),
                   "lr": Range(0, low_open=True), "checkpoint_every": Range(1)}


class TrainableMethod(Method):
    """Base of methods that load a checkpoint or train (then cache) a network, then predict with it."""

    requires_training = True
    #: Bump when a change alters what training produces: it is part of the cache key.
    code_version: ClassVar[str] = "?"
    #: Prefix of :meth:`weights_id` for a loaded checkpoint.
    checkpoint_label: ClassVar[str] = "checkpoint"

    #: The field of the network's output that :meth:`predict_with` reads, for a network that returns several
    #: (``None``: it returns one tensor). Prediction then sees that field alone, and the output cache keeps it.
    prediction_output: ClassVar[str | None] = None

    checkpoint: str | None = None

    # -- what a subclass provides ----------------------------------------------------------------------
    def check_params(self) -> None:
        """Raise :class:`UserError` for parameter values that cannot work (called by fit and train)."""

    def weight_sources(self) -> dict[str, str]:
        """Pretrained weights training starts from, by role, e.g. ``{"init": "caffe:PATH", "vgg": "imagenet"}``."""
        raise NotImplementedError

    def training_record(self, data: Any) -> dict[str, Any]:
        """Every setting (besides weights, dataset and seed) that decides what training produces."""
        raise NotImplementedError

    def trainer(self, data: Any, *, out_dir: str | Path | None, seed: int, device: Any, keep_checkpoints: int = 0):
        """The configured :class:`~benchmark.methods.training.Trainer` for ``data`` (not yet run)."""
        raise NotImplementedError

    def trained_network(self) -> nn.Module:
        """The module to predict with once :meth:`trainer`'s trainer has run."""
        raise NotImplementedError

    def load_network(self, path: str | Path) -> nn.Module:
        """The module from a checkpoint file (an official one or a ``model.pt`` of :meth:`train`)."""
        raise NotImplementedError

    def predict_with(self, network: nn.Module, batch: Batch) -> PartMaps:
        """Part maps of ``batch`` from ``network`` (in eval mode, on ``batch.device``)."""
        raise NotImplementedError

    # -- the training-time estimate --------------------------------------------------------------------------
    @classmethod
    def step_estimate(cls, params: dict[str, Any], device: str) -> StepEstimate | None:
        """What training from ``params`` will do and one of its steps timed on ``device`` (cached per process,
        so the sentence and the seconds read one measurement); ``None``: nothing known (the default)."""
        return None

    @classmethod
    def training_estimate(cls, params: dict[str, Any], device: str) -> str | None:
        estimate = cls.step_estimate(params, device)
        if estimate is None:
            return None
        if estimate.ms is None or estimate.steps is None:
            return f"{estimate.what}, duration not measured (`benchmark bench {estimate.bench}` times a step)"
        from benchmark.methods.step_timing import format_duration

        return (f"{estimate.what}, measured {estimate.ms / 1000:.2f} s/step here, about "
                f"{format_duration(estimate.ms / 1000.0 * estimate.steps)}")

    @classmethod
    def training_seconds(cls, params: dict[str, Any], device: str) -> float | None:
        estimate = cls.step_estimate(params, device)
        if estimate is None or estimate.ms is None or estimate.steps is None:
            return None
        return estimate.ms / 1000.0 * estimate.steps

    # -- identity ------------------------------------------------------------------------------------------
    def weights_id(self) -> str:
        if self.checkpoint:
            path = Path(self.checkpoint).expanduser()
            return f"{self.checkpoint_label}:{file_digest(path) if path.is_file() else path}"
        sources = ", ".join(f"{role}={source_identity(spec, option=role)}"
                            for role, spec in self.weight_sources().items())
        return f"trained({sources})"

    def cache_key(self, data: Any, seed: int) -> str:
        """Key of a trained model in ``context.cache_dir/<name>/``: everything that decides the training."""
        return content_key({"version": self.code_version, "training": self.training_record(data),
                            "weights": {role: source_identity(spec, option=role)
                                        for role, spec in self.weight_sources().items()},
                            "dataset": data.identity(), "seed": int(seed)})

    # -- life cycle ----------------------------------------------------------------------------------------
    def fit(self, data: Any, *, seed: int = 0, device: str = "cpu") -> "TrainableMethod":
        """Load ``checkpoint``, else reuse the model cached for this exact training, else train on ``data``
        (the training view of the training split)."""
        self.check_params()
        if self.checkpoint:
            self._keep(self.load_network(self.checkpoint), device)
            return self
        from benchmark.methods.training.cache import train_or_reuse

        train_or_reuse(self, data, name=self.name, seed=seed, device=device,
                       load=lambda model_file: self._keep(self.load_network(model_file), device))
        return self

    def train(self, data: Any, *, out_dir: str | Path | None, resume: bool = False, seed: int = 0,
              device: str = "cpu", keep_checkpoints: int = 0) -> TrainResult:
        """Train on ``data`` writing checkpoints and the loss log to ``out_dir`` (``keep_checkpoints`` = 0 keeps
        every periodic checkpoint, as the references do); keeps the trained network for ``predict``."""
        from benchmark.methods.training.distributed import local_device

        self.check_params()
        trainer = self.trainer(data, out_dir=out_dir, seed=seed, device=device, keep_checkpoints=keep_checkpoints)
        result = trainer.fit(data, resume=resume)
        self.train_result_ = result
        self._keep(self.trained_network(), local_device(device))
        return result

    def _keep(self, network: nn.Module, device: Any) -> None:
        self.network_ = network.to(device).eval()
        self._cached_network = None

    @torch.no_grad()
    def predict(self, batch: Batch) -> PartMaps:
        network = getattr(self, "network_", None)
        if network is None:
            raise RuntimeError(f"{self.name}: call fit() first (it trains, or loads -p checkpoint=PATH)")
        if next(network.parameters()).device != batch.device:
            self.network_ = network = network.to(batch.device)  # once, not per batch
            self._cached_network = None
        return self.predict_with(self._network_for_predict(network), batch)

    def _network_for_predict(self, network: nn.Module):
        """The network (its :attr:`prediction_output` alone), behind the content-addressed output cache when the
        run has a cache (the same model on the same batch -- both protocols, every mask source of a plan -- runs
        once; see :mod:`.output_cache`)."""
        if self.prediction_output is not None:
            from benchmark.methods.training.output_cache import OutputField

            field = getattr(self, "_output_field", None)
            if field is None or field.network is not network:  # one wrapper per network: the cache keys it once
                field = self._output_field = OutputField(network, self.prediction_output)
            network = field
        if self.context.cache_dir is None:
            return network
        cached = getattr(self, "_cached_network", None)
        if cached is None or cached.network is not network:
            from benchmark.methods.training.output_cache import CachedNetwork

            label = self.name + (f".{self.prediction_output}" if self.prediction_output else "")  # which output
            cached = self._cached_network = CachedNetwork(network, self.context.cache_dir, label=label)
        return cached
