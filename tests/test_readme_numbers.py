"""The README's measured numbers come from `tools/readme_numbers.py`: the demo rows of the fast methods are
recomputed here and must match the README exactly; every measured part reads as the script writes it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAST = ("random", "kmeans", "dff")  # seconds each; ours and scops train (the script runs them too)


def _tool():
    if "readme_numbers" not in sys.modules:  # tools/ is not a package: load the script by path, once
        spec = importlib.util.spec_from_file_location("readme_numbers", ROOT / "tools" / "readme_numbers.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["readme_numbers"] = module
        spec.loader.exec_module(module)
    return sys.modules["readme_numbers"]


def test_every_measured_part_is_present_and_reads_as_the_script_writes_it():
    tool = _tool()
    readme = tool.marked(tool.README.read_text(encoding="utf-8"))
    reproduce = tool.marked(tool.REPRODUCE_DOC.read_text(encoding="utf-8"))
    assert set(readme) == {"demo-table", "demo-time"} and set(reproduce) == {"reproduce-time"}
    for text in (readme["demo-time"], reproduce["reproduce-time"]):
        match = tool.TIME_TEXT.fullmatch(text)
        assert match, text
        assert tool.render_time(int(match["seconds"]), int(match["cores"]), match["cpu"], float(match["load"]),
                                match["date"]) == text
    rows = tool.read_table(readme["demo-table"])
    assert tool.render_table(rows) == readme["demo-table"].strip()  # bold where the script puts it
    from benchmark.demo import demo_methods

    assert {label.split(" (")[0] for label in rows} == set(demo_methods()[0])  # one row per demo method


@pytest.mark.slow
def test_readme_demo_rows_of_the_fast_methods_are_what_the_demo_computes(tmp_path, monkeypatch):
    from benchmark.demo import run_demo

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))  # the README's demo: random weights
    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    tool = _tool()
    run_demo(tmp_path, methods=FAST, device="cpu", progress=False, echo=lambda _: None)
    computed = tool.demo_rows(tmp_path / "runs")
    in_readme = tool.read_table(tool.marked(tool.README.read_text(encoding="utf-8"))["demo-table"])
    assert {label: in_readme.get(label) for label in computed} == computed
