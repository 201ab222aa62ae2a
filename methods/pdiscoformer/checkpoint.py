"""Reading PDiscoFormer checkpoints from a file (never from the network).

Accepted files, all in the release's key layout (:mod:`.network`):

* the GitHub release / torch.hub files ``<K>_parts_snapshot_best.pt``: a training snapshot
  ``{"model_state", "optimizer_state", "scaler_state", "finished_epoch", ...}`` or a bare state dict;
* the Hugging Face releases' ``model.safetensors`` (``ananthu-aniraj/pdiscoformer_cub_k_8`` ...);
* a ``model.pt`` written by partbench's trainer (``{"model_state_dict", "config"}``: the state dict in the
  same layout, and the training settings, whose ``backbone`` names the ViT the file was trained on).

``torch.load(weights_only=True)`` reads ``.pt``/``.pth`` files (:func:`benchmark.methods.weights.read_weights`);
``module.`` prefixes of a DDP wrapper are stripped. The shapes in the file say which network it is: ``K`` (rows
of ``fc_landmarks`` minus the background), the number of classes, the input size (the position embeddings' grid
times the patch size) and the modulation; every key is then checked against that network, strictly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from benchmark.core.errors import UserError
from benchmark.methods.weights import load_strict, read_state_dict, read_weights, strip_prefix

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


def read_checkpoint_with_record(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """The state dict in ``path`` (see the module docstring) and, for a ``model.pt`` written by partbench, the
    recorded training settings (``{}`` otherwise); one :class:`UserError` for anything else."""
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
        return state, {}
    obj = read_weights(path, what=what, fix=FIX)
    record: dict = {}
    if isinstance(obj, Mapping):
        config = obj.get("config")
        if isinstance(config, Mapping) and isinstance(config.get("extra"), Mapping):
            record = dict(config["extra"].get("pdiscoformer") or {})
        for key in ("model_state", "model_state_dict"):  # the release's snapshot; partbench's model.pt
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise UserError(f"{what} {path} does not hold a state dict (names -> tensors); {FIX}")
    return strip_prefix(obj), record


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The state dict in ``path`` (see :func:`read_checkpoint_with_record`)."""
    return read_checkpoint_with_record(path)[0]


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


# -- the backbone's starting weights (training) ---------------------------------------------------------------
HEAD_PREFIXES = ("fc_landmarks", "modulation", "fc_class_landmarks")
BACKBONE_OPTION = "-p backbone_weights=PATH (a timm state dict or model.safetensors) or -p backbone_weights=random"


def backbone_weights_needed(backbone: str, weights: str):
    """The file ``-p backbone_weights`` makes training read (:mod:`benchmark.methods.pretrained`)."""
    from benchmark.methods import pretrained

    if weights == "random":
        return []
    if weights == "pretrained":
        return [pretrained.timm_weights(backbone, BACKBONE_OPTION)]
    return [pretrained.user_file(weights, f"{backbone} weights file (-p backbone_weights)",
                                 f"pass timm's model.safetensors of {backbone}, or -p backbone_weights=pretrained|random")]


def load_backbone_weights(network: torch.nn.Module, weights: str, backbone: str) -> str:
    """Load the backbone's starting weights (``"pretrained"``: timm's cached file; a file; ``"random"``:
    timm's own seeded initialisation) into ``network``; the part head keeps its initialisation. Position
    embeddings of another grid are resampled as timm does when it loads them. Returns the weights' identity."""
    from benchmark.core.cache import file_digest
    from benchmark.methods.weights import check_state_dict

    needed = backbone_weights_needed(backbone, weights)
    if not needed:
        return "random"
    path = needed[0].found()
    if path is None:
        raise UserError(f"pdiscoformer: {needed[0].what} not found; {needed[0].fix}")
    state = read_checkpoint(path) if path.suffix == ".safetensors" else read_state_dict(
        path, what="backbone weights file", fix=f"pass timm's model.safetensors of {backbone}")
    state = {k: v for k, v in state.items() if not k.startswith(("head.", "fc_norm.")) and k != "mask_token"}
    own = {k: v for k, v in network.state_dict().items() if not k.startswith(HEAD_PREFIXES)}
    if "pos_embed" in state and "pos_embed" in own and state["pos_embed"].shape != own["pos_embed"].shape:
        from timm.layers import resample_abs_pos_embed

        prefix = 0 if network.no_embed_class else network.num_prefix_tokens
        state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], new_size=list(network.grid),
                                                    num_prefix_tokens=prefix)
    check_state_dict(own, state, source=f"backbone weights file {path}", target=f"timm's {backbone}",
                     fix=f"pass the timm weights of {backbone} ({BACKBONE_OPTION}) or another -p backbone")
    network.load_state_dict(state, strict=False)
    return f"file:{file_digest(path)}"
