"""The README's measured numbers, regenerated: the demo table and the wall times of `benchmark demo` and
`benchmark reproduce synthetic`.

    python tools/readme_numbers.py          # runs both commands (about 4 minutes on 2 CPU cores), rewrites
                                            # the marked parts of README.md and docs/reproduce.md
    python tools/readme_numbers.py --table  # only the demo table: no timing (the times stay as they are)

Each measured part of a document sits between ``<!-- measured:NAME -->`` and ``<!-- /measured -->``; only
those parts are rewritten. A time is one process from start to exit (imports included, weights absent, on
whatever machine runs the script, which the text names), not a fresh clone and install.
``tests/test_readme_numbers.py`` recomputes the demo rows of the fast methods and checks the README against
them, and checks that every measured part reads as this script writes it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REPRODUCE_DOC = ROOT / "docs" / "reproduce.md"
MARKED = re.compile(r"<!-- measured:(?P<name>[\w-]+) -->(?P<body>.*?)<!-- /measured -->", re.S)
TIME_TEXT = re.compile(r"(?P<seconds>\d+) s on (?P<cores>\d+) CPU cores \((?P<cpu>[^();]*); load average "
                       r"(?P<load>\d+\.\d) at the start\), measured (?P<date>\d{4}-\d{2}-\d{2}) by "
                       r"`tools/readme_numbers.py`")
TABLE_METRICS = ("fg_nmi", "fg_ari", "nmi", "ari", "landmark_error")  # the README's columns


# -- the demo table --------------------------------------------------------------------------------------
def method_label(method: str, params: dict) -> str:
    """The README's row label: the method, and the preset and steps of a method that trains."""
    if "preset" not in params:
        return method
    from benchmark.core.registry import METHODS

    steps = params.get("steps")
    if steps is None:  # the preset's own number of steps
        steps = METHODS.get(method).train_presets().get(params["preset"], {}).get("steps")
    return f"{method} ({params['preset']} preset" + (f", {steps} steps)" if steps is not None else ")")


def demo_rows(runs_dir: str | Path) -> dict[str, list[str]]:
    """{row label: cells (x100, two decimals) of :data:`TABLE_METRICS`} of the demo's result rows."""
    from benchmark.report import tables
    from benchmark.results import load_results

    df = load_results([runs_dir])
    labels = {method: method_label(method, json.loads(params or "{}"))
              for method, params in df[["method", "method_params"]].drop_duplicates().itertuples(index=False)}
    (_, header, rows, _), = tables(df[df["metric"].isin(TABLE_METRICS)])
    columns = header[1:-1]  # without "Method" and "seeds"
    # tables() lists the rows track by track (none, fg-masks, class-labels), the README keeps that order
    return {labels[row[0]]: [row[1 + columns.index(title)] for title in ("Supervision", *_titles())] for row in rows}


def _titles() -> list[str]:
    from benchmark.report import METRIC_TITLES

    return [METRIC_TITLES[m] for m in TABLE_METRICS]


