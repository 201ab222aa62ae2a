"""The downloader against a local HTTP server (127.0.0.1, a thread) serving fixture archives."""

from __future__ import annotations

import hashlib
import io
import random
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from benchmark.core.errors import UserError
from benchmark.datasets._download import download, extract, fetch


def make_tar(members: dict[str, bytes], *, gzip: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gzip else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


GOOD = make_tar({"CUB_200_2011/images.txt": b"1 001.A/a.jpg\n", "CUB_200_2011/README": random.Random(0).randbytes(300_000)})
SEGS = make_tar({"segmentations/001.A/a.png": b"png"})
ESCAPE = make_tar({"ok.txt": b"fine", "../escaped.txt": b"evil"})
md5 = lambda data: hashlib.md5(data).hexdigest()  # noqa: E731


class Server:
    """Serves ``files`` (path -> bytes) with Range support; ``cut[path]`` = byte count after which the
    first response for that path is cut off (to test resume). Records the Range headers it saw."""

    def __init__(self, files):
        self.files = dict(files)
        self.cut: dict[str, int] = {}
        self.ranges: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                header = self.headers.get("Range")
                outer.ranges.append(header)
                start = int(header.split("=")[1].rstrip("-")) if header else 0
                if start >= len(data):
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206 if header else 200)
                if header:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                cut = outer.cut.pop(self.path, None)
                self.wfile.write(body[:cut] if cut is not None else body)
                self.wfile.flush()
                if cut is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    with Server({"/good.tgz": GOOD, "/segs.tgz": SEGS, "/escape.tgz": ESCAPE}) as s:
        yield s


def test_download_verify_and_extract(server, tmp_path):
    path = tmp_path / "good.tgz"
    assert download(f"{server.url}/good.tgz", path, md5=md5(GOOD), progress=False) == md5(GOOD)
    assert path.read_bytes() == GOOD and not (tmp_path / "good.tgz.part").exists()
    extract(path, tmp_path / "out")
    assert (tmp_path / "out/CUB_200_2011/images.txt").read_bytes() == b"1 001.A/a.jpg\n"


def test_corrupted_download_is_deleted(server, tmp_path):
    with pytest.raises(UserError, match=r"has MD5 .*expected 0{32}.*deleted"):
        download(f"{server.url}/good.tgz", tmp_path / "good.tgz", md5="0" * 32, progress=False)
    assert not (tmp_path / "good.tgz").exists() and not (tmp_path / "good.tgz.part").exists()


def test_resume_after_interruption(server, tmp_path):
    server.cut["/good.tgz"] = 100_000
    path = tmp_path / "good.tgz"
    with pytest.raises(UserError, match="run the same command again to resume"):
        download(f"{server.url}/good.tgz", path, md5=md5(GOOD), progress=False, timeout=5)
    assert (tmp_path / "good.tgz.part").stat().st_size == 100_000
    assert download(f"{server.url}/good.tgz", path, md5=md5(GOOD), progress=False) == md5(GOOD)
    assert server.ranges[-1] == "bytes=100000-" and path.read_bytes() == GOOD


def test_path_escape_is_refused(server, tmp_path):
    path = tmp_path / "dl" / "escape.tgz"
    download(f"{server.url}/escape.tgz", path, md5=md5(ESCAPE), progress=False)
    with pytest.raises(UserError, match=r"\.\./escaped\.txt.*refusing"):
        extract(path, tmp_path / "dl" / "out")
    assert not (tmp_path / "dl" / "escaped.txt").exists() and not (tmp_path / "dl" / "out" / "ok.txt").exists()
    assert not path.exists()  # a refused archive is not left on disk


def test_symlink_escape_is_refused(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        link = tarfile.TarInfo("data/link")
        link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tar.addfile(link)
    (tmp_path / "l.tar").write_bytes(buffer.getvalue())
    with pytest.raises(UserError, match="refusing"):
        extract(tmp_path / "l.tar", tmp_path / "out")
    assert not (tmp_path / "l.tar").exists()


def test_a_damaged_archive_is_deleted(tmp_path):
    (tmp_path / "d.tgz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(UserError, match="cannot be extracted.*deleted"):
        extract(tmp_path / "d.tgz", tmp_path / "out")
    assert not (tmp_path / "d.tgz").exists()


def test_download_into_an_impossible_folder_is_one_line(tmp_path):
    from benchmark.cli import cli

    result = CliRunner().invoke(cli, ["data", "download", "cub", "--out", "/proc/x/y", "-q"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1


def test_http_error_and_unreachable(server, tmp_path):
    with pytest.raises(UserError, match="HTTP 404"):
        download(f"{server.url}/missing.tgz", tmp_path / "x", progress=False)


def test_fetch_and_cli(server, tmp_path):
    from benchmark.cli import cli

    logs = []
    seen = fetch("cub", tmp_path / "a", urls={"images": f"{server.url}/good.tgz", "segmentations": f"{server.url}/segs.tgz"},
                 md5s={"images": md5(GOOD)}, progress=False, log=logs.append)
    assert seen == {"images": md5(GOOD), "segmentations": md5(SEGS)}
    assert (tmp_path / "a/CUB_200_2011/segmentations/001.A/a.png").is_file()  # unpacked inside the tree
    assert any("no published checksum" in line for line in logs)
    assert f"{md5(SEGS)}  segmentations.tgz" in (tmp_path / "a/CHECKSUMS.md5").read_text()
    with pytest.raises(UserError, match="no archive named 'pictures'"):
        fetch("cub", tmp_path / "b", urls={"pictures": "http://x"}, progress=False, log=logs.append)

    result = CliRunner().invoke(cli, ["data", "download", "cub", "--out", str(tmp_path / "c"), "-q",
                                      "--url", f"images={server.url}/good.tgz", "--url", f"segmentations={server.url}/segs.tgz",
                                      "--md5", f"images={md5(GOOD)}"])
    assert result.exit_code == 0, result.output
    assert "--data-root" in result.output and (tmp_path / "c/CUB_200_2011/images.txt").is_file()
    result = CliRunner().invoke(cli, ["data", "download", "cub", "--out", str(tmp_path / "d"), "-q",
                                      "--url", f"images={server.url}/good.tgz", "--url", f"segmentations={server.url}/segs.tgz"])
    assert result.exit_code == 2 and "expected 97eceeb196236b17998738112f37df78" in result.output
    assert not (tmp_path / "d").exists()  # a failed download leaves no new --out folder


def test_the_extraction_marker_is_written_atomically(tmp_path, monkeypatch):
    """A kill while the marker is written leaves no marker (a torn one would skip the extraction next time)."""
    import benchmark.core.atomic as atomic

    path = tmp_path / "good.tgz"
    path.write_bytes(GOOD)
    real = atomic.os.replace

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        extract(path, tmp_path / "out")
    assert not list((tmp_path / "out").glob(".partbench-extracted-*"))
    monkeypatch.setattr(atomic.os, "replace", real)
    extract(path, tmp_path / "out")
    assert (tmp_path / "out" / ".partbench-extracted-good.tgz").read_text() == "ok\n"
