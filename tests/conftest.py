"""Shared test configuration: small thread counts (2-core CI), headless matplotlib, no network."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's ~/.cache/partbench from tests."""
    monkeypatch.setenv("PARTBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
