"""The outputs of a trained network, cached by content: the same network on the same input tensor is run once.

A plan evaluates every trained model under both protocols and with several mask sources (``reproduce
paper``: legacy and corrected, ground-truth and predicted masks), and all of them feed the network the same
images in the same batches: only the scoring differs. :class:`CachedNetwork` stands in for the network in
``predict``: its output for an input batch is stored under ``<cache_dir>/network-outputs/`` (an
:class:`~benchmark.core.cache.ArrayCache`, written atomically) and read back by every later run, in this
process or another one (Slurm jobs), that feeds the same network the same tensor.

The key is the content of both sides: :func:`module_digest` (every parameter and buffer of the network,
whatever file, training or cache it came from) and the SHA-256 of the exact input tensor (after the
method's own preprocessing, so a changed mean, resize or crop is another entry). Outputs are stored in the
dtype the network gave, unrounded: a cached run gives the numbers the network computed for that very batch.
Without a cache directory (``run --no-cache``) nothing is stored or read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchmark.core.cache import ArrayCache

#: sub-folder of the run cache holding the entries
FOLDER = "network-outputs"


def tensor_digest(tensor: Tensor) -> str:
    """SHA-256 (hex) of a tensor's dtype, shape and bytes."""
    data = tensor.detach().to("cpu").contiguous()
    digest = hashlib.sha256(f"{data.dtype}|{tuple(data.shape)}|".encode())
    digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def module_digest(module: nn.Module) -> str:
    """SHA-256 (hex) of a module's class and of every entry of its state dict (names, dtypes, shapes, values)."""
    digest = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}\n".encode())
    for name, value in module.state_dict().items():
        digest.update(f"{name}={tensor_digest(value)}\n".encode())
    return digest.hexdigest()


class OutputField(nn.Module):
    """``network(x).<field>``: the one tensor that prediction reads from a network returning several outputs
    (``pdisconet``'s and ``pdiscoformer``'s maps, scores, features), so that :class:`CachedNetwork` stores a
    tensor. Other attributes are the network's."""

    def __init__(self, network: nn.Module, field: str):
        super().__init__()
        self.network = network
        self.field = field

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("network"), name)

    def forward(self, inputs: Tensor) -> Tensor:
        return getattr(self.network(inputs), self.field)


class CachedNetwork:
    """Calls ``network`` on an input tensor, or reads its output for that tensor from ``cache_dir``.

    ``label`` (e.g. the method's name) only makes entries readable; the network's identity is its
    :func:`module_digest`, computed once per wrapper. Other attributes are the network's.
    """

    def __init__(self, network: nn.Module, cache_dir: str | Path, label: str = ""):
        self.network = network
        self.cache = ArrayCache(Path(cache_dir) / FOLDER)
        self.label = label
        self._identity: str | None = None
        self.hits = 0
        self.misses = 0

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "network":  # copy/pickle probe before __init__ ran
            raise AttributeError(name)
        return getattr(self.network, name)

    @property
    def identity(self) -> str:
        if self._identity is None:
            self._identity = module_digest(self.network)
        return self._identity

    def __call__(self, inputs: Tensor) -> Tensor:
        description = {"kind": "network-output", "label": self.label, "network": self.identity,
                       "input": tensor_digest(inputs)}
        stored = self.cache.load(description)
        if stored is not None and tuple(stored.shape[:1]) == tuple(inputs.shape[:1]):
            self.hits += 1
            return torch.from_numpy(stored).to(inputs.device)
        outputs = self.network(inputs)
        self.misses += 1
        self.cache.store(description, outputs.detach().to("cpu").numpy())
        return outputs
