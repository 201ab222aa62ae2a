"""Result rows: the tidy format every run writes, and reading them back.

One row per (run, metric). Columns are documented in ``results/README.md``; values of clustering metrics
are fractions in [0, 1], ``landmark_error`` is a fraction of the protocol's normaliser. Files are CSV,
written atomically, one file per run. The last column, ``row_of``, holds ``i/N`` on the i-th of the file's
N rows: a file cut in the middle of a row, or missing rows, is damaged and refused by name.
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
    "protocol", "masks", "train_masks", "supervision", "ground_truth", "landmark_protocol", "num_parts", "seed",
    "method_params", "dataset_options", "transductive", "weights", "skipped_images",
    "git_sha", "git_dirty", "versions", "device", "wall_time_s", "started_at", "run_key", "row_of",
)


COMPLETENESS_COLUMN = "row_of"  # the last column: "i/N" on the i-th of N rows


def write_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write one run's rows; the last column ``row_of`` holds ``i/N`` on the i-th of N rows, which
    :func:`read_rows` checks, so that a cut or hand-edited file is refused instead of tabled."""
    rows = list(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for number, row in enumerate(rows, start=1):
        writer.writerow({**{k: row.get(k, "") for k in RESULT_COLUMNS}, COMPLETENESS_COLUMN: f"{number}/{len(rows)}"})
    atomic_write_text(path, buffer.getvalue())


def _damaged(path: Path, why: str) -> UserError:
    return UserError(f"damaged result file {path}: {why}; delete it and run the command that wrote it again")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of one result CSV with ``value``/``n``/``seed``/``num_parts`` parsed. The file must be complete:
    every row has every column and the ``row_of`` column counts 1/N .. N/N (a file cut in the middle of a
    row, or missing rows, is refused by name)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read result file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise _damaged(path, f"not UTF-8 text ({exc.reason})") from None
    try:
        reader = csv.DictReader(io.StringIO(text), restkey="_extra")
        fields = reader.fieldnames or []
        missing = {"method", "dataset", "metric", "value"} - set(fields)
        if missing:
            raise UserError(f"{path} is not a partbench result file (missing columns {sorted(missing)})")
        rows = list(reader)
    except csv.Error as exc:
        raise _damaged(path, f"not a readable CSV ({exc})") from None
    if COMPLETENESS_COLUMN not in fields:
        raise _damaged(path, f"no {COMPLETENESS_COLUMN!r} column to check it is complete (written by an older "
                             "partbench?)")
    if not rows:
        raise _damaged(path, "it holds no rows")
    for number, row in enumerate(rows, start=1):
        line = number + 1
        if "_extra" in row or any(row.get(column) is None for column in fields):
            raise _damaged(path, f"line {line} has the wrong number of fields (cut short?)")
        if row[COMPLETENESS_COLUMN] != f"{number}/{len(rows)}":
            raise _damaged(path, f"line {line} says it is row {row[COMPLETENESS_COLUMN]!r} but the file holds "
                                 f"{len(rows)} rows (cut short or edited)")
        try:
            row["value"] = float(row["value"])
            for key in ("n", "seed", "num_parts", "skipped_images"):
                if row.get(key) not in (None, ""):
                    row[key] = int(row[key])
        except ValueError as exc:
            raise _damaged(path, f"line {line}: malformed value ({exc})") from None
        del row[COMPLETENESS_COLUMN]
    return rows


def is_result_file(path: Path) -> bool:
    """Whether ``path`` starts with the result header (other CSVs in a folder, such as the tables
    ``report`` writes or training loss logs, are not result files)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            header = handle.readline()
    except OSError:
        return True  # let read_rows name the problem
    return header.startswith("method,dataset,")


def find_result_files(paths: Iterable[str | Path]) -> list[Path]:
    """CSV result files named directly, or found recursively below the given directories (there, CSVs
    that are not result files, e.g. tables written by ``report``, are left out)."""
    files: list[Path] = []
    for entry in paths:
        entry = Path(entry)
        if entry.is_dir():
            # A folder may also hold tables (e.g. `report` or `reproduce` output): only result files count.
            files.extend(sorted(p for p in entry.rglob("*.csv") if not p.name.startswith(".") and is_result_file(p)))
        elif entry.is_file():
            files.append(entry)
        else:
            raise UserError(f"{entry} does not exist; pass result CSV files or directories holding them")
    if not files:
        raise UserError("no result files found; run `benchmark run ...` first or pass the --out directory it used")
    return files


def load_results(paths: Iterable[str | Path]):
    """All rows of the given result files/directories as a pandas DataFrame."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for file in find_result_files(paths):
        rows.extend(read_rows(file))
    if not rows:
        raise UserError("the result files hold no rows")
    return pd.DataFrame(rows)
