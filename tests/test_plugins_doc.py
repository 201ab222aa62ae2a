"""docs/plugins.md: its third-party method passes the public conformance checks, as the page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)


def test_the_third_party_method_of_the_docs_passes_the_checks():
    (block,) = _python_blocks()
    assert "check_method(BrightnessBands" in block
    exec(compile(block, str(PAGE), "exec"), {"__name__": "plugins_doc"})  # raises AssertionError on a broken rule


def test_the_broken_variant_the_docs_show_fails_with_the_rule():
    (block,) = _python_blocks()
    broken = block.replace("self.num_parts = num_parts  #", "self.k = num_parts  #")
    assert broken != block
    with pytest.raises(AssertionError, match="BrightnessBands: __init__ must store every parameter unchanged"):
        exec(compile(broken, str(PAGE), "exec"), {"__name__": "plugins_doc"})
