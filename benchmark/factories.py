"""The one factory per kind of thing a job builds, with the one validation each gets.

* :func:`build_method`: a registered part method (or, ``for_training``, any class with the training
  capability, the fg/bg mask models included) from its parameters: unknown names, values of the wrong type
  and impossible counts are one line each.
* :func:`build_dataset`: a registered dataset for one split and view; :func:`check_dataset_options` is its
  ``-o`` validation on its own (``data check`` and plan validation use it before any file is read).
* :func:`build_mask_source`: a ``--masks`` value (the parser of :class:`~benchmark.core.protocol.MaskSource`).
* :func:`resolve_device`: ``--device`` (``auto``, ``cpu``, ``cuda[:N]``, ``mps``) to the device used.

Backbones of the training-free methods have their own single factory next to their recipes
(:func:`benchmark.methods.feature_backbones.build`); methods build them, jobs never do.

Every command, task (:mod:`benchmark.tasks`) and ``reproduce`` step builds through these functions, and
:func:`benchmark.datasets.load` is this module's :func:`build_dataset` for library callers.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from benchmark.core.errors import UnavailableError, UserError
from benchmark.core.protocol import DEFAULT_PROTOCOL
from benchmark.options import check_positive, check_ranges, check_value_types

#: method parameters that ``benchmark train`` sets through options of its own: an error names the option
TRAIN_OPTIONS = {"num_parts": "--num-parts", "preset": "--preset", "steps": "--steps",
                 "batch_size": "--train-batch-size", "image_size": "--image-size", "init": "--init", "amp": "--amp",
                 "compile": "--compile", "ablate": "--ablate"}
#: counts that training parameters may give as ``-p`` values, checked before the trainer starts
TRAIN_COUNTS = ("steps", "batch_size", "image_size", "checkpoint_every", "num_parts")


# --------------------------------------------------------------------------------------------------
# device
# --------------------------------------------------------------------------------------------------
def resolve_device(device: str | None) -> str:
    """``auto`` (or nothing) = ``cuda`` when available, else ``cpu``; an unknown name or an unavailable CUDA is
    one line naming the fix."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} asked for, but CUDA is not available here; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda") and device != "mps":
        raise UserError(f"unknown --device {device!r}; use auto, cpu or cuda[:N]")
    return device


# --------------------------------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------------------------------
def trainable_methods() -> dict[str, type]:
    """The registered part methods with the training capability, by name (usable here or not)."""
    from benchmark.core.registry import METHODS

    return {name: cls for name, cls in METHODS.items() if cls.trainable()}


def trainable_mask_models() -> dict[str, type]:
    """The registered fg/bg mask models (``fgbg``) with the training capability: trained like a method, but
    kept out of the part-method registry."""
    from benchmark.core.registry import MASK_MODELS

    return {name: cls for name, cls in MASK_MODELS.items() if cls.trainable()}


def method_class(name: str, *, for_training: bool = False) -> type:
    """The registered class ``name``; ``for_training``: a mask model or a method that can be trained.
    A class that cannot run here is an :class:`UnavailableError` with its reason."""
    from benchmark.core.registry import MASK_MODELS, METHODS

    if for_training:
        cls = MASK_MODELS.get(name) if name in MASK_MODELS else METHODS.get(name)
        if not cls.trainable():
            trainable = [*trainable_methods(), *trainable_mask_models()]
            raise UserError(f"method {name!r} cannot be trained with `benchmark train`; trainable methods: "
                            f"{', '.join(trainable) or '(none)'}")
    else:
        cls = METHODS.get(name)
    reason = cls.unavailable_reason()
    if reason:
        raise UnavailableError(f"method {name!r} is unavailable here: {reason}")
    return cls


