"""The step loop: :class:`Trainer`.

A method supplies a model, its parameter groups and a loss function
``loss_fn(model, batch, info) -> (total, {term: tensor})`` computed on the device without host syncs
(``info`` is a :class:`~.config.StepInfo` with per-step generators). The trainer does the rest:

* the global RNGs (Python, NumPy, torch) seeded from (seed, rank) at the start of a fresh run, so dropout
  and dataset-side augmentation follow the run's seed;
* SGD (momentum, weight decay per group) with the poly schedule (or a step decay, ``lr_step_every``)
  recomputed before every step (and an optional linear warm-up, ``warmup_steps``);
* optional bf16 autocast and ``torch.compile`` of the model;
* an optional exponential moving average of the weights (``ema_decay``, :mod:`.ema`), checkpointed with
  the run and written as the final ``model.pt`` (the trained model then holds the averaged weights);
* global-norm gradient clipping (``clip_grad_norm_(model.parameters(), c)`` as the references do), per
  clip group when groups name one (SCOPS clips its network and its part basis separately);
* groups at a constant learning rate outside the schedule (``ParamGroup.lr``), and a custom optimiser
  through ``optimizer_factory`` (SCOPS's legacy duplicated-parameter SGD);
* DDP when launched by ``torchrun`` (each rank takes ``batch_size / W`` images of every global batch,
  gradients are averaged; only rank 0 writes);
* atomic checkpoints every ``checkpoint_every`` steps and at the end, and exact resumption from the latest
  one (model, optimiser, step, RNG states of every rank, data order; the DataLoader is rebuilt at
  checkpoint boundaries with a seed derived from the step, so worker-side augmentation repeats too);
* a CSV row per step with every loss term, a progress bar with the loss and steps/s.

Output directory layout::

    OUT/train_info.json          configuration, world size, global and per-rank batch
    OUT/train_log.csv            step, lr, total, every loss term
    OUT/checkpoints/step_XXXXXXX.pt   training checkpoints (see .checkpoint)
    OUT/model.pt                 final weights {"format", "model_state_dict", "iter", "step", "config"}
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from benchmark.core.atomic import atomic_torch_save, atomic_write_text, check_writable_dir
from benchmark.core.errors import UserError
from benchmark.core.method import TrainResult
from benchmark.core.seeding import derive_seed
from benchmark.core.types import Batch
from benchmark.methods.training import checkpoint as ckpt
from benchmark.methods.training.config import ParamGroup, StepInfo, TrainConfig
from benchmark.methods.training.data import DataOrder, segment_loader, shard
from benchmark.methods.training.distributed import DistEnv, all_gather_objects, barrier, init_distributed
from benchmark.methods.training.ema import WeightAverage
from benchmark.methods.training.logger import StepLogger
from benchmark.methods.training.schedule import set_lrs

LossFn = Callable[[nn.Module, Batch, StepInfo], "tuple[Tensor, dict[str, Tensor]]"]
OptimizerFactory = Callable[[list[ParamGroup], TrainConfig], torch.optim.Optimizer]


def optimizer_groups(groups: list[ParamGroup], config: TrainConfig) -> list[dict[str, Any]]:
    """The ``torch.optim`` parameter groups of the named groups (with the keys the schedule and clipping
    read); a parameter listed twice is an error (SCOPS's duplicated-parameter bug must not come back
    silently)."""
    seen: dict[int, str] = {}
    param_groups = []
    for group in groups:
        params = [p for p in group.params if p.requires_grad]
        for p in params:
            if id(p) in seen:
                raise ValueError(f"parameter listed in groups {seen[id(p)]!r} and {group.name!r}")
            seen[id(p)] = group.name
        if not params:
            continue
        param_groups.append({"params": params, "name": group.name, "lr_mult": float(group.lr_mult),
                             "lr": config.lr * group.lr_mult if group.lr is None else float(group.lr),
                             "constant_lr": None if group.lr is None else float(group.lr),
                             "clip_group": group.clip_group,
                             "weight_decay": config.weight_decay if group.weight_decay is None else group.weight_decay})
    if not param_groups:
        raise ValueError("no trainable parameters")
    return param_groups


def build_optimizer(groups: list[ParamGroup], config: TrainConfig) -> torch.optim.SGD:
    """SGD over the named groups (:func:`optimizer_groups`)."""
    return torch.optim.SGD(optimizer_groups(groups, config), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def _seed_global_rngs(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (configuration comparison on resume)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def step_generator(device: torch.device, seed: int, *keys: object) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, "step", *keys))
    return generator


_step_generator = step_generator  # the name used inside this module


class Trainer:
    """Train ``model`` with ``loss_fn`` (see the module docstring).

    ``param_groups`` maps the (unwrapped) model to its :class:`ParamGroup` list. ``out_dir`` = ``None``
    trains without writing anything (no checkpoints, no resume)."""

    def __init__(self, model: nn.Module, param_groups: Callable[[nn.Module], list[ParamGroup]], loss_fn: LossFn,
                 config: TrainConfig, *, out_dir: str | Path | None, device: str | torch.device = "cpu",
                 seed: int = 0, progress: bool = False, description: str = "train",
                 find_unused_parameters: bool = False, optimizer_factory: OptimizerFactory | None = None):
        self.model = model
        self.param_groups = param_groups
        self.loss_fn = loss_fn
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device = torch.device(device)
        self.seed = int(seed)
        self.progress = progress
        self.description = description
        self.find_unused_parameters = find_unused_parameters
        # Builds the optimiser from the groups (default :func:`build_optimizer`); its param_groups must
        # carry the keys build_optimizer sets ("lr_mult", "constant_lr", "clip_group").
        self.optimizer_factory = optimizer_factory or build_optimizer
        self.average: WeightAverage | None = None  # the weight average of a run with ema_decay

    # -- resume --------------------------------------------------------------------------------------
    def _check_config(self, stored: dict[str, Any], source: Path) -> None:
        current = _flatten(json.loads(json.dumps(self.config.to_dict(), default=str)))
        stored = _flatten(json.loads(json.dumps(stored, default=str)))
        # A knob added after the checkpoint was written is absent from it; at its default it changes nothing.
        defaults = TrainConfig(steps=1, batch_size=1, lr=0.0).to_dict()
        added = {k: v for k, v in current.items() if k in defaults and k not in stored and v == defaults[k]}
        stored = {**added, **stored}
        differing = sorted(k for k in set(current) | set(stored)
                           if k.rsplit(".", 1)[-1] not in TrainConfig.RESUMABLE_CHANGES
                           and current.get(k) != stored.get(k))
        if differing:
            detail = ", ".join(f"{k}: checkpoint {stored.get(k)!r} vs now {current.get(k)!r}" for k in differing)
            raise UserError(f"cannot resume from {source}: the training configuration differs ({detail}); "
                            "resume with the same options or use another --out directory")

    # -- the loop --------------------------------------------------------------------------------------
    def fit(self, dataset, *, resume: bool = False) -> TrainResult:
        """Train on ``dataset`` (continuing the run in ``out_dir`` with ``resume``); see the module docstring.

        The steps, each its own method: set up the processes and the output folder; build the optimiser and
        the data order; start fresh or restore the latest checkpoint; record the run; wrap the model for
        DDP/compile; run the steps; write the final weights."""
        cfg = self.config
        env, device = self._set_up()
        model = self.model.to(device)
        optimizer = self.optimizer_factory(self.param_groups(model), cfg)
        self.average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay is not None else None
        order = DataOrder(len(dataset), cfg.batch_size, self.seed)
        log_path = self.out_dir / "train_log.csv" if (self.out_dir is not None and env.is_main) else None
        logger = StepLogger(log_path, tensorboard_dir=self.out_dir / "tensorboard" if self.out_dir else None)
        if resume:
            start = self._restore(model, optimizer, order, logger, env)
        else:
            self._start_fresh(logger, env)
            start = 0
        self._record_run(start, env, device)
        try:
            last = self._run_steps(dataset, model, optimizer, order, logger, env, device, start)
        finally:
            logger.close()
        model_path = self._write_final(model, env)
        return TrainResult(out_dir=self.out_dir or Path(), model_path=model_path, steps=cfg.steps,
                           resumed_from=start, last_losses=last)

    # -- the steps of fit -------------------------------------------------------------------------------
    def _set_up(self) -> tuple[DistEnv, torch.device]:
        """Join the DDP group (when launched by torchrun), check the batch split and the output folder."""
        cfg = self.config
        env, device = init_distributed(self.device)
        if cfg.batch_size % env.world_size:
            raise UserError(f"the global batch size {cfg.batch_size} is not divisible by the {env.world_size} "
                            "processes; choose a multiple of the number of processes")
        if self.out_dir is not None and env.is_main:
            check_writable_dir(self.out_dir, "training output directory")
        barrier(env)
        return env, device

    def _start_fresh(self, logger: StepLogger, env: DistEnv) -> None:
        """Refuse to overwrite a run, and seed the global RNGs from the run's seed."""
        if self.out_dir is not None:
            existing = ckpt.latest_checkpoint(self.out_dir)
            if existing is not None:
                raise UserError(f"{self.out_dir} already holds a training run (latest checkpoint {existing}); "
                                "pass --resume to continue it, or choose another --out directory")
            logger.truncate(0)  # a run killed before its first checkpoint simply starts again
        # Global RNGs (dropout, augmentation in the dataset's __getitem__) follow the run's seed, one stream
        # per rank; a resumed run restores them from the checkpoint instead.
        _seed_global_rngs(derive_seed(self.seed, "global-rngs", env.rank))

    def _restore(self, model: nn.Module, optimizer, order: DataOrder, logger: StepLogger, env: DistEnv) -> int:
        """Load the latest checkpoint of ``out_dir`` (model, optimiser, data order, RNGs); returns its step."""
        if self.out_dir is None:
            raise UserError("--resume needs an --out directory holding the run's checkpoints")
        path = ckpt.latest_checkpoint(self.out_dir)
        if path is None:
            raise UserError(f"--resume: no checkpoint in {self.out_dir / 'checkpoints'}; "
                            "drop --resume to start a new run there")
        state = ckpt.load_training_checkpoint(path)
        self._check_config(state["config"], path)
        if int(state.get("seed", self.seed)) != self.seed:
            raise UserError(f"cannot resume from {path}: it was trained with seed {state.get('seed')}, "
                            f"this run has seed {self.seed}; resume with --seed {state.get('seed')}")
        ckpt.load_state_dict_strict(model, state["model_state_dict"], source=str(path))
        if self.average is not None:
            if "ema" not in state:
                raise UserError(f"cannot resume from {path}: it holds no weight average but this run has one")
            self.average.load_state_dict(state["ema"])
        try:
            optimizer.load_state_dict(state["optimizer_state_dict"])
        except (ValueError, KeyError) as exc:
            raise UserError(f"cannot resume from {path}: its optimiser state does not match ({exc})") from None
        order.load_state_dict(state["data_order"])
        if int(state.get("world_size", 1)) != env.world_size:
            raise UserError(f"cannot resume from {path}: it was written by {state.get('world_size')} "
                            f"process(es), this run has {env.world_size}; resume with the same number")
        ckpt.restore_rng(state["rng"][env.rank])
        start = int(state["step"])
        logger.truncate(start)
        return start

    def _record_run(self, start: int, env: DistEnv, device: torch.device) -> None:
        """``train_info.json`` and the one-line summary of the run (rank 0)."""
        cfg = self.config
        if self.out_dir is not None and env.is_main:
            info = {"config": cfg.to_dict(), "seed": self.seed, "world_size": env.world_size,
                    "global_batch": cfg.batch_size, "per_rank_batch": cfg.batch_size // env.world_size,
                    "device": str(device), "resumed_from": start, "torch": torch.__version__}
            atomic_write_text(self.out_dir / "train_info.json", json.dumps(info, indent=1, default=str))
        if env.is_main and (self.progress or env.enabled):
            print(f"[{self.description}] global batch {cfg.batch_size} = {env.world_size} process(es) x "
                  f"{cfg.batch_size // env.world_size} images; steps {start}->{cfg.steps}; device {device}",
                  file=sys.stderr)

    def _step_model(self, model: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
        """The module the loss calls: wrapped in DDP under torchrun, compiled with ``compile``."""
        step_model: nn.Module = model
        if env.enabled:
            step_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=self.find_unused_parameters)
        if self.config.compile:
            step_model = torch.compile(step_model)
        return step_model

    @staticmethod
    def _clip_groups(optimizer) -> dict[str, list[Tensor]]:
        """The unique parameters of each clip group (each clipped to the norm on its own)."""
        clip_groups: dict[str, list[Tensor]] = {}
        seen: set[int] = set()
        for group in optimizer.param_groups:
            members = clip_groups.setdefault(group.get("clip_group", "model"), [])
            for p in group["params"]:
                if id(p) not in seen:
                    seen.add(id(p))
                    members.append(p)
        return clip_groups

    def _run_steps(self, dataset, model: nn.Module, optimizer, order: DataOrder, logger: StepLogger,
                   env: DistEnv, device: torch.device, start: int) -> dict[str, float] | None:
        """Steps ``start..steps-1``: load, schedule, forward/backward, clip, update, log, checkpoint.
        Returns the last logged loss values."""
        cfg = self.config
        step_model = self._step_model(model, env, device)
        clip_groups = self._clip_groups(optimizer)
        autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if cfg.amp == "bf16"
                    else contextlib.nullcontext())
        bar = None
        if self.progress and env.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=start, desc=self.description, unit="step", dynamic_ncols=True)

        model.train()
        iterator = None
        segment_end = start
        last = None
        block_start_time, block_start_step = time.perf_counter(), start
        try:
            for step in range(start, cfg.steps):
                if step >= segment_end:
                    # The DataLoader is rebuilt at checkpoint boundaries, seeded from the step: a resumed
                    # run's workers draw exactly what an uninterrupted run's draw.
                    segment_end = min((step // cfg.checkpoint_every + 1) * cfg.checkpoint_every, cfg.steps)
                    batches = shard(order.take(segment_end - step), env.rank, env.world_size)
                    iterator = iter(segment_loader(dataset, batches, seed=self.seed, segment_start=step,
                                                   rank=env.rank, num_workers=cfg.num_workers,
                                                   image_size=cfg.image_size, pin_memory=device.type == "cuda"))
                batch = next(iterator).to(device, non_blocking=True)
                lr = set_lrs(optimizer, cfg.lr, step, cfg.schedule_horizon, cfg.poly_power, cfg.warmup_steps,
                             cfg.lr_step_every, cfg.lr_step_gamma)
                info = StepInfo(step=step, generator=_step_generator(device, self.seed, step, env.rank),
                                shared_generator=_step_generator(device, self.seed, step, "shared"),
                                rank=env.rank, world_size=env.world_size)
                with autocast:
                    total, terms = self.loss_fn(step_model, batch, info)
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                if cfg.clip_grad_norm is not None:
                    for clip_params in clip_groups.values():
                        torch.nn.utils.clip_grad_norm_(clip_params, cfg.clip_grad_norm, foreach=True)
                optimizer.step()
                if self.average is not None:
                    self.average.update(model)
                if env.is_main:
                    logger.record(step, lr, {"total": total, **terms})
                done = step + 1
                at_checkpoint = done % cfg.checkpoint_every == 0 or done == cfg.steps
                if done % cfg.log_flush_every == 0 or at_checkpoint:
                    values = logger.flush() if env.is_main else None  # the only host sync, every few steps
                    last = values or last
                    if bar is not None:
                        now = time.perf_counter()
                        rate = (done - block_start_step) / max(now - block_start_time, 1e-9)
                        block_start_time, block_start_step = now, done
                        bar.update(done - bar.n)
                        if values:
                            bar.set_postfix(loss=f"{values['total']:.4g}", steps_per_s=f"{rate:.2f}")
                if at_checkpoint and self.out_dir is not None:
                    self._save(model, optimizer, order, done, env)
        finally:
            if bar is not None:
                bar.close()
        return last

    def _write_final(self, model: nn.Module, env: DistEnv) -> Path:
        """``OUT/model.pt`` (rank 0), after which every rank continues together."""
        cfg = self.config
        model_path = self.out_dir / "model.pt" if self.out_dir is not None else Path()
        if self.average is not None:  # the averaged weights are the trained model
            model.load_state_dict(self.average.module.state_dict())
        if self.out_dir is not None and env.is_main:
            # "iter" + "model_state_dict": the unsup-parts checkpoint layout, so its own loaders read it too.
            atomic_torch_save({"format": ckpt.MODEL_FORMAT, "model_state_dict": model.state_dict(),
                               "iter": cfg.steps, "step": cfg.steps, "config": cfg.to_dict()}, model_path)
        barrier(env)
        return model_path

    def _save(self, model: nn.Module, optimizer, order: DataOrder, step: int, env: DistEnv) -> None:
        rng = all_gather_objects(ckpt.capture_rng(), env)  # collective: every rank takes part
        if env.is_main:
            state = {"format": ckpt.TRAIN_FORMAT, "step": step, "iter": step, "model_state_dict": model.state_dict(),
                     "optimizer_state_dict": optimizer.state_dict(), "rng": rng,
                     "data_order": order.state_dict(), "config": self.config.to_dict(),
                     "world_size": env.world_size, "seed": self.seed}
            if self.average is not None:
                state["ema"] = self.average.state_dict()
            atomic_torch_save(state, ckpt.checkpoint_path(self.out_dir, step))
            if self.config.keep_checkpoints > 0:
                for _, old in ckpt.list_checkpoints(self.out_dir)[:-self.config.keep_checkpoints]:
                    old.unlink(missing_ok=True)
        barrier(env)
