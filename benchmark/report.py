"""Tables from result rows: mean +- std over seeds, method x metric, one table per setting, x100.

A *setting* is everything but the method and the seed that changes the numbers: dataset, split, protocol,
mask source, number of parts and the dataset options that differ between runs (e.g. the PASCAL-Part
category, so that runs on cars and on horses are never averaged together). Within a setting, one row per method (and parameter set, when a method
was run with several), one column per metric; cells show ``mean`` (one seed) or ``mean ± std`` (sample
standard deviation, ddof=1, over seeds) of the value x100; the best mean of each column is bold (highest,
or lowest for errors). The CSV format is the long form with every statistic.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmark import escaping as escape
from benchmark.core.atomic import atomic_write_text
from benchmark.core.errors import UserError

METRIC_ORDER = ("fg_nmi", "fg_ari", "nmi", "ari", "landmark_error", "mask_iou", "mask_precision", "mask_recall")
METRIC_TITLES = {"fg_nmi": "FG-NMI", "fg_ari": "FG-ARI", "nmi": "NMI", "ari": "ARI",
                 "landmark_error": "Landmark error", "mask_iou": "Mask IoU", "mask_precision": "Mask precision",
                 "mask_recall": "Mask recall"}
LOWER_IS_BETTER = {"landmark_error"}
SETTING_COLUMNS = ("dataset", "split", "protocol", "masks", "num_parts", "options")
FORMATS = {"csv": "csv", "markdown": "md", "latex": "tex"}


def summarise(df) -> "Any":
    """Long table: one row per (setting, method label, metric) with mean, std, seeds and n (x100)."""

    df = df.copy()
    df["options"] = _dataset_variants(df)
    df["label"] = _method_labels(df)
    keys = list(SETTING_COLUMNS) + ["label", "metric"]
    for key in keys:
        if key not in df.columns:
            df[key] = ""
    grouped = df.groupby(keys, sort=False, dropna=False)
    out = grouped.agg(mean=("value", "mean"), std=("value", "std"), seeds=("seed", "nunique"),
                      n=("n", "mean")).reset_index()
    out["mean"] = out["mean"] * 100.0
    out["std"] = out["std"] * 100.0
    out["n"] = out["n"].round().astype("Int64")
    return out.sort_values(keys, key=lambda s: s.map(_sort_key) if s.name == "metric" else s, kind="stable")


def _sort_key(metric: str) -> Any:
    return (METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER), metric)


def _differing(values) -> dict[str, str]:
    """JSON parameter texts -> for each, ``k=v, ...`` over the keys whose values differ among them."""
    parsed = {v: json.loads(v) if isinstance(v, str) and v else {} for v in values}
    differing = sorted({k for p in parsed.values() for k in p
                        if len({json.dumps(q.get(k), sort_keys=True) for q in parsed.values()}) > 1})
    return {v: ", ".join(f"{k}={parsed[v].get(k)}" for k in differing) for v in values}


def _dataset_variants(df) -> "Any":
    """Per row, the dataset options that differ between the runs of one dataset/split/protocol/masks/K
    (empty when they all agree), so that such runs land in separate tables."""
    import pandas as pd

    out = pd.Series("", index=df.index, dtype=object)
    if "dataset_options" not in df.columns:
        return out
    base = [c for c in SETTING_COLUMNS if c != "options" and c in df.columns]
    options = df["dataset_options"].fillna("").astype(str)
    for _, group in options.groupby([df[c] for c in base], dropna=False):
        variants = group.unique()
        if len(variants) > 1:
            texts = _differing(variants)
            out.loc[group.index] = group.map(texts)
    return out


def _method_labels(df) -> "Any":
    """The method name, plus the parameters that differ between runs of the same method in a setting."""
    labels = df["method"].astype(str).copy()
    if "method_params" not in df.columns:
        return labels
    setting = [c for c in SETTING_COLUMNS if c in df.columns]
    for _, group in df.groupby(setting + ["method"], dropna=False):
        variants = group["method_params"].unique()
        if len(variants) < 2:
            continue
        texts = _differing(variants)
        for variant in variants:
            text = texts[variant]
            labels.loc[group.index[group["method_params"] == variant]] = f"{group['method'].iloc[0]} ({text})"
    return labels


def _cell(mean: float, std: float, seeds: int, decimals: int) -> str:
    if seeds > 1 and std == std and not math.isnan(std):
        return f"{mean:.{decimals}f} ± {std:.{decimals}f}"
    return f"{mean:.{decimals}f}"


def tables(df, decimals: int = 2, with_paper: bool = False
           ) -> list[tuple[dict[str, Any], list[str], list[list[str]], list[list[bool]]]]:
    """For each setting: (setting, header, rows of cell texts, bold flags). ``with_paper`` adds the
    published numbers of the same setting (dataset, K, protocol; see :mod:`benchmark.published`)."""
    summary = summarise(df)
    published: set[str] = set()
    if with_paper:
        summary, published = _add_paper_rows(summary)
    result = []
    for setting_values, group in summary.groupby(list(SETTING_COLUMNS), sort=False, dropna=False):
        setting = dict(zip(SETTING_COLUMNS, setting_values))
        metrics = sorted(group["metric"].unique(), key=_sort_key)
        labels = list(dict.fromkeys(group["label"]))
        header = ["Method", *[METRIC_TITLES.get(m, m) for m in metrics], "seeds"]
        by_key = {(r.label, r.metric): r for r in group.itertuples()}
        best = {}
        for metric in metrics:
            # Published numbers are shown for reference but do not compete for bold.
            means = [by_key[(l, metric)].mean for l in labels if (l, metric) in by_key and l not in published]
            best[metric] = (min if metric in LOWER_IS_BETTER else max)(means) if means else None
        rows, bold = [], []
        for label in labels:
            cells, flags = [label], [False]
            seeds = 0
            for metric in metrics:
                record = by_key.get((label, metric))
                if record is None:
                    cells.append("–")
                    flags.append(False)
                    continue
                seeds = max(seeds, int(record.seeds))
                cells.append(_cell(record.mean, record.std, int(record.seeds), decimals))
                flags.append(len(labels) > 1 and record.mean == best[metric] and label not in published)
            cells.append(str(seeds))
            flags.append(False)
            rows.append(cells)
            bold.append(flags)
        result.append((setting, header, rows, bold))
    return result


def _add_paper_rows(summary):
    """The summary plus the published numbers of each setting, and the labels of those rows."""
    import pandas as pd

    from benchmark.published import published_table_rows

    extra = []
    settings = summary[list(SETTING_COLUMNS)].drop_duplicates()
    for setting in settings.to_dict("records"):
        for row in published_table_rows(setting["dataset"], int(setting["num_parts"]), setting["protocol"]):
            extra.append({**setting, "n": pd.NA, **row})
    if not extra:
        return summary, set()
    return pd.concat([summary, pd.DataFrame(extra)], ignore_index=True), {row["label"] for row in extra}


def _title(setting: dict[str, Any]) -> str:
    return (f"{setting['dataset']} ({setting['split']}), K={setting['num_parts']}, protocol={setting['protocol']}, "
            f"masks={setting['masks']}" + (f", {setting['options']}" if setting.get("options") else ""))


def render(df, fmt: str = "markdown", decimals: int = 2, with_paper: bool = False) -> str:
    """The report in ``csv``, ``markdown`` or ``latex`` (``with_paper``: add the published numbers)."""
    from tabulate import tabulate

    if fmt not in FORMATS:
        raise UserError(f"unknown report format {fmt!r}; use csv, markdown or latex")
    if fmt == "csv":
        return summarise(df).to_csv(index=False, float_format="%.4f")
    parts = []
    for setting, header, rows, bold in tables(df, decimals, with_paper):
        if fmt == "markdown":
            # Labels, folders and options are user text: no raw HTML reaches the rendered page.
            body = [[f"**{escape.markdown(c)}**" if b else escape.markdown(c) for c, b in zip(row, flags)]
                    for row, flags in zip(rows, bold)]
            parts.append(f"### {escape.markdown(_title(setting))}\n\nValues x100; mean ± std over seeds.\n\n"
                         + tabulate(body, headers=[escape.markdown(h) for h in header], tablefmt="pipe",
                                    disable_numparse=True))
        else:
            # tabulate escapes LaTeX specials; mark bold/± with placeholders that survive escaping.
            body = [[f"BOLDOPEN{c}BOLDCLOSE" if b else c for c, b in zip(row, flags)] for row, flags in zip(rows, bold)]
            # Names left-aligned, numbers right-aligned (the last column, seeds, is a number too).
            text = tabulate(body, headers=header, tablefmt="latex_booktabs", disable_numparse=True,
                            colalign=("left",) + ("right",) * (len(header) - 1))
            text = (text.replace("BOLDOPEN", r"\textbf{").replace("BOLDCLOSE", "}")
                    .replace("±", r"$\pm$"))
            caption = escape.latex(_title(setting))  # tabulate escaped the cells; the caption is ours
            parts.append("\\begin{table}[t]\n\\centering\n" + text +
                         f"\n\\caption{{{caption}. Values $\\times$100, mean $\\pm$ std over seeds.}}\n\\end{{table}}")
    return "\n\n".join(parts) + "\n"


def write_report(df, out_dir: str | Path, name: str = "results", formats=("csv", "markdown", "latex"),
                 decimals: int = 2, with_paper: bool = False) -> list[Path]:
    """Write the report in every format; all are rendered before the first is written, so that an error
    leaves no partial set of tables."""
    texts = {fmt: render(df, fmt, decimals, with_paper) for fmt in formats}
    written = []
    for fmt, text in texts.items():
        path = Path(out_dir) / f"{name}.{FORMATS[fmt]}"
        atomic_write_text(path, text)
        written.append(path)
    return written
