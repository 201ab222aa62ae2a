"""Content-addressed caching keyed by *everything* that affects the cached value.

:func:`content_key` hashes a JSON-able description (backbone, weights hash, layers, dataset, split, image
size, transform version, ...) into a stable hex key. :func:`file_digest` hashes a file (weights,
checkpoints) and :func:`folder_digest` every file under a folder (mask folders), so that a changed file
invalidates every cache entry and run key derived from it; both share one memo of file digests.
:func:`folder_listing` lists a folder once for both :func:`folder_digest` and cheaper stat-based keys. :class:`ArrayCache`
stores NumPy arrays as ``<key>.npy`` with a ``<key>.json`` sidecar describing what produced them, both
written atomically; a sidecar that does not match the requested description is treated as a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from benchmark.core.atomic import atomic_open, atomic_write_text


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal descriptions give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable in a cache key: {type(obj).__name__}")


def content_key(description: Any, length: int = 24) -> str:
    """Stable hex key of a JSON-able description."""
    return hashlib.sha256(canonical_json(description).encode()).hexdigest()[:length]


_digest_memo: dict[tuple[str, int, int], str] = {}


def _bytes_digest(path: str, size: int, mtime_ns: int) -> str:
    """Full SHA-256 hex of a file's bytes, memoised on (path, size, mtime): asking again costs a stat."""
    memo_key = (path, size, mtime_ns)
    if memo_key not in _digest_memo:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _digest_memo[memo_key] = digest.hexdigest()
    return _digest_memo[memo_key]


def file_digest(path: str | os.PathLike, length: int = 16) -> str:
    """SHA-256 of a file's bytes (memoised on path, size and mtime)."""
    path = Path(path)
    stat = path.stat()
    return _bytes_digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)[:length]


def folder_listing(root: str | os.PathLike) -> list[tuple[str, str, int, int]]:
    """``(relative posix path, path, size, mtime_ns)`` of every file under ``root``, sorted (``os.scandir``:
    a few times faster than ``Path.rglob`` plus ``stat`` on folders of thousands of masks)."""
    root = str(root)
    files, folders = [], [root]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    folders.append(entry.path)
                elif entry.is_file():
                    stat = entry.stat()
                    relative = os.path.relpath(entry.path, root).replace(os.sep, "/")
                    files.append((relative, entry.path, stat.st_size, stat.st_mtime_ns))
    return sorted(files)


def folder_digest(root: str | os.PathLike) -> tuple[int, str]:
    """``(file count, SHA-256 hex)`` of every file's relative path and bytes under ``root``: another file
    name, an added file or a changed byte is another digest. Pass a resolved ``root`` so that one folder
    spelt two ways shares the memo of :func:`file_digest`."""
    digest = hashlib.sha256()
    listing = folder_listing(root)
    for relative, path, size, mtime in listing:
        digest.update(f"{relative}\0{_bytes_digest(path, size, mtime)}\n".encode())
    return len(listing), digest.hexdigest()


class ArrayCache:
    """A directory of ``<key>.npy`` arrays with JSON sidecars; ``None`` directory = caching disabled."""

    def __init__(self, directory: str | os.PathLike | None):
        self.directory = Path(directory) if directory is not None else None

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def paths(self, description: Any) -> tuple[str, Path, Path] | None:
        if self.directory is None:
            return None
        key = content_key(description)
        return key, self.directory / f"{key}.npy", self.directory / f"{key}.json"

    def load(self, description: Any):
        """The cached array for ``description`` or ``None``."""
        import numpy as np

        paths = self.paths(description)
        if paths is None:
            return None
        _, array_path, meta_path = paths
        if not (array_path.exists() and meta_path.exists()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("description") != json.loads(canonical_json(description)):
                return None
            return np.load(array_path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # unreadable entry: recompute and overwrite

    def store(self, description: Any, array) -> None:
        import numpy as np

        paths = self.paths(description)
        if paths is None:
            return
        key, array_path, meta_path = paths
        with atomic_open(array_path, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        meta = {"key": key, "description": json.loads(canonical_json(description)),
                "shape": list(array.shape), "dtype": str(array.dtype)}
        atomic_write_text(meta_path, json.dumps(meta, indent=1, sort_keys=True))