def render_table(rows: dict[str, list[str]]) -> str:
    """Markdown of the demo table (cells: the supervision track, then the metrics), the best value of each
    column in bold (lowest landmark error) within its supervision track only: methods that see foreground
    masks or class labels are not ranked against unsupervised ones."""
    from benchmark.report import LOWER_IS_BETTER

    best: dict[str, list[float]] = {}
    for track in {cells[0] for cells in rows.values()}:
        members = [cells[1:] for cells in rows.values() if cells[0] == track]
        best[track] = [(min if metric in LOWER_IS_BETTER else max)(float(cells[column]) for cells in members)
                       for column, metric in enumerate(TABLE_METRICS)]
    lines = ["| Method | Supervision | " + " | ".join(_titles()) + " |", "|:--|:--|" + "--:|" * len(TABLE_METRICS)]
    for label, (track, *cells) in rows.items():
        shown = [f"**{c}**" if float(c) == b else c for c, b in zip(cells, best[track])]
        lines.append(f"| {label} | {track} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def read_table(text: str) -> dict[str, list[str]]:
    """The rows of a rendered demo table (bold marks dropped): {label: cells}."""
    rows = {}
    for line in text.strip().splitlines()[2:]:
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


# -- times ----------------------------------------------------------------------------------------------
def machine() -> tuple[int, str]:
    """(CPU cores this process may use, CPU model)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    model = re.sub(r"\((R|TM|C)\)", "", model, flags=re.I)  # Intel(R) Xeon(R) -> Intel Xeon
    return cores, re.sub(r"[();]", "", re.sub(r"\s+", " ", model)).strip()


def render_time(seconds: float, cores: int, cpu: str, load: float, date: str) -> str:
    """How long a command took, where: the load average says whether other work shared the cores."""
    return (f"{seconds:.0f} s on {cores} CPU cores ({cpu}; load average {load:.1f} at the start), measured {date} "
            "by `tools/readme_numbers.py`")


def timed(args: list[str], scratch: Path) -> float:
    """Wall seconds of ``python -m benchmark ARGS`` in a fresh process (fails loudly), as on a new machine:
    an empty cache (``PARTBENCH_CACHE``) and no ImageNet weights (``TORCH_HOME``), so that the demo runs with
    the random weights the README describes."""
    env = {k: v for k, v in os.environ.items() if k != "PARTBENCH_ALLOW_DOWNLOAD"}
    env.update(PARTBENCH_CACHE=str(scratch / "cache"), TORCH_HOME=str(scratch / "torch"))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"`benchmark {' '.join(args)}` failed (exit status {done.returncode}):\n{done.stderr}")
    return seconds


# -- documents -----------------------------------------------------------------------------------------
def marked(text: str) -> dict[str, str]:
    return {m["name"]: m["body"] for m in MARKED.finditer(text)}


def replace_marked(text: str, values: dict[str, str]) -> str:
    def sub(match: re.Match) -> str:
        name = match["name"]
        body = values.get(name, match["body"])
        return f"<!-- measured:{name} -->{body}<!-- /measured -->"

    return MARKED.sub(sub, text)


def _write(path: Path, text: str) -> None:
    from benchmark.core.atomic import atomic_write_text

    atomic_write_text(path, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", action="store_true", help="only the demo table (no timing of reproduce)")
    args = parser.parse_args(argv)
    cores, cpu = machine()
    date = dt.date.today().isoformat()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > cores / 2:  # other work competes for the cores: the times would overstate a user's wait
        print(f"warning: load average {load:.1f} on {cores} cores: the machine is busy, the times will be too "
              "long; run this on an idle machine", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="readme-numbers.") as tmp:
        scratch = Path(tmp)
        demo_s = timed(["demo", "--out", str(scratch / "demo"), "-q"], scratch / "demo-env")
        table = "\n\n" + render_table(demo_rows(scratch / "demo" / "runs")) + "\n\n"
        readme = {"demo-table": table}
        if not args.table:
            readme["demo-time"] = render_time(demo_s, cores, cpu, load, date)
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
            reproduce_s = timed(["reproduce", "synthetic", "--out", str(scratch / "reproduce"), "-q"],
                                scratch / "reproduce-env")
            doc = REPRODUCE_DOC.read_text(encoding="utf-8")
            _write(REPRODUCE_DOC, replace_marked(doc, {"reproduce-time": render_time(reproduce_s, cores, cpu, load,
                                                                                     date)}))
    _write(README, replace_marked(README.read_text(encoding="utf-8"), readme))
    print(f"demo {demo_s:.0f} s" + ("" if args.table else f", reproduce synthetic {reproduce_s:.0f} s")
          + f" on {cores} CPU cores ({cpu}); README.md" + ("" if args.table else " and docs/reproduce.md")
          + " updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
