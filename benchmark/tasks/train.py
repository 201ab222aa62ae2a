"""Training jobs: train a part method, or the fg/bg mask model, on a dataset's training split
(``benchmark train`` and the plans' ``fgbg-train`` step)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from benchmark.core.errors import UserError
from benchmark.core.protocol import DEFAULT_PROTOCOL, gives_masks, mask_kinds_text

Echo = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    """One training: ``method`` (any class with the training capability, mask models included) with
    ``params`` as given (presets, steps, init, ...), on the training split of ``dataset`` with the
    foreground masks ``masks``, writing checkpoints, the loss log and ``model.pt`` to ``out_dir``.

    ``into_run_cache``: train into the content-addressed cache ``benchmark run`` reads
    (``<cache_dir>/<method>/<key>/``, the key from :meth:`~benchmark.core.method.Method.cache_key`), resuming
    an interrupted training there and reusing a finished one; ``out_dir`` and ``resume`` are then the
    cache's. ``expected_key``: the key the caller planned with (a reproduce plan); another key means the
    data or weights changed since, and is an error before anything trains."""

    method: str
    dataset: str
    params: dict[str, Any] = field(default_factory=dict)
    data_root: str | Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    masks: str = "gt"
    protocol: str = DEFAULT_PROTOCOL  # the protocol of the training view (its mask rules)
    out_dir: str | Path | None = None  # None: train_runs/METHOD-DATASET-seedS
    resume: bool = False
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    progress: bool = False
    # generated training masks (None: $PARTBENCH_CACHE or ~/.cache/partbench) and the method's own caches
    cache_dir: str | Path | None = None
    keep_checkpoints: int | None = None  # None: the method's default
    into_run_cache: bool = False
    expected_key: str | None = None


@dataclass
class TrainOutcome:
    result: Any  # the method's :class:`~benchmark.core.method.TrainResult` (None: reused from the run cache)
    out_dir: Path
    images: int  # training images
    rank: int  # the process's DDP rank (0 alone); only rank 0 writes and reports
    method: Any = None  # the trained method (its ``weights_id()`` goes into ledgers)


def default_out_dir(method: str, dataset: str, seed: int) -> Path:
    return Path("train_runs") / f"{method}-{dataset}-seed{seed}"


def train(config: TrainConfig, *, echo: Echo = lambda _: None) -> TrainOutcome:
    """Build the method and the training view, then run the method's ``train`` (resumable, DDP under
    torchrun). Random weights are announced through ``echo``: they must never pass unnoticed."""
    from benchmark.core.atomic import output_dir
    from benchmark.core.method import RunContext
    from benchmark.factories import build_dataset, build_mask_source, build_method, resolve_device
    from benchmark.maskgen import prepare_masks

    method = build_method(config.method, params=config.params, for_training=True)
    # The parameters the class declares as its random weights (Method.random_weights_params), as set here.
    randoms = [f"{key}={value}" for key, value in type(method).random_weights_params().items()
               if getattr(method, key) == value]
    if randoms:
        echo(f"warning: training with RANDOM weights ({', '.join(randoms)}), recorded in the checkpoint; "
             "such a model says nothing about the method beyond a smoke test")
    if config.data_root is not None and not Path(config.data_root).is_dir():
        raise UserError(f"--data-root {config.data_root} does not exist or is not a directory")
    source = build_mask_source(config.masks)
    if not gives_masks(type(source)):
        raise UserError(f"--masks {config.masks}: training needs foreground masks; use "
                        f"{mask_kinds_text(accepts=gives_masks)}")
    device = resolve_device(config.device)
    source = prepare_masks(source, config.dataset, ["train"], data_root=config.data_root, options=config.options,
                           device=device, cache_dir=config.cache_dir, progress=config.progress)
    # Mask models train on whole images (the images they predict on); part methods on the augmented crops.
    view = type(method).train_view
    data = build_dataset(config.dataset, data_root=config.data_root, split="train", view=view,
                         protocol=config.protocol, masks=source, options=config.options)
    rank = int(os.environ.get("RANK", "0"))
    cache_dir = Path(config.cache_dir) if config.cache_dir is not None else None
    if config.into_run_cache:
        return _train_into_run_cache(config, method, data, cache_dir, device, rank)
    out_dir = Path(config.out_dir) if config.out_dir is not None else default_out_dir(config.method, config.dataset,
                                                                                       config.seed)
    method.context = RunContext(cache_dir=cache_dir, work_dir=out_dir, num_workers=config.num_workers,
                                progress=config.progress and rank == 0,
                                data_root=Path(config.data_root) if config.data_root is not None else None)
    extra = {} if config.keep_checkpoints is None else {"keep_checkpoints": config.keep_checkpoints}
    with output_dir(out_dir):  # a failed training leaves no empty --out folder
        result = method.train(data, out_dir=out_dir, resume=config.resume, seed=config.seed, device=device, **extra)
    return TrainOutcome(result, out_dir, len(data), rank, method)


def _train_into_run_cache(config: TrainConfig, method: Any, data: Any, cache_dir: Path | None, device: str,
                          rank: int) -> TrainOutcome:
    """:func:`train` with ``into_run_cache``: the model lands where ``benchmark run`` looks for it."""
    from benchmark.core.method import RunContext
    from benchmark.methods.training.cache import train_or_reuse

    if cache_dir is None:
        raise UserError("training into the run cache needs a cache folder (--cache-dir)")
    key = method.cache_key(data, config.seed)
    if config.expected_key is not None and key != config.expected_key:
        raise UserError(f"training {config.method} on {config.dataset}: its inputs changed since they were "
                        f"planned (key {key} != {config.expected_key}); rerun")
    method.context = RunContext(cache_dir=cache_dir, num_workers=config.num_workers,
                                progress=config.progress and rank == 0,
                                data_root=Path(config.data_root) if config.data_root is not None else None)
    out_dir = cache_dir / config.method / key  # where train_or_reuse trains or finds the model
    reused = (out_dir / "model.pt").is_file()
    train_or_reuse(method, data, name=config.method, seed=config.seed, device=device, load=lambda _: None)
    # A reused model has no TrainResult of this process: the outcome says so with None.
    return TrainOutcome(None if reused else method.train_result_, out_dir, len(data), rank, method)


def train_mask_model(config: TrainConfig, *, echo: Echo = lambda _: None) -> TrainOutcome:
    """:func:`train` for a foreground/background mask model (``fgbg``), whose ``model.pt`` then serves
    ``--masks model:CKPT`` and :func:`benchmark.tasks.predict_masks`."""
    from benchmark.factories import trainable_mask_models

    if config.method not in trainable_mask_models():
        raise UserError(f"{config.method!r} is not a mask model; mask models: "
                        f"{', '.join(trainable_mask_models()) or '(none)'}")
    return train(config, echo=echo)
