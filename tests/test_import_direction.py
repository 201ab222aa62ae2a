"""Imports point one way: core <- datasets, metrics <- methods <- runner/CLI (see the developer guide)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"benchmark.core": ROOT / "benchmark" / "core", "benchmark.metrics": ROOT / "metrics",
           "benchmark.datasets": ROOT / "datasets", "benchmark.methods": ROOT / "methods"}
# package -> project modules it must never import
FORBIDDEN = {
    "benchmark.core": ("benchmark.methods", "benchmark.metrics", "benchmark.datasets", "benchmark.runner",
                       "benchmark.cli", "benchmark.commands", "benchmark.report", "benchmark.results",
                       "benchmark.demo", "benchmark.figures", "benchmark.provenance"),
    "benchmark.metrics": ("benchmark.methods", "benchmark.datasets", "benchmark.runner", "benchmark.cli",
                          "benchmark.commands", "benchmark.demo"),
    "benchmark.datasets": ("benchmark.methods", "benchmark.metrics", "benchmark.runner", "benchmark.cli",
                           "benchmark.commands", "benchmark.demo"),
    "benchmark.methods": ("benchmark.runner", "benchmark.cli", "benchmark.commands", "benchmark.demo",
                          "benchmark.metrics"),
}


def _imports(path: Path, package: str):
    tree = ast.parse(path.read_text(), filename=str(path))
    module_parts = package.split(".") + list(path.relative_to(FOLDERS[package]).with_suffix("").parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # resolve relative imports against the module's package
                base = module_parts[:-node.level] if module_parts[-1] != "__init__" else module_parts[:len(module_parts) - node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield node.lineno, name
            for alias in node.names:
                yield node.lineno, f"{name}.{alias.name}"


def _display(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package):
    bad = []
    for path in sorted(FOLDERS[package].rglob("*.py")):
        for line, name in _imports(path, package):
            for forbidden in FORBIDDEN[package]:
                if name == forbidden or name.startswith(forbidden + "."):
                    bad.append(f"{_display(path)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    fake = tmp_path / "core"
    fake.mkdir()
    (fake / "bad.py").write_text("from benchmark.methods import random_parts\nfrom ..metrics import nmi\n")
    monkeypatch.setitem(FOLDERS, "benchmark.core", fake)
    with pytest.raises(AssertionError, match="bad.py:1 imports benchmark.methods"):
        test_imports_point_one_way("benchmark.core")
