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


#: Seconds after which a lock whose heartbeat stopped is stale, on any host (``PARTBENCH_LOCK_LEASE_S``).
DEFAULT_LOCK_LEASE_S = 300.0


def lock_lease_s() -> float:
    """The lock lease: ``$PARTBENCH_LOCK_LEASE_S`` seconds, else :data:`DEFAULT_LOCK_LEASE_S`."""
    text = os.environ.get("PARTBENCH_LOCK_LEASE_S", "")
    if not text:
        return DEFAULT_LOCK_LEASE_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise UserError(f"PARTBENCH_LOCK_LEASE_S={text!r} must be a positive number of seconds (default "
                        f"{DEFAULT_LOCK_LEASE_S:g}); unset it or give e.g. 300")
    return value


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux ``/proc``), which tells a reused PID from the original."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def stale_reason(holder: dict | None, age_s: float, lease_s: float) -> str | None:
    """Why a lock held by ``holder`` (its JSON, ``None`` if unreadable) whose file was last refreshed
    ``age_s`` seconds ago is stale, or ``None`` while it is live.

    A holder refreshes its lock's mtime every ``lease_s / 4`` seconds (:func:`exclusive_lock`), so a lock
    older than the lease is stale on any host (a killed or hung holder, another machine's crash). On this
    host a dead PID, or a PID now owned by a process that started later, is stale at once."""
    if age_s > lease_s:
        return f"its heartbeat stopped {age_s:.0f} s ago (lease {lease_s:g} s)"
    if holder is None:
        return None  # being written right now: a dead writer's lock ages past the lease
    if holder.get("host") == socket.gethostname():
        try:
            pid = int(holder.get("pid", -1))
        except (TypeError, ValueError):
            return None
        if not process_alive(pid):
            return f"its process {pid} on this host is gone"
        started = holder.get("started")
        if started is not None and _process_start(pid) not in (None, str(started)):
            return f"PID {pid} on this host now belongs to another process"
    return None


class _Heartbeat:
    """Refreshes a held lock's mtime every ``interval_s`` in a daemon thread, while the file is still ours."""

    def __init__(self, path: Path, token: str, interval_s: float):
        import threading

        self.path, self.token, self.interval_s = path, token, interval_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"lock heartbeat {path.name}", daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        while not self.stop.wait(self.interval_s):
            if (_lock_holder(self.path) or {}).get("token") != self.token:
                return  # taken over (we were presumed dead) or removed: never refresh another's lock
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, *, wait: bool = True, poll_s: float = 0.5,
                   on_wait=None, on_takeover=None, lease_s: float | None = None) -> Iterator[bool]:
    """Hold the lock file ``path`` for the block: a lease, created with ``O_EXCL``, holding this host, PID
    and process start time, whose mtime a heartbeat thread refreshes every ``lease_s / 4`` seconds.

    When another holder's lock is live, wait until it is released (``on_wait(holder)`` is called once), or
    with ``wait=False`` yield ``False`` at once. A stale lock (:func:`stale_reason`: no heartbeat for
    ``lease_s`` seconds, default :func:`lock_lease_s`, on any host; a dead or reused PID on this host) is
    removed and taken over (``on_takeover(holder, reason)`` is called). Yields ``True`` once the lock is held."""
    path = Path(path)
    lease_s = lock_lease_s() if lease_s is None else float(lease_s)
    path.parent.mkdir(parents=True, exist_ok=True)
    told = False
    token = f"{_HOST}-{os.getpid()}-{time.time_ns()}"
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            holder = _lock_holder(path)
            seen = _stat(path)
            reason = stale_reason(holder, time.time() - seen.st_mtime if seen else 0.0, lease_s)
            if reason is not None:
                # Remove it only if it is still the very file judged stale (not a lock just taken by another).
                now = _stat(path)
                if seen is not None and now is not None and (now.st_ino, now.st_mtime_ns) == \
                        (seen.st_ino, seen.st_mtime_ns):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                    if on_takeover is not None:
                        on_takeover(holder or {}, reason)
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
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "started": _process_start(os.getpid()),
                       "time": time.time(), "lease_s": lease_s, "token": token}, handle)
        break
    heartbeat = _Heartbeat(path, token, lease_s / 4)
    try:
        yield True
    finally:
        heartbeat.close()
        if (_lock_holder(path) or {}).get("token") == token:  # never remove a lock taken over from us
            with contextlib.suppress(OSError):
                os.unlink(path)


def _lock_holder(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # being written right now, or just released
    return holder if isinstance(holder, dict) else None


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


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


def _first_missing(path: Path) -> Path | None:
    """The highest folder of ``path`` that does not exist yet (``None`` when ``path`` exists)."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _prune_empty(top: Path) -> None:
    """Remove the empty folders under ``top`` and ``top`` itself if it ends up empty (bottom-up)."""
    for folder, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


@contextlib.contextmanager
def output_dir(path: str | os.PathLike, what: str = "--out directory") -> Iterator[Path]:
    """Create the output folder ``path`` (checked writable, :func:`check_writable_dir`) for the block; if the
    block fails, the folders it created that hold nothing are removed again, so a failed command leaves no
    empty ``--out`` behind (files already written stay; a folder that existed before is kept)."""
    path = Path(path)
    created = _first_missing(path.absolute())
    check_writable_dir(path, what)
    try:
        yield path
    except BaseException:
        if created is not None:
            _prune_empty(created)
        raise
