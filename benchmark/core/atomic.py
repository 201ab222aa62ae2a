"""Atomic file writes: a reader never sees a half-written file, a killed writer leaves the old file.

Everything partbench writes (result CSVs, tables, checkpoints, cache entries, figures) goes through these
helpers: write to a temporary file in the destination directory, flush and fsync, then ``os.replace``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import IO, Iterator

from benchmark.core.errors import UserError


_HOST = socket.gethostname().replace(".", "_").replace("-", "_") or "host"
_TMP = re.compile(r"^\..+\.pb-(?P<host>[^.]+)-(?P<pid>\d+)\.[^.]*\.tmp$")
_cleaned: set[str] = set()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: 0666 minus the umask."""
    return 0o666 & ~_umask()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def clean_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed writers on this host left in ``directory`` (their names hold
    the host and PID of the writer; a file of a live process, or of another host, is kept)."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _TMP.match(name)
        if match and match["host"] == _HOST and not process_alive(int(match["pid"])):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))
                removed.append(Path(directory) / name)
    return removed


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; it replaces ``path`` only if the block succeeds.

    The final file gets the mode a plain ``open()`` would give (0666 minus the umask), so colleagues on a
    shared file system can read results and checkpoints. The temporary's name holds this host and PID:
    the first write into a directory by a process deletes the temporaries of killed writers there."""
    if mode not in ("w", "wb"):
        raise ValueError("atomic_open supports modes 'w' and 'wb'")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = str(path.parent.resolve())
        if key not in _cleaned:
            clean_stale_temporaries(path.parent)
            _cleaned.add(key)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.pb-{_HOST}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(f"cannot write to {path.parent}: {exc.strerror or exc}; choose a writable --out directory") from None
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_torch_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a truncated checkpoint behind."""
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


def check_writable_dir(path: str | os.PathLike, what: str = "output directory") -> Path:
    """Create ``path`` if needed and make sure files can be written there; one clear error otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UserError(f"{what} {path} is not writable ({exc.strerror or exc}); pass a writable directory") from None
    return path


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, *, wait: bool = True, poll_s: float = 0.5,
                   on_wait=None) -> Iterator[bool]:
    """Hold the lock file ``path`` (created with ``O_EXCL``, holding this host and PID) for the block.

    When another live process holds it, wait until it is released (``on_wait(holder)`` is called once), or
    with ``wait=False`` yield ``False`` at once. A lock left by a dead process of this host is stale and
    taken over. Yields ``True`` once the lock is held (and whether we waited is told by ``on_wait``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    told = False
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            holder = _lock_holder(path)
            dead = holder is not None and holder.get("host") == socket.gethostname() \
                and not process_alive(int(holder.get("pid", -1)))
            unreadable = holder is None and _age_s(path) > 30  # its writer died between create and write
            if dead or unreadable:
                with contextlib.suppress(OSError):
                    os.unlink(path)  # stale: its process is gone
                continue
            if not wait:
                yield False
                return
            if not told and on_wait is not None:
                on_wait(holder or {})
                told = True
            time.sleep(poll_s)
            continue
        except OSError as exc:
            raise UserError(f"cannot create the lock file {path}: {exc.strerror or exc}; choose a writable --out "
                            "directory") from None
        with os.fdopen(fd, "w") as handle:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}, handle)
        break
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _lock_holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # being written right now, or just released


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def remove_empty_dirs(start: str | os.PathLike, stop: str | os.PathLike, *, include_stop: bool = True) -> None:
    """Remove ``start`` and its parents while they are empty, up to ``stop`` (removed too when
    ``include_stop``): a failed command leaves no empty output folders behind."""
    start, stop = Path(start).absolute(), Path(stop).absolute()
    if start != stop and stop not in start.parents:
        return
    current = start
    while current != stop or include_stop:
        try:
            current.rmdir()
        except OSError:
            return
        if current == stop:
            return
        current = current.parent
