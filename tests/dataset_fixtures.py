"""Miniature dataset trees for the contract tests: name -> builder(tmp_path) -> (root, options)."""

from __future__ import annotations

from helpers import SYNTHETIC_TINY


def _synthetic(tmp_path):
    return None, dict(SYNTHETIC_TINY)


FIXTURES = {"synthetic": _synthetic}

from test_datasets_cub import build_fixture as _cub  # noqa: E402
from test_datasets_deepfashion import build_fixture as _deepfashion  # noqa: E402
from test_datasets_pascal_part import build_fixture as _pascal_part  # noqa: E402
from test_datasets_partimagenet import build_fixture as _partimagenet  # noqa: E402
from test_datasets_nabirds import build_fixture as _nabirds  # noqa: E402
from test_datasets_flowers102 import build_fixture as _flowers102  # noqa: E402

FIXTURES.update({"cub": _cub, "deepfashion": _deepfashion, "pascal-part": _pascal_part,
                 "partimagenet": _partimagenet, "nabirds": _nabirds, "flowers102": _flowers102})
