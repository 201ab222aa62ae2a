"""Reproduction tables of one experiment: each reproduced cell beside the published one with the
difference, legacy and corrected side by side.

One table per (dataset variant, mask source); one row per (method label, K); per metric one column per
protocol, each followed by ``paper`` and ``Δ`` (measured mean minus the published mean) where the table
has published numbers of that protocol's family (:mod:`benchmark.reproduce.published`: the paper's
numbers beside ``legacy``, the newer papers' beside ``whole-image``). Published methods the plan does not
run get rows of their own, ``<method> (published)``, with only their published cells.
Cells are x100, ``mean ± std`` (sample std over seeds) when the experiment has several seeds.
Written to ``<out>/tables/<experiment>.{csv,md,tex,json}`` (the JSON feeds the HTML report).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from benchmark import escaping as escape
from benchmark.core.atomic import atomic_write_text
from benchmark.core.protocol import PAPER_PROTOCOL
from benchmark.reproduce.graph import Settings, Step, ledger_dir
from benchmark.reproduce.published import PAPER_NOTE
from benchmark.report import METRIC_ORDER, METRIC_TITLES

MISSING = "–"


def _metric_order(metric: str) -> tuple:
    return (METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER), metric)


def _records(step: Step, settings: Settings) -> list[dict[str, Any]]:
    from benchmark.results import read_rows

    out = []
    for entry in step.spec["evaluations"]:
        record = json.loads((ledger_dir(settings) / entry["ledger"]).read_text())
        for row in read_rows(record["outputs"]["result"]):
            out.append({**row, "label": record["label"], "mask_source": record["mask_source"],
                        "dataset_label": entry["dataset_label"]})
    return out


def _matches(masks: str | None, source: str) -> bool:
    from benchmark.reproduce.published import Published

    return Published(0.0, None, "", masks).matches(source)


def _cell(values: list[float], decimals: int = 2) -> tuple[str, float | None, float | None]:
    if not values:
        return MISSING, None, None
    mean = 100 * statistics.fmean(values)
    if len(values) > 1:
        std = 100 * statistics.stdev(values)
        return f"{mean:.{decimals}f} ± {std:.{decimals}f}", mean, std
    return f"{mean:.{decimals}f}", mean, None


def _family(protocol: str) -> str:
    from benchmark.published import protocol_family

    return protocol_family(protocol)


def _paper_cells(paper: dict | None, mean: float | None) -> list[str]:
    """The ``paper`` and ``Δ`` cells beside one measured cell."""
    if not paper:
        return [MISSING, MISSING]
    text = f"{paper['mean']:.1f}" + (f" ± {paper['std']:.1f}" if paper["std"] is not None else "")
    return [text, f"{mean - paper['mean']:+.2f}" if mean is not None else MISSING]


def experiment_tables(step: Step, settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(tables for display, long rows for the CSV)."""
    spec = step.spec
    # An evaluation shared with another experiment may have scored more metrics: show this one's only.
    rows = [r for r in _records(step, settings) if not spec.get("metrics") or r["metric"] in spec["metrics"]]
    published = {tuple(k.split("|")): v for k, v in spec["published"].items()}
    # The protocol of the paper's numbers first, then the others; a protocol with published numbers of its
    # family gets paper and Δ columns after its own.
    protocols = sorted(spec["protocols"], key=lambda p: p != PAPER_PROTOCOL)
    tables, long_rows = [], []
    for dataset_label in dict.fromkeys(r["dataset_label"] for r in rows):
        for source in spec["masks"]:
            group = [r for r in rows if r["dataset_label"] == dataset_label and r["mask_source"] == source]
            if not group:
                continue
            dataset = group[0]["dataset"]
            metrics = sorted({r["metric"] for r in group}, key=_metric_order)
            families = {_family(p) for p in protocols}
            # Published numbers sit beside a method's cells only when computed with their kind of masks.
            usable = {k: v for k, v in published.items() if _matches(v.get("masks"), source)
                      and k[0] in spec["methods"]}
            # A published method the plan does not run gets its own rows (newer protocols only: the
            # paper's numbers belong to the paper's method, which every plan comparing with them runs).
            others = {k: v for k, v in published.items() if k[0] not in spec["methods"] and k[1] == dataset
                      and int(k[2]) in spec["num_parts"] and k[3] in metrics
                      and v.get("protocol", PAPER_PROTOCOL) != PAPER_PROTOCOL and v.get("protocol") in families}
            with_paper = {p for p in protocols
                          if any(v.get("protocol", PAPER_PROTOCOL) == _family(p) and k[1] == dataset
                                 and int(k[2]) in spec["num_parts"] and k[3] in metrics
                                 for k, v in (*usable.items(), *others.items()))}

            def paper_for(label: str, k: int, metric: str, protocol: str, numbers: dict) -> dict | None:
                number = numbers.get((label, dataset, str(k), metric))
                if number and number.get("protocol", PAPER_PROTOCOL) == _family(protocol):
                    return number
                return None

            header = ["Method", "Supervision"]  # methods of different supervision tracks are not alike
            for metric in metrics:
                title = METRIC_TITLES.get(metric, metric)
                for protocol in protocols:
                    header.append(f"{title} {protocol}")
                    if protocol in with_paper:
                        header += [f"{title} paper", "Δ"]
            header.append("seeds")
            body = []

            def long_row(label, track, k, metric, protocol, mean, std, seeds, paper):
                long_rows.append({
                    "experiment": spec["experiment"], "dataset": dataset_label, "masks": source,
                    "method": label, "supervision": track, "num_parts": k, "metric": metric, "protocol": protocol,
                    "mean": mean, "std": std, "seeds": seeds,
                    "published_mean": paper["mean"] if paper else None,
                    "published_std": paper["std"] if paper else None,
                    "difference": mean - paper["mean"] if paper and mean is not None else None,
                    "published_source": paper["source"] if paper else ""})

            for label in spec["methods"]:
                for k in spec["num_parts"]:
                    mine = [r for r in group if r["label"] == label and int(r["num_parts"]) == k]
                    if not mine:
                        continue
                    name = label if len(spec["num_parts"]) == 1 else f"{label}, K={k}"
                    track = next((r.get("supervision") for r in mine if r.get("supervision")), "") or "?"
                    cells = [name, track]
                    for metric in metrics:
                        for protocol in protocols:
                            values = [float(r["value"]) for r in mine if r["metric"] == metric and r["protocol"] == protocol]
                            text, mean, std = _cell(values)
                            cells.append(text)
                            paper = paper_for(label, k, metric, protocol, usable)
                            if protocol in with_paper:
                                cells += _paper_cells(paper, mean)
                            long_row(label, track, k, metric, protocol, mean, std, len(values), paper)
                    cells.append(str(len({int(r["seed"]) for r in mine})))
                    body.append(cells)
            for method in dict.fromkeys(key[0] for key in others):
                for k in spec["num_parts"]:
                    theirs = {key[3]: v for key, v in others.items() if key[0] == method and int(key[2]) == k}
                    if not theirs:
                        continue
                    name = f"{method} (published)" + ("" if len(spec["num_parts"]) == 1 else f", K={k}")
                    track = next(iter(theirs.values())).get("supervision") or "?"
                    cells = [name, track]
                    for metric in metrics:
                        for protocol in protocols:
                            cells.append(MISSING)
                            paper = paper_for(method, k, metric, protocol, others)
                            if protocol in with_paper:
                                cells += _paper_cells(paper, None)
                            if paper:
                                long_row(f"{method} (published)", track, k, metric, protocol, None, None, 0, paper)
                    cells.append("0")
                    body.append(cells)
            tables.append({"title": f"{spec['title']}: {dataset_label}, masks={source}", "header": header,
                           "rows": body, "experiment": spec["experiment"], "dataset": dataset_label,
                           "masks": source, "has_paper": bool(with_paper)})
    return tables, long_rows


