"""Miniature dataset trees for the contract tests: name -> builder(tmp_path) -> (root, options)."""

from __future__ import annotations

from helpers import SYNTHETIC_TINY


def _synthetic(tmp_path):
    return None, dict(SYNTHETIC_TINY)


FIXTURES = {"synthetic": _synthetic}
