"""Reading PDiscoFormer checkpoints from a file (never from the network).

Accepted files, all in the release's key layout (:mod:`.network`):

* the GitHub release / torch.hub files ``<K>_parts_snapshot_best.pt``: a training snapshot
  ``{"model_state", "optimizer_state", "scaler_state", "finished_epoch", ...}`` or a bare state dict;
* the Hugging Face releases' ``model.safetensors`` (``ananthu-aniraj/pdiscoformer_cub_k_8`` ...);
* a ``model.pt`` written by partbench (a bare state dict in the same layout).

``torch.load(weights_only=True)`` reads ``.pt``/``.pth`` files (:func:`benchmark.methods.weights.read_weights`);
``module.`` prefixes of a DDP wrapper are stripped. The shapes in the file say which network it is: ``K`` (rows
of ``fc_landmarks`` minus the background), the number of classes, the input size (the position embeddings' grid
times the patch size) and the modulation; every key is then checked against that network, strictly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from benchmark.core.errors import UserError
from benchmark.methods.weights import load_strict, read_state_dict

FIX = ("pass a PDiscoFormer release file (<K>_parts_snapshot_best.pt of the GitHub release, or model.safetensors of "
       "the Hugging Face release) or a model.pt written by partbench")
HEAD_KEYS = ("fc_landmarks.weight", "fc_class_landmarks.weight", "pos_embed")


@dataclass(frozen=True)
class CheckpointShape:
    """What the tensors of a checkpoint say about its network."""

    num_parts: int
    num_classes: int
    grid: tuple[int, int]
    modulation: str


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The state dict in ``path`` (see the module docstring); one :class:`UserError` for anything else."""
    path = Path(path).expanduser()
    what = "pdiscoformer checkpoint"
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise UserError(f"{what} {path} does not exist; {FIX}")
        try:
            from safetensors.torch import load_file

            state = dict(load_file(str(path), device="cpu"))
        except Exception as exc:  # safetensors raises its own error types for damaged headers
            raise UserError(f"{what} {path} is not a readable safetensors file ({type(exc).__name__}: "
                            f"{str(exc)[:160]}); {FIX}") from None
        if not state:
            raise UserError(f"{what} {path} holds no tensors; {FIX}")
        return state
    return read_state_dict(path, what=what, fix=FIX, unwrap=("model_state",))


def checkpoint_shape(state: dict[str, Tensor], *, source: str, patch: int) -> CheckpointShape:
    """K, classes, patch grid and modulation read off the tensors (one :class:`UserError` when a head key is
    missing or has the wrong rank)."""
    missing = [key for key in HEAD_KEYS if key not in state]
    if missing:
        raise UserError(f"{source} is not a PDiscoFormer checkpoint: it lacks {', '.join(missing)}; {FIX}")
    landmarks, classifier, pos = state["fc_landmarks.weight"], state["fc_class_landmarks.weight"], state["pos_embed"]
    if landmarks.ndim != 4 or classifier.ndim != 2 or pos.ndim != 3 or landmarks.shape[0] < 2:
        raise UserError(f"{source} is not a PDiscoFormer checkpoint: fc_landmarks.weight {tuple(landmarks.shape)}, "
                        f"fc_class_landmarks.weight {tuple(classifier.shape)}, pos_embed {tuple(pos.shape)}; {FIX}")
    tokens = int(pos.shape[1])
    side = math.isqrt(tokens)
    if side * side != tokens:  # a class-token slot in the position embeddings (a ViT without no_embed_class)
        side = math.isqrt(tokens - 1)
    if "modulation.weight" in state:
        modulation = "layer_norm"
    elif "modulation" in state:
        modulation = "original"
    else:
        raise UserError(f"{source} is not a PDiscoFormer checkpoint: it has no modulation parameters; {FIX}")
    return CheckpointShape(int(landmarks.shape[0]) - 1, int(classifier.shape[0]), (side, side), modulation)


def load_checkpoint(network: torch.nn.Module, state: dict[str, Tensor], *, source: str, target: str) -> None:
    """Load ``state`` into ``network`` with every key and shape checked (one :class:`UserError` listing all
    differences)."""
    load_strict(network, state, source=source, target=target, fix=FIX)