def render_markdown(tables: list[dict[str, Any]], missing: list[str] = ()) -> str:
    from tabulate import tabulate

    parts = []
    if missing:  # blocked evaluations (run with --skip-blocked): say which cells are absent and why
        parts.append(f"Not computed ({len(missing)} blocked evaluations):\n\n" + "\n".join(f"- {m}" for m in missing))
    for table in tables:
        note = "Values x100; mean ± std over seeds."
        if table["has_paper"]:
            note += " " + PAPER_NOTE
        rows = [[escape.markdown(c) for c in row] for row in table["rows"]]  # plan text: no raw HTML
        parts.append(f"### {escape.markdown(table['title'])}\n\n{note}\n\n"
                     + tabulate(rows, headers=[escape.markdown(h) for h in table["header"]], tablefmt="pipe",
                                disable_numparse=True))
    return "\n\n".join(parts) + "\n"


def render_latex(tables: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    parts = []
    for table in tables:
        text = tabulate(table["rows"], headers=table["header"], tablefmt="latex_booktabs", disable_numparse=True)
        text = text.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("–", "--")
        caption = escape.latex(table["title"])  # tabulate escaped the cells; the caption is ours
        parts.append("\\begin{table}[t]\n\\centering\n\\resizebox{\\linewidth}{!}{%\n" + text + "}\n"
                     f"\\caption{{{caption}. Values $\\times$100, mean $\\pm$ std over seeds"
                     + ("; paper = published under the protocol of the column before it, $\\Delta$ = measured $-$ paper"
                        if table["has_paper"] else "")
                     + ".}\n\\end{table}")
    return "\n\n".join(parts) + "\n"


def render_csv(long_rows: list[dict[str, Any]]) -> str:
    import csv
    import io

    columns = ["experiment", "dataset", "masks", "method", "supervision", "num_parts", "metric", "protocol", "mean", "std", "seeds",
               "published_mean", "published_std", "difference", "published_source"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in long_rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) and not math.isnan(v) else ("" if v is None else v))
                         for k, v in row.items()})
    return buffer.getvalue()


def write_experiment_tables(step: Step, settings: Settings) -> list[Path]:
    tables, long_rows = experiment_tables(step, settings)
    folder = Path(settings.out_dir) / "tables"
    name = step.spec["experiment"]
    missing = step.spec.get("missing", [])
    files = {folder / f"{name}.md": render_markdown(tables, missing), folder / f"{name}.tex": render_latex(tables),
             folder / f"{name}.csv": render_csv(long_rows),
             folder / f"{name}.json": json.dumps({"tables": tables, "missing": missing}, indent=1, ensure_ascii=False)}
    for path, text in files.items():
        atomic_write_text(path, text)
    return list(files)
