"""Seeding: one integer seed per run decides every random choice of a method.

Use :func:`seed_everything` once at the start of a run, and :func:`derive_seed` to give each independent
consumer (a data order, an initialisation, a warp sampler) its own stream, so that adding a consumer does
not shift the others. Methods must take their randomness from the seed they are given (``fit(seed=...)``)
or from generators made with :func:`make_generator` -- never from library defaults that are fixed
(faiss's 1234) or global state that other code touches.
"""

from __future__ import annotations

import hashlib
import os
import random


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed derived deterministically from ``seed`` and any number of keys."""
    text = "\x1f".join([str(int(seed))] + [str(k) for k in keys])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (CPU and all CUDA devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def make_generator(seed: int, device: "str | object" = "cpu"):
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    import torch

    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed) & ((1 << 63) - 1))
    return generator
