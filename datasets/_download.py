"""Downloading and unpacking the public datasets (``benchmark data download``).

* :func:`download` streams a URL into ``<file>.part`` with a tqdm progress bar, resumes an interrupted
  download with an HTTP ``Range`` request (a server that ignores it restarts from zero), verifies the MD5
  and only then renames the file into place. A checksum mismatch deletes the file and is an error.
* :func:`extract` refuses an archive that has a member escaping the destination (absolute path, ``..``,
  links out of the tree, devices) *before* writing anything, then extracts with ``tarfile``'s ``data``
  filter (which enforces the same rules again).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from benchmark.core.errors import UserError


@dataclass(frozen=True)
class Source:
    """One archive of a dataset: where it lives, its MD5 (``None``: not published) and where it unpacks."""

    name: str
    url: str
    md5: str | None
    filename: str
    extract_to: str = "."  # relative to the --out directory


SOURCES: dict[str, tuple[Source, ...]] = {
    "cub": (
        Source("images", "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
               "97eceeb196236b17998738112f37df78", "CUB_200_2011.tgz"),
        # segmentations.tgz unpacks to segmentations/, which belongs inside CUB_200_2011/
        Source("segmentations", "https://data.caltech.edu/records/65de6-vp158/files/segmentations.tgz",
               None, "segmentations.tgz", "CUB_200_2011"),
    ),
    "pascal-part": (
        Source("voc", "http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar",
               "da459979d0c395079b5c75ee67908abb", "VOCtrainval_03-May-2010.tar"),
        Source("parts", "http://roozbehm.info/pascal-parts/trainval.tar.gz", None, "trainval.tar.gz"),
    ),
}
DATA_ROOT_AFTER = {"cub": "CUB_200_2011", "pascal-part": "."}

CHUNK = 1 << 20


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, *, md5: str | None = None, progress: bool = True, timeout: float = 60.0,
             log: Callable[[str], None] = lambda msg: None) -> str:
    """Fetch ``url`` into ``dest`` (resuming ``dest.part``), check ``md5``; return the file's MD5."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    seen = _already_downloaded(dest, md5, log)
    if seen is not None:
        return seen
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    response = _open(url, start, timeout)
    if response is not None:  # None: the .part is already complete
        with response:
            _stream(response, url, part, start, progress, log)
    return _verify_and_place(part, dest, url, md5)


def _already_downloaded(dest: Path, md5: str | None, log: Callable[[str], None]) -> str | None:
    """The MD5 of a finished ``dest`` that can be kept; a file with the wrong MD5 is deleted (``None``)."""
    if not dest.is_file():
        return None
    seen = md5sum(dest)
    if md5 is None or seen == md5:
        log(f"{dest.name}: already downloaded")
        return seen
    log(f"{dest.name}: present but its MD5 {seen} != {md5}; downloading again")
    dest.unlink()
    return None


def _open(url: str, start: int, timeout: float):
    """The HTTP response for ``url`` from byte ``start`` on (a ``Range`` request when resuming), or ``None``
    when the server says there is nothing left to fetch."""
    request = urllib.request.Request(url, headers={"User-Agent": "partbench-downloader"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # nothing left to fetch: the .part is complete
            return None
        raise UserError(f"download of {url} failed: HTTP {exc.code} {exc.reason}; check the URL or pass "
                        f"another mirror with --url") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"cannot reach {url} ({reason}); check the network or pass another mirror with --url") from None


def _stream(response, url: str, part: Path, start: int, progress: bool, log: Callable[[str], None]) -> None:
    """Append the response body to ``part`` (or rewrite it if the server ignored the resume request),
    with a progress bar; a short or broken body is an error that leaves ``part`` for the next resume."""
    resumed = bool(start) and response.status == 206
    if start and not resumed:
        log(f"{part.name[:-len('.part')]}: the server ignored the resume request; starting again from 0")
        start = 0
    length = response.headers.get("Content-Length")
    total = start + int(length) if length is not None else None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=part.name[:-len(".part")], leave=False)
    try:
        with open(part, "ab" if resumed else "wb") as handle:
            _copy_blocks(response, handle, url, bar)
            got = handle.tell()
    finally:
        if bar is not None:
            bar.close()
    if total is not None and got < total:
        raise UserError(f"download of {url} stopped after {got} of {total} bytes; run the same command "
                        f"again to resume")


def _copy_blocks(response, handle, url: str, bar) -> None:
    while True:
        try:
            block = response.read(CHUNK)
        except (OSError, ValueError) as exc:
            raise UserError(f"download of {url} was interrupted after {handle.tell()} bytes ({exc}); "
                            f"run the same command again to resume") from None
        if not block:
            return
        handle.write(block)
        if bar is not None:
            bar.update(len(block))