def build_method(name: str, *, num_parts: int | None = 4, params: dict[str, Any] | None = None,
                 for_training: bool = False):
    """Instantiate method ``name`` with ``params``; unknown parameters are an error listing the valid ones.

    For evaluation (the default) ``num_parts`` is given once, here, and set on every method that has the
    parameter. ``for_training`` builds what ``benchmark train`` trains (mask models included) from the
    parameters as given: a parameter a training option sets is named by that option, and counts are
    checked before any step runs."""
    cls = method_class(name, for_training=for_training)
    params = dict(params or {})
    valid = cls.param_names()
    unknown = sorted(set(params) - set(valid))
    signature = inspect.signature(cls.__init__).parameters.values()
    if for_training:
        options = [TRAIN_OPTIONS[k] for k in unknown if k in TRAIN_OPTIONS]
        if options:
            raise UserError(f"method {name!r} does not take {', '.join(options)} (it has no parameter "
                            f"{', '.join(k for k in unknown if k in TRAIN_OPTIONS)}); its parameters: "
                            f"{', '.join(sorted(valid))}")
        if unknown:
            raise UserError(f"method {name!r} has no parameter(s) {', '.join(unknown)}; its parameters: "
                            f"{', '.join(sorted(valid))}")
        check_value_types(f"method {name!r}: parameter", signature, params)
        check_ranges(f"method {name!r}: parameter", cls.param_ranges, params)
        check_positive(f"method {name!r}: parameter", params, TRAIN_COUNTS)
    else:
        if unknown:
            raise UserError(f"method {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                            f"its parameters are: {', '.join(valid)}")
        check_value_types(f"method {name!r}: parameter", signature, params)
        check_ranges(f"method {name!r}: parameter", cls.param_ranges, params)
        if "num_parts" in params and params["num_parts"] != num_parts:
            raise UserError("give the number of parts once, with --num-parts, not also as -p num_parts")
        if "num_parts" in valid:
            params["num_parts"] = num_parts
        if not isinstance(num_parts, int) or num_parts < 1:
            raise UserError(f"--num-parts must be a positive integer, got {num_parts!r}")
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise UserError(f"method {name!r}: bad parameters {params}: {exc}") from None


# --------------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------------
def dataset_option_defaults(name: str) -> dict[str, Any]:
    """The ``-o`` options of dataset ``name`` with their default values (from its constructor)."""
    from benchmark.core.registry import DATASETS

    signature = inspect.signature(DATASETS.get(name).__init__).parameters.values()
    fixed = ("self", "root", "split", "view", "protocol", "masks")
    return {p.name: p.default for p in signature
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and not p.name.startswith("_")
            and p.name not in fixed}


def check_dataset_options(name: str, options: dict[str, Any]) -> None:
    """Unknown ``-o`` options of dataset ``name``, or values of the wrong type: one error listing the valid
    options (the split, view, protocol and masks have options of their own and are not checked here)."""
    from benchmark.core.registry import DATASETS

    cls = DATASETS.get(name)
    signature = inspect.signature(cls.__init__).parameters.values()
    defaults = dataset_option_defaults(name)
    unknown = sorted(set(options) - set(defaults) - {"split", "protocol", "masks"})
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in signature):
        raise UserError(f"dataset {name!r} has no option {', '.join(map(repr, unknown))}; "
                        f"its options are: {', '.join(defaults) or 'none'}")
    check_value_types(f"dataset {name!r}: option", signature, options)
    check_ranges(f"dataset {name!r}: option", cls.param_ranges, options)


def build_dataset(name: str, *, data_root: str | Path | None = None, split: str = "test", view: str | None = "fg",
                  protocol: Any = DEFAULT_PROTOCOL, masks: Any = None, options: dict[str, Any] | None = None):
    """Instantiate registered dataset ``name`` for one split and view (``masks=None``: the protocol
    object's own mask source, or ``gt``; ``view=None`` / ``protocol=None``: the dataset's own defaults,
    e.g. PartImageNet's ``whole`` view under ``whole-image``)."""
    from benchmark.core.registry import DATASETS

    cls = DATASETS.get(name)
    reason = cls.unavailable_reason()
    if reason:
        raise UnavailableError(f"dataset {name!r} is unavailable here: {reason}")
    options = dict(options or {})
    for key in ("split", "protocol", "masks"):
        if key in options:
            raise UserError(f"give the {key} with --{key}, not as the dataset option -o {key}=...")
    check_dataset_options(name, options)
    try:
        chosen = {key: value for key, value in (("view", view), ("protocol", protocol)) if value is not None}
        return cls(data_root, split=split, masks=masks, **chosen, **options)
    except TypeError as exc:
        raise UserError(f"dataset {name!r}: bad options {options}: {exc}") from None


# --------------------------------------------------------------------------------------------------
# mask sources
# --------------------------------------------------------------------------------------------------
def build_mask_source(spec: Any):
    """A ``--masks`` value (``gt``, ``predicted:DIR``, ``model:CKPT``, ...) as its
    :class:`~benchmark.core.protocol.MaskSource`; an unknown kind lists the known spellings."""
    from benchmark.core.protocol import MaskSource

    return MaskSource.parse(spec)
