"""Where a result came from: code version, package versions, device. Recorded in every result row."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from benchmark import __version__

_PACKAGES = ("torch", "torchvision", "numpy", "scikit-learn", "faiss-cpu", "faiss-gpu")


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str, bool | None]:
    """(commit sha, dirty flag) of the partbench source checkout, or ("unknown", None) if not a git tree."""
    source = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                                capture_output=True, text=True, timeout=10, check=True).stdout
        return sha, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", None


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    versions = {"partbench": __version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def device_description(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        return f"{device} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
