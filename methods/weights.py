"""Reading weights files and checking them against a network: one loader and one state-dict check.

Every network of partbench reads its weights here: the VGG and ViT feature backbones (torchvision, DINO and
DINOv2 state dicts, timm's ``.safetensors``), the segmenters (official ``ours``/SCOPS checkpoints, partbench
``model.pt``, the DeepLab caffe initialisation) and the trainer's own checkpoints, so they share the same
three guarantees (where each published file is found, and how to get it, is :mod:`.pretrained`'s part):

* **Safe load.** :func:`read_weights` calls ``torch.load(path, map_location="cpu", weights_only=True)``
  (or ``safetensors``' loader for a ``.safetensors`` file): a file that needs arbitrary pickled objects (a
  whole ``nn.Module``, an ``argparse.Namespace`` ...) is refused, because unpickling it could run code.
* **Strict check.** :func:`check_state_dict` / :func:`load_strict` compare a state dict with what the
  network expects, key by key and shape by shape, and list every missing, unexpected and shape-mismatched
  key in one error (optional keys, e.g. a VGG classifier head that is never used, are named by the caller).
* **One message format.** Every problem is one :class:`~benchmark.core.errors.UserError` line::

      <what> <path> <problem>; <fix>

  e.g. ``checkpoint /x/model.pth is corrupted or truncated (PytorchStreamReader failed ...); re-save it``
  or ``checkpoint /x/model.pth does not match the DeepLab ResNet-50 2-branch segmenter: 1 missing key(s):
  layer5.conv2d_list.0.bias; 1 unexpected key(s): extra.weight; pass ...``.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from benchmark.core.errors import UserError

__all__ = ["read_weights", "read_state_dict", "check_state_dict", "load_strict", "torch_load_cause",
           "strip_prefix"]

_LIST_LIMIT = 12


def torch_load_cause(exc: BaseException) -> str:
    """The cause inside torch.load's multi-line refusal (e.g. ``Unsupported operand 103``), without its
    boilerplate (which suggests ``weights_only=False``: never for a user's file)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    causes = [line for line in lines if not any(word in line for word in
                                                  ("weights_only", "Please file an issue", "documentation"))]
    return (causes or lines or [type(exc).__name__])[0][:300]


def _fix(fix: str) -> str:
    return f"; {fix}" if fix else ""


def read_weights(path: str | Path, *, what: str = "weights file", fix: str = "") -> Any:
    """The object saved in ``path``, read with ``weights_only=True`` on the CPU.

    A missing file, a file whose unpickling needs code objects, and a corrupted or truncated file each
    raise one :class:`UserError` in the module's format (``what`` names the role of the file, ``fix`` says
    what to do)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist{_fix(fix)}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path, what=what, fix=fix)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"{what} {path} is not a plain tensor checkpoint: torch.load(weights_only=True) refused "
                        f"it ({torch_load_cause(exc)}); only tensors, numbers and containers are read because "
                        f"pickled objects can run code, so save state dicts (model.state_dict()){_fix(fix)}"
                        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise UserError(f"{what} {path} is corrupted or truncated ({torch_load_cause(exc)}){_fix(fix)}") from None


def _read_safetensors(path: Path, *, what: str, fix: str) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu"))
    except Exception as exc:  # safetensors raises its own and several builtin types for a damaged header
        raise UserError(f"{what} {path} is not a readable safetensors file ({type(exc).__name__}: "
                        f"{str(exc)[:200]}){_fix(fix)}") from None


def strip_prefix(state: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """``state`` with every leading ``prefix`` removed from its keys (DataParallel/DDP wrappers)."""
    out = {}
    for key, value in state.items():
        while isinstance(key, str) and key.startswith(prefix):
            key = key[len(prefix):]
        out[key] = value
    return out


def read_state_dict(path: str | Path, *, what: str = "weights file", fix: str = "",
                    unwrap: tuple[str, ...] = ("model_state_dict",)) -> dict[str, torch.Tensor]:
    """A state dict (names -> tensors) from ``path``, ``module.`` prefixes stripped.

    A dict holding one of the ``unwrap`` keys (the unsup-parts and partbench layout
    ``{"iter", "model_state_dict", ...}``) is unwrapped first. Anything else than a non-empty mapping of
    names to tensors is one :class:`UserError`."""
    obj = read_weights(path, what=what, fix=fix)
    if isinstance(obj, Mapping):
        for key in unwrap:
            if key in obj:
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        kind = "an empty mapping" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
        raise UserError(f"{what} {path} does not hold a state dict (it holds {kind}){_fix(fix)}")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"{what} {path} does not hold a state dict ({len(bad)} entries are not named tensors: "
                        f"{_listing(bad)}){_fix(fix)}")
    return strip_prefix(obj)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f", ... ({len(keys) - _LIST_LIMIT} more)" if len(keys) > _LIST_LIMIT else "")


def check_state_dict(expected: Mapping[str, torch.Tensor], state: Mapping[str, Any], *, source: str,
                     target: str, fix: str = "", optional: Callable[[str], bool] = lambda key: False) -> None:
    """Raise one :class:`UserError` unless ``state`` has exactly the keys of ``expected`` with the same
    shapes. Keys for which ``optional(key)`` is true may be absent (never unexpected). ``source`` names the
    file (``"checkpoint /x/model.pth"``), ``target`` the network (``"the DeepLab ResNet-50 segmenter"``)."""
    missing = sorted(k for k in expected if k not in state and not optional(k))
    unexpected = sorted(str(k) for k in state if k not in expected)
    mismatched = sorted(
        f"{k} (file {tuple(state[k].shape) if isinstance(state[k], torch.Tensor) else type(state[k]).__name__} "
        f"vs model {tuple(expected[k].shape)})"
        for k in expected if k in state
        and (not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != tuple(expected[k].shape)))
    if not (missing or unexpected or mismatched):
        return
    parts = [f"{len(keys)} {label} key(s): {_listing(keys)}"
             for label, keys in (("missing", missing), ("unexpected", unexpected),
                                 ("shape-mismatched", mismatched)) if keys]
    raise UserError(f"{source} does not match {target}: " + "; ".join(parts) + _fix(fix))


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str, target: str,
                fix: str = "", optional: Callable[[str], bool] = lambda key: False) -> None:
    """:func:`check_state_dict` against ``module.state_dict()``, then ``load_state_dict(strict=True)``;
    optional keys absent from ``state`` keep the module's own values."""
    own = module.state_dict()
    check_state_dict(own, state, source=source, target=target, fix=fix, optional=optional)
    full = dict(state)
    for key in own:
        if key not in full:
            full[key] = own[key]
    module.load_state_dict(full, strict=True)
