"""The distribution installs one namespace `benchmark` (never top-level `methods`/`datasets`)."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"benchmark": "benchmark", "benchmark.methods": "methods", "benchmark.metrics": "metrics",
          "benchmark.datasets": "datasets"}


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _expected_packages():
    found = set()
    for package, folder in MAPPED.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if "__pycache__" in rel.parts:
                continue
            found.add(".".join([package, *rel.parts]) if rel.parts else package)
    return found


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    assert listed == _expected_packages()


def test_package_dir_maps_the_namespace():
    assert _pyproject()["tool"]["setuptools"]["package-dir"] == MAPPED


def test_importing_benchmark_is_light():
    code = "import sys, benchmark; assert 'torch' not in sys.modules, 'benchmark/__init__ imports torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_wheel_install_into_a_target_imports_from_outside_the_repo(tmp_path):
    import shutil

    target = tmp_path / "site"
    # Build from a copy: setuptools writes build/ (and *.egg-info) next to the sources it builds, and the
    # test suite must leave the source tree as it found it.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "benchmark", "methods", "metrics", "datasets"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True)
    assert not (ROOT / "build").exists(), "pytest must leave no build/ folder in the source tree"
    assert not (target / "methods").exists() and not (target / "datasets").exists()
    code = ("import benchmark.methods, benchmark.metrics, benchmark.datasets, benchmark.runner, sys;"
            f"assert benchmark.methods.__file__.startswith({str(target)!r}), benchmark.methods.__file__;"
            "from benchmark.core.registry import METHODS; assert 'random' in METHODS")
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); " + code],
                   check=True, cwd=tmp_path, env=env)
