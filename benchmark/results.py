"""Result rows: the tidy format every run writes, and reading them back.

One row per (run, metric). Columns are documented in ``results/README.md``; values of clustering metrics
are fractions in [0, 1], ``landmark_error`` is a fraction of the protocol's normaliser. Files are CSV,
written atomically, one file per run.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable

from benchmark.core.atomic import atomic_write_text
from benchmark.core.errors import UserError

RESULT_COLUMNS = (
    "method", "dataset", "split", "view", "metric", "value", "n",
    "protocol", "masks", "ground_truth", "landmark_protocol", "num_parts", "seed",
    "method_params", "dataset_options", "transductive", "weights", "skipped_images",
    "git_sha", "git_dirty", "versions", "device", "wall_time_s", "started_at", "run_key",
)


def write_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in RESULT_COLUMNS})
    atomic_write_text(path, buffer.getvalue())


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of one result CSV with ``value``/``n``/``seed``/``num_parts`` parsed."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"method", "dataset", "metric", "value"} - set(reader.fieldnames or [])
            if missing:
                raise UserError(f"{path} is not a partbench result file (missing columns {sorted(missing)})")
            rows = list(reader)
    except OSError as exc:
        raise UserError(f"cannot read result file {path}: {exc.strerror or exc}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a readable CSV ({exc}); delete it and rerun") from None
    for row in rows:
        try:
            row["value"] = float(row["value"])
            for key in ("n", "seed", "num_parts", "skipped_images"):
                if row.get(key) not in (None, ""):
                    row[key] = int(row[key])
        except ValueError as exc:
            raise UserError(f"{path}: malformed value in a row ({exc}); delete the file and rerun") from None
    return rows


def find_result_files(paths: Iterable[str | Path]) -> list[Path]:
    """CSV result files named directly or found recursively below the given directories."""
    files: list[Path] = []
    for entry in paths:
        entry = Path(entry)
        if entry.is_dir():
            # A folder may also hold tables (e.g. `benchmark reproduce` output): only result files count.
            files.extend(sorted(p for p in entry.rglob("*.csv") if not p.name.startswith(".") and _is_result_file(p)))
        elif entry.is_file():
            files.append(entry)
        else:
            raise UserError(f"{entry} does not exist; pass result CSV files or directories holding them")
    if not files:
        raise UserError("no result files found; run `benchmark run ...` first or pass the --out directory it used")
    return files


def _is_result_file(path: Path) -> bool:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return True  # let read_rows name the problem
    return {"method", "dataset", "metric", "value", "run_key"} <= set(header)


def load_results(paths: Iterable[str | Path]):
    """All rows of the given result files/directories as a pandas DataFrame."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for file in find_result_files(paths):
        rows.extend(read_rows(file))
    if not rows:
        raise UserError("the result files hold no rows")
    return pd.DataFrame(rows)
