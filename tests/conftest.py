"""Shared test configuration: small thread counts (2-core CI), headless matplotlib, no network."""

import os
import shutil

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """Module and session fixtures run before any test's own cache exists: they get a cache of the session's,
    so that nothing a test run does lands in the user's ~/.cache/partbench."""
    patch = pytest.MonkeyPatch()
    patch.setenv("PARTBENCH_CACHE", str(tmp_path_factory.mktemp("session-cache")))
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """A cache of the test's own, removed when the test ends: features and checkpoints of several hundred MB
    would otherwise pile up over the session (the suite once filled a CI disk that way)."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("PARTBENCH_CACHE", str(folder))
    yield
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of training tests: on a shared 2-core machine, two OpenMP threads
    fighting other processes made these steps about 10x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def rehearsal_kit(tmp_path_factory):
    """The real-format rehearsal kit (tests/rehearsal.py), built once per session: weights in a torch and timm
    cache of their own, released checkpoints, supervisedlabels and real-size dataset trees."""
    from rehearsal import build_kit

    return build_kit(tmp_path_factory.mktemp("rehearsal"))


@pytest.fixture
def with_kit_weights(rehearsal_kit, monkeypatch):
    """Point torch and timm at the kit's caches (and never download)."""
    for name, value in rehearsal_kit.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    return rehearsal_kit