def _verify_and_place(part: Path, dest: Path, url: str, md5: str | None) -> str:
    """Check the MD5 of the finished ``part`` (deleting it on a mismatch), then rename it to ``dest``."""
    seen = md5sum(part)
    if md5 is not None and seen != md5:
        part.unlink()
        raise UserError(f"{dest.name} from {url} has MD5 {seen}, expected {md5}: the file is corrupt or not the "
                        f"official archive; it was deleted -- run again, or pass another mirror with --url")
    os.replace(part, dest)
    return seen


def unsafe_members(archive: tarfile.TarFile) -> list[str]:
    """Members that would land outside the destination: absolute paths, ``..``, links leaving the tree,
    device files."""
    bad = []
    for member in archive.getmembers():
        name = member.name.replace("\\", "/")
        norm = posixpath.normpath(name)
        if name.startswith("/") or norm == ".." or norm.startswith("../") or (len(name) > 1 and name[1] == ":"):
            bad.append(member.name)
        elif member.issym() or member.islnk():
            target = member.linkname.replace("\\", "/")
            base = posixpath.dirname(norm) if member.issym() else ""
            resolved = posixpath.normpath(posixpath.join(base, target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                bad.append(f"{member.name} -> {member.linkname}")
        elif member.isdev():
            bad.append(member.name)
    return bad


def extract(archive_path: Path, dest: Path, *, log: Callable[[str], None] = lambda msg: None) -> None:
    """Unpack a (compressed) tar archive into ``dest`` safely; refuses archives with escaping members."""
    archive_path, dest = Path(archive_path), Path(dest)
    marker = dest / f".partbench-extracted-{archive_path.name}"
    if marker.is_file():
        log(f"{archive_path.name}: already extracted")
        return
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive_path) as archive:
            bad = unsafe_members(archive)
            if bad:
                raise UserError(f"{archive_path} has members that would be written outside {dest}: "
                                f"{', '.join(bad[:5])}; refusing to extract it, and deleted it (get the archive from "
                                "the official source)")
            archive.extractall(dest, filter="data")
    except UserError:
        _discard(archive_path)  # a refused archive is not left on disk to be trusted later
        raise
    except tarfile.FilterError as exc:
        _discard(archive_path)
        raise UserError(f"{archive_path}: refusing an unsafe member ({exc}); the archive was deleted, get it "
                        "from the official source") from None
    except (tarfile.TarError, EOFError) as exc:  # a damaged archive
        _discard(archive_path)
        why = " ".join(str(exc).split())  # tarfile lists every method it tried, one per line
        raise UserError(f"{archive_path} cannot be extracted ({why}); it was deleted: download it again") from None
    except OSError as exc:  # our side (a full disk, permissions): the archive itself may be fine
        raise UserError(f"cannot extract {archive_path} into {dest} ({exc.strerror or exc}); free space or fix "
                        "the permissions and run again") from None
    from benchmark.core.atomic import atomic_write_text

    atomic_write_text(marker, "ok\n")  # a marker torn by a kill must not pass for a finished extraction


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def fetch(dataset: str, to: Path, *, urls: dict[str, str] | None = None, md5s: dict[str, str] | None = None,
          progress: bool = True, log: Callable[[str], None] = print) -> dict[str, str]:
    """Download, verify and extract every archive of ``dataset`` into ``to``; returns name -> MD5 seen.
    Archives without a published checksum get theirs recorded in ``to/CHECKSUMS.md5`` (with a warning)."""
    if dataset not in SOURCES:
        raise UserError(f"no automatic download for {dataset!r}; known: {', '.join(SOURCES)}")
    urls, md5s = dict(urls or {}), dict(md5s or {})
    names = {s.name for s in SOURCES[dataset]}
    for key in list(urls) + list(md5s):
        if key not in names:
            raise UserError(f"{dataset} has no archive named {key!r}; its archives are {', '.join(sorted(names))}")
    to = Path(to)
    seen: dict[str, str] = {}
    lines = []
    for source in SOURCES[dataset]:
        url = urls.get(source.name, source.url)
        expected = md5s.get(source.name, source.md5)
        target = to / source.filename
        log(f"{source.name}: {url}")
        seen[source.name] = download(url, target, md5=expected, progress=progress, log=log)
        if expected is None:
            log(f"warning: {source.filename} has no published checksum; recorded the one seen "
                f"({seen[source.name]}) in {to / 'CHECKSUMS.md5'} -- compare it with other users' before trusting it")
        lines.append(f"{seen[source.name]}  {source.filename}\n")
        extract(target, to / source.extract_to, log=log)
    from benchmark.core.atomic import atomic_write_text

    atomic_write_text(to / "CHECKSUMS.md5", "".join(lines))
    return seen
