"""Training checkpoints: atomic writes, safe reads and strict loading (through :mod:`benchmark.methods.weights`).

A *training checkpoint* (``checkpoints/step_XXXXXXX.pt`` in the output directory) holds everything needed
to continue a run exactly::

    {"format": "partbench-train/1", "step": completed steps, "model_state_dict": ..., "optimizer_state_dict":
     ..., "rng": [per-rank {torch, cuda, numpy, python}], "data_order": DataOrder.state_dict(),
     "config": TrainConfig.to_dict(), "world_size": W}

Everything in it is a tensor or a plain Python container/scalar, so it loads with
``torch.load(weights_only=True)`` (NumPy's RNG state is stored as a tensor for that reason). Files are
written with :func:`benchmark.core.atomic.atomic_torch_save`: a run killed while saving leaves the previous
checkpoint intact and never a truncated file under a checkpoint's name.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from benchmark.core.errors import UserError
from benchmark.methods.weights import load_strict, read_weights

TRAIN_FORMAT = "partbench-train/1"
MODEL_FORMAT = "partbench-model/1"
_STEP_RE = re.compile(r"^step_(\d+)\.pt$")


# -- reading user files ---------------------------------------------------------------------------------
def load_checkpoint_file(path: str | Path, *, what: str = "checkpoint", fix: str = "") -> Any:
    """The object in ``path`` read safely (``weights_only=True``), with one clear :class:`UserError` for a
    missing, refused or corrupted file (see :mod:`benchmark.methods.weights`)."""
    return read_weights(path, what=what, fix=fix)


def load_state_dict_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into ``module`` requiring the same keys and shapes; otherwise ONE error listing the
    missing, unexpected and shape-mismatched keys (``source`` names the file)."""
    load_strict(module, state, source=f"checkpoint {source}", target="the model",
                fix="check --num-parts and that the file was saved from this method")


# -- RNG states -------------------------------------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """The global RNG states of torch (CPU and every CUDA device), NumPy and Python, as tensors/scalars."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": torch.tensor(py_state[1], dtype=torch.int64),
                   "gauss": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- files of a run --------------------------------------------------------------------------------------
def checkpoint_path(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / "checkpoints" / f"step_{step:07d}.pt"


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the training checkpoints of a run, oldest first."""
    folder = Path(out_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _STEP_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    """Read and validate a training checkpoint; corrupted/foreign files give a UserError naming the file
    and the previous checkpoint to fall back to."""
    previous = [p for _, p in list_checkpoints(path.parent.parent) if p != path and p.stat().st_mtime <= path.stat().st_mtime]
    fix = (f"delete it to resume from the previous checkpoint {previous[-1]}" if previous
           else "delete it (and the run directory) to start over")
    state = load_checkpoint_file(path, what="training checkpoint", fix=fix)
    if not isinstance(state, dict) or state.get("format") != TRAIN_FORMAT:
        raise UserError(f"training checkpoint {path} is not a partbench training checkpoint "
                        f"(format {state.get('format') if isinstance(state, dict) else type(state).__name__!r}); {fix}")
    for key in ("step", "model_state_dict", "optimizer_state_dict", "rng", "data_order", "config"):
        if key not in state:
            raise UserError(f"training checkpoint {path} lacks {key!r} (incomplete file); {fix}")
    return state
