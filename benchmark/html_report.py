"""``benchmark report --format html``: one self-contained HTML page for any folder of results.

The page holds, in order: the tables (a ``benchmark reproduce`` folder's reproduction tables, else the
mean ± std tables of :mod:`benchmark.report`), the qualitative figures found in the folder (PNGs at its top
and in ``figures/`` folders, embedded), mask quality (result rows of mask metrics, e.g. from ``benchmark masks score``), and provenance
(per step of a reproduction, else per run: git commit, weights, protocol, mask source, device, wall time and
GPU-hours). CSS is inline and images are base64 ``data:`` URIs: the page loads nothing from anywhere else,
so it can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any, Iterable

from benchmark.core.atomic import atomic_write_text
from benchmark.core.errors import UserError

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.3em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
td.best{font-weight:bold}.note{color:#666;font-size:.85em}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#444;font-size:.9em}.wide{overflow-x:auto}
"""
MASK_METRIC_PREFIXES = ("mask_", "iou", "precision", "recall")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(header: list[str], rows: list[list[str]], bold: list[list[bool]] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            best = bold is not None and bold[i][j]
            cells.append(f"<td class=\"best\">{_e(cell)}</td>" if best else f"<td>{_e(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class=\"wide\"><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def _png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _folders(paths: Iterable[str | Path]) -> list[Path]:
    out = []
    for entry in paths:
        entry = Path(entry)
        if not entry.exists():
            raise UserError(f"{entry} does not exist; pass result folders or CSV files")
        out.append(entry)
    return out


def _reproduction_tables(folder: Path) -> list[dict[str, Any]]:
    tables = []
    for path in sorted((folder / "tables").glob("*.json")) if folder.is_dir() else []:
        try:
            tables.extend(json.loads(path.read_text(encoding="utf-8"))["tables"])
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{path} is not a partbench table file ({exc}); rerun `benchmark reproduce`") from None
    return tables


def _step_records(folder: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted((folder / "steps").glob("*.json")) if folder.is_dir() else []:
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: (r.get("started_at", ""), r.get("id", "")))


def _setting_title(setting: dict[str, Any]) -> str:
    return (f"{setting['dataset']} ({setting['split']}), K={setting['num_parts']}, protocol={setting['protocol']}, "
            f"masks={setting['masks']}" + (f", {setting['options']}" if setting.get("options") else ""))


def _gpu_hours(device: str, wall: float) -> float:
    return wall / 3600 if str(device).startswith("cuda") else 0.0


def build_html(paths: Iterable[str | Path], title: str = "partbench results") -> str:
    import pandas as pd

    from benchmark.report import tables as summary_tables
    from benchmark.results import read_result_files

    folders = _folders(paths)
    # A folder may hold only reproduction tables; a damaged or duplicated result file is still refused.
    rows = read_result_files(folders, required=False)
    df = pd.DataFrame(rows) if rows else None
    mask_rows = df[df["metric"].astype(str).str.startswith(MASK_METRIC_PREFIXES)] if df is not None else None
    part_rows = df.drop(mask_rows.index) if df is not None else None
    reproduction = [t for folder in folders for t in _reproduction_tables(folder)]
    if not reproduction and (part_rows is None or part_rows.empty) and (mask_rows is None or mask_rows.empty):
        raise UserError(f"no results in {', '.join(map(str, folders))}: pass the --out folder of `benchmark run`, "
                        "`sweep`, `demo` or `reproduce`")

    out = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
           f"<style>{CSS}</style></head><body>", f"<h1>{_e(title)}</h1>",
           f"<p class=\"note\">Generated {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')} from "
           f"{_e(', '.join(str(f) for f in folders))}. Values x100; mean ± std over seeds.</p>"]

    out.append("<h2 id=\"tables\">Tables</h2>")
    if reproduction:
        for table in reproduction:
            out.append(f"<h3>{_e(table['title'])}</h3>")
            if table.get("has_paper"):
                from benchmark.reproduce.published import PAPER_NOTE

                out.append(f"<p class=\"note\">{_e(PAPER_NOTE)}</p>")
            out.append(_table(table["header"], table["rows"]))
    else:
        for setting, header, body, bold in summary_tables(part_rows):
            out.append(f"<h3>{_e(_setting_title(setting))}</h3>")
            out.append(_table(header, body, bold))

    out.append("<h2 id=\"figures\">Qualitative figures</h2>")
    # Figures sit at the top of a results folder (demo's overlays.png) or in figures/ folders; other PNGs
    # (e.g. a folder of predicted masks) are data, not figures.
    pngs = sorted({p for folder in folders if folder.is_dir()
                   for p in [*folder.glob("*.png"), *folder.rglob("figures/*.png")]})
    if pngs:
        out.append("<p class=\"note\">Columns: the test image, its ground truth, then each method's parts. Parts "
                   "are renumbered to the ground-truth part they overlap most, so one colour means one part.</p>")
        for path in pngs:
            out.append(f"<figure><img src=\"{_png(path)}\" alt=\"{_e(path.stem)}\">"
                       f"<figcaption>{_e(path.stem)}</figcaption></figure>")
    else:
        out.append("<p class=\"note\">No figures in this folder (`benchmark reproduce` and `benchmark demo` "
                   "write them).</p>")

    out.append("<h2 id=\"masks\">Mask quality</h2>")
    if mask_rows is not None and not mask_rows.empty:
        header = ["dataset", "split", "masks", "metric", "value x100", "n"]
        out.append(_table(header, [[r["dataset"], r.get("split", ""), r.get("masks", ""), r["metric"],
                                    f"{100 * float(r['value']):.2f}", r.get("n", "")] for _, r in mask_rows.iterrows()]))
    else:
        out.append("<p class=\"note\">No mask-quality rows in this folder.</p>")
    if part_rows is not None and not part_rows.empty and "masks" in part_rows:
        sources = part_rows.groupby("masks")["run_key"].nunique()
        out.append("<p class=\"note\">Mask source of the evaluations: "
                   + ", ".join(f"{_e(m)} ({n} runs)" for m, n in sources.items()) + ".</p>")

    out.append("<h2 id=\"provenance\">Provenance</h2>")
    out.extend(_provenance(folders, part_rows))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _provenance(folders: list[Path], rows) -> list[str]:
    out = []
    records = [r for folder in folders for r in _step_records(folder)]
    if records:
        total_wall = sum(float(r.get("wall_s", 0)) for r in records)
        total_gpu = sum(float(r.get("gpu_hours", 0)) for r in records)
        commits = sorted({f"{r.get('git_sha', '?')[:12]}{' (dirty)' if r.get('git_dirty') else ''}" for r in records})
        out.append(f"<p>Steps: {len(records)}; wall time {total_wall / 3600:.3f} h; GPU-hours {total_gpu:.3f}; "
                   f"code: {_e(', '.join(commits))}.</p>")
        header = ["step", "weights", "protocol", "masks", "device", "wall s", "GPU-h", "git commit", "finished"]
        out.append(_table(header, [[r.get("id", ""), r.get("weights", ""), r.get("protocol", ""),
                                    r.get("masks", ""), r.get("device", ""), f"{float(r.get('wall_s', 0)):.1f}",
                                    f"{float(r.get('gpu_hours', 0)):.4f}", str(r.get("git_sha", ""))[:12],
                                    r.get("started_at", "")] for r in records]))
    if rows is not None and not rows.empty:
        runs = rows.drop_duplicates("run_key")
        header = ["run", "method", "dataset", "K", "seed", "protocol", "masks", "weights", "git commit", "device",
                  "wall s", "GPU-h"]
        body = []
        for _, r in runs.iterrows():
            wall = float(r.get("wall_time_s") or 0)
            body.append([r["run_key"], r["method"], r["dataset"], r.get("num_parts", ""), r.get("seed", ""),
                         r.get("protocol", ""), r.get("masks", ""), r.get("weights", ""), str(r.get("git_sha", ""))[:12],
                         r.get("device", ""), f"{wall:.1f}", f"{_gpu_hours(str(r.get('device', '')), wall):.4f}"])
        out.append("<h3>Runs</h3>")
        out.append(_table(header, body))
    if not out:
        out.append("<p class=\"note\">No provenance records.</p>")
    return out


def write_html_report(paths: Iterable[str | Path], out_path: str | Path, title: str = "partbench results") -> Path:
    text = build_html(paths, title)
    atomic_write_text(out_path, text)
    return Path(out_path)
