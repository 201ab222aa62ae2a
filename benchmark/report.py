"""Tables from result rows: mean +- std over seeds, method x metric, one table per setting, x100.

A *setting* is everything but the method and the seed that changes the numbers: dataset, split, protocol,
mask source, number of parts and the dataset options that differ between runs (e.g. the PASCAL-Part
category, so that runs on cars and on horses are never averaged together). Within a setting, one row per method (and parameter set, when a method
was run with several), one column per metric; cells show ``mean`` (one seed) or ``mean ± std`` (sample
standard deviation, ddof=1, over seeds) of the value x100; the best mean of each column is bold (highest,
or lowest for errors). The CSV format is the long form with every statistic.

Supervision tracks: every row shows the method's ``supervision`` (``none``, ``fg-masks``, ``class-labels``;
``?`` when unknown) and the bold best of a column is chosen *within* each track, so that a weakly
supervised method never outranks an unsupervised one in the same table, nor the reverse.

Protocols side by side (``protocols_side_by_side=True``, ``benchmark report --protocols-side-by-side``):
the protocol leaves the setting and joins the columns (``NMI [legacy]``, ``NMI [whole-image]`` ...), so
the numbers one trained model (one method with one parameter set, e.g. one ``--checkpoint``) gets under
both protocol families sit in one row.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmark import escaping as escape
from benchmark.core.atomic import atomic_write_text
from benchmark.core.errors import UserError

METRIC_ORDER = ("fg_nmi", "fg_ari", "nmi", "ari", "landmark_error", "fg_iou", "mask_iou", "mask_precision", "mask_recall")
METRIC_TITLES = {"fg_nmi": "FG-NMI", "fg_ari": "FG-ARI", "nmi": "NMI", "ari": "ARI",
                 "landmark_error": "Landmark error", "fg_iou": "FG IoU", "mask_iou": "Mask IoU", "mask_precision": "Mask precision",
                 "mask_recall": "Mask recall"}
LOWER_IS_BETTER = {"landmark_error"}
SETTING_COLUMNS = ("dataset", "split", "protocol", "masks", "num_parts", "options")
#: the supervision tracks in table order (benchmark.core.method.SUPERVISION_TRACKS), then unknown
TRACK_ORDER = ("none", "fg-masks", "class-labels", "?")
FORMATS = {"csv": "csv", "markdown": "md", "latex": "tex"}


def summarise(df) -> "Any":
    """Long table: one row per (setting, method label, metric) with mean, std, seeds and n (x100)."""

    df = df.copy()
    df["options"] = _dataset_variants(df)
    df["label"] = _method_labels(df)
    supervision = df["supervision"] if "supervision" in df.columns else None
    df["supervision"] = "?" if supervision is None else supervision.fillna("").astype(str).replace("", "?")
    keys = list(SETTING_COLUMNS) + ["supervision", "label", "metric"]
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
    base, protocol = _split_metric(metric)
    return (protocol, METRIC_ORDER.index(base) if base in METRIC_ORDER else len(METRIC_ORDER), base)


def _split_metric(metric: str) -> tuple[str, str]:
    """``"nmi [whole-image]"`` -> ``("nmi", "whole-image")``; ``"nmi"`` -> ``("nmi", "")``."""
    base, _, rest = str(metric).partition(" [")
    return base, rest.rstrip("]")


def _metric_title(metric: str) -> str:
    base, protocol = _split_metric(metric)
    return METRIC_TITLES.get(base, base) + (f" [{protocol}]" if protocol else "")


def protocols_side_by_side(df) -> "Any":
    """The rows with each metric renamed ``metric [protocol]`` and the protocol column holding every
    protocol of the rows, so that :func:`tables` puts the protocols of one model side by side."""
    from benchmark.core.protocol import PROTOCOL_NAMES

    df = df.copy()
    protocols = sorted(df["protocol"].astype(str).unique(),
                       key=lambda p: (PROTOCOL_NAMES.index(p.split(":")[0]) if p.split(":")[0] in PROTOCOL_NAMES
                                      else len(PROTOCOL_NAMES), p))
    df["metric"] = df["metric"].astype(str) + " [" + df["protocol"].astype(str) + "]"
    df["protocol"] = " + ".join(protocols)
    return df


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


def tables(df, decimals: int = 2, with_paper: bool = False, side_by_side: bool = False
           ) -> list[tuple[dict[str, Any], list[str], list[list[str]], list[list[bool]]]]:
    """For each setting: (setting, header, rows of cell texts, bold flags). ``with_paper`` adds the
    published numbers of the same setting (dataset, K, protocol; see :mod:`benchmark.published`);
    ``side_by_side``: the protocols as columns (:func:`protocols_side_by_side`)."""
    if side_by_side:
        if with_paper:
            raise UserError("--with-paper needs one protocol per table; leave out --protocols-side-by-side")
        df = protocols_side_by_side(df)
    summary = summarise(df)
    published: set[str] = set()
    if with_paper:
        summary, published = _add_paper_rows(summary)
    result = []
    for setting_values, group in summary.groupby(list(SETTING_COLUMNS), sort=False, dropna=False):
        setting = dict(zip(SETTING_COLUMNS, setting_values))
        metrics = sorted(group["metric"].unique(), key=_sort_key)
        tracks = dict(zip(group["label"], group["supervision"].astype(str)))
        labels = sorted(dict.fromkeys(group["label"]), key=lambda l: _track_rank(tracks[l]))
        header = ["Method", "Supervision", *[_metric_title(m) for m in metrics], "seeds"]
        by_key = {(r.label, r.metric): r for r in group.itertuples()}
        best = {}
        for metric in metrics:
            # Published numbers are shown for reference but do not compete for bold; methods compete
            # only within their supervision track.
            for track in set(tracks.values()):
                means = [by_key[(l, metric)].mean for l in labels
                         if (l, metric) in by_key and l not in published and tracks[l] == track]
                lower = _split_metric(metric)[0] in LOWER_IS_BETTER
                best[metric, track] = ((min if lower else max)(means), len(means)) if means else (None, 0)
        rows, bold = [], []
        for label in labels:
            cells, flags = [label, tracks[label]], [False, False]
            seeds = 0
            for metric in metrics:
                record = by_key.get((label, metric))
                if record is None:
                    cells.append("–")
                    flags.append(False)
                    continue
                seeds = max(seeds, int(record.seeds))
                cells.append(_cell(record.mean, record.std, int(record.seeds), decimals))
                top, rivals = best[metric, tracks[label]]
                flags.append(rivals > 1 and record.mean == top and label not in published)
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
    for row in extra:
        row["supervision"] = row.get("supervision") or "?"
    return pd.concat([summary, pd.DataFrame(extra)], ignore_index=True), {row["label"] for row in extra}


def _title(setting: dict[str, Any]) -> str:
    return (f"{setting['dataset']} ({setting['split']}), K={setting['num_parts']}, protocol={setting['protocol']}, "
            f"masks={setting['masks']}" + (f", {setting['options']}" if setting.get("options") else ""))


def _track_rank(track: str) -> int:
    return TRACK_ORDER.index(track) if track in TRACK_ORDER else len(TRACK_ORDER)


def render(df, fmt: str = "markdown", decimals: int = 2, with_paper: bool = False,
           side_by_side: bool = False) -> str:
    """The report in ``csv``, ``markdown`` or ``latex`` (``with_paper``: add the published numbers;
    ``side_by_side``: protocols as columns)."""
    from tabulate import tabulate

    if fmt not in FORMATS:
        raise UserError(f"unknown report format {fmt!r}; use csv, markdown or latex")
    if fmt == "csv":
        return summarise(protocols_side_by_side(df) if side_by_side else df).to_csv(index=False, float_format="%.4f")
    parts = []
    for setting, header, rows, bold in tables(df, decimals, with_paper, side_by_side):
        if fmt == "markdown":
            # Labels, folders and options are user text: no raw HTML reaches the rendered page.
            body = [[f"**{escape.markdown(c)}**" if b else escape.markdown(c) for c, b in zip(row, flags)]
                    for row, flags in zip(rows, bold)]
            parts.append(f"### {escape.markdown(_title(setting))}\n\nValues x100; mean ± std over seeds; bold: best "
                         "within a supervision track.\n\n"
                         + tabulate(body, headers=[escape.markdown(h) for h in header], tablefmt="pipe",
                                    disable_numparse=True))
        else:
            # tabulate escapes LaTeX specials; mark bold/± with placeholders that survive escaping.
            body = [[f"BOLDOPEN{c}BOLDCLOSE" if b else c for c, b in zip(row, flags)] for row, flags in zip(rows, bold)]
            # Names and supervision tracks left-aligned, numbers right-aligned (seeds, last, is a number too).
            text = tabulate(body, headers=header, tablefmt="latex_booktabs", disable_numparse=True,
                            colalign=("left", "left") + ("right",) * (len(header) - 2))
            text = (text.replace("BOLDOPEN", r"\textbf{").replace("BOLDCLOSE", "}")
                    .replace("±", r"$\pm$"))
            caption = escape.latex(_title(setting))  # tabulate escaped the cells; the caption is ours
            parts.append("\\begin{table}[t]\n\\centering\n" + text +
                         f"\n\\caption{{{caption}. Values $\\times$100, mean $\\pm$ std over seeds; bold: best "
                         f"within a supervision track.}}\n\\end{{table}}")
    return "\n\n".join(parts) + "\n"


def write_report(df, out_dir: str | Path, name: str = "results", formats=("csv", "markdown", "latex"),
                 decimals: int = 2, with_paper: bool = False, side_by_side: bool = False) -> list[Path]:
    """Write the report in every format; all are rendered before the first is written, so that an error
    leaves no partial set of tables."""
    texts = {fmt: render(df, fmt, decimals, with_paper, side_by_side) for fmt in formats}
    written = []
    for fmt, text in texts.items():
        path = Path(out_dir) / f"{name}.{FORMATS[fmt]}"
        atomic_write_text(path, text)
        written.append(path)
    return written
