"""Published numbers to compare with, read from the data file ``benchmark/published.csv``.

The file ships inside the package; one row per number, keyed by method, dataset, number of parts ``K``,
metric and evaluation protocol. Its columns:

========== ==========================================================================================
method     the method's name: a registered method (``ours``) or a published one (``pdisconet``)
supervision  its supervision track (``none``, ``fg-masks``, ``class-labels``; see ``Method.supervision``)
dataset    registered dataset name (``cub``, ``deepfashion``)
num_parts  K
metric     registered metric name (``fg_nmi``, ``fg_ari``, ``nmi``, ``ari``)
protocol   the evaluation protocol the number was computed under: the published tables come from the
           released evaluation notebooks, i.e. ``legacy``; the 2023-2025 papers' numbers come from
           their own evaluators, i.e. ``whole-image`` (spelt with the image size and crop they used)
mean_x100  the number as published (x100, as every table shows)
std_x100   standard deviation over seeds (empty for a single model)
seeds      number of trained models behind the number
label      which table: ``paper`` (the K sweep, one model per K), ``paper, 5 seeds`` (five trainings at
           K=4, mean and std), ``notebook`` (the released checkpoints scored by the released notebooks)
source     where the number comes from, in words
========== ==========================================================================================

Adding a published number (another method, another paper) is one line in the file; no code names a
method. :func:`published_results` is the public loader (used by ``benchmark report --with-paper``, and
meant for anything else that compares with published numbers).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

COLUMNS = ("method", "supervision", "dataset", "num_parts", "metric", "protocol", "mean_x100", "std_x100", "seeds", "label",
           "source")


@dataclass(frozen=True)
class PublishedResult:
    method: str
    dataset: str
    num_parts: int
    metric: str
    protocol: str
    mean_x100: float
    std_x100: float  # NaN for a single model
    seeds: int
    label: str
    source: str
    supervision: str = ""  # the method's supervision track (the file's second column)

    @property
    def row_label(self) -> str:
        """How the number is labelled in a table, e.g. ``ours (paper, 5 seeds)``."""
        return f"{self.method} ({self.label})"


@lru_cache(maxsize=1)
def _all() -> tuple[PublishedResult, ...]:
    text = resources.files("benchmark").joinpath("published.csv").read_text(encoding="utf-8")
    reader = csv.DictReader(text.splitlines())
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise RuntimeError(f"benchmark/published.csv: columns {reader.fieldnames} differ from {list(COLUMNS)}")
    rows = []
    for line, record in enumerate(reader, start=2):
        try:
            rows.append(PublishedResult(
                method=record["method"], supervision=record["supervision"], dataset=record["dataset"], num_parts=int(record["num_parts"]),
                metric=record["metric"], protocol=record["protocol"], mean_x100=float(record["mean_x100"]),
                std_x100=float(record["std_x100"]) if record["std_x100"] else math.nan,
                seeds=int(record["seeds"]), label=record["label"], source=record["source"]))
        except (TypeError, ValueError) as exc:
            raise RuntimeError(f"benchmark/published.csv line {line}: {exc}") from None
    return tuple(rows)


def published_results(*, method: str | None = None, dataset: str | None = None, num_parts: int | None = None,
                      metric: str | None = None, protocol: str | None = None,
                      label: str | None = None) -> list[PublishedResult]:
    """The published numbers matching every given key (``None`` = any), in file order."""
    wanted = {"method": method, "dataset": dataset, "num_parts": None if num_parts is None else int(num_parts),
              "metric": metric, "protocol": protocol, "label": label}
    return [row for row in _all()
            if all(value is None or getattr(row, key) == value for key, value in wanted.items())]


def protocol_family(protocol: str) -> str:
    """``"whole-image:518-crop"`` -> ``"whole-image"``: the newer papers evaluate at their own input sizes
    (their ``source`` says which), so their numbers sit beside every ``whole-image`` setting."""
    return str(protocol).split(":", 1)[0]


def published_table_rows(dataset: str, num_parts: int, protocol: str) -> list[dict]:
    """Pseudo summary rows (x100) for a report setting: ``label``, ``metric``, ``mean``, ``std``, ``seeds``
    (published under the setting's protocol family)."""
    return [{"label": row.row_label, "supervision": row.supervision, "metric": row.metric, "mean": row.mean_x100,
             "std": row.std_x100, "seeds": row.seeds}
            for row in published_results(dataset=dataset, num_parts=num_parts)
            if protocol_family(row.protocol) == protocol_family(protocol)]
