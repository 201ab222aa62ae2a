"""Result rows: the tidy format every run writes, and reading them back.

One row per (run, metric). Columns are documented in ``results/README.md``; values of clustering metrics
are fractions in [0, 1], ``landmark_error`` is a fraction of the protocol's normaliser. Files are CSV,
written atomically, one file per run. The last column, ``row_of``, holds ``i/N`` on the i-th of the file's
N rows: a file cut in the middle of a row, or missing rows, is damaged and refused by name.
"""

from __future__ import annotations

import csv
import io
import math
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


#: What makes a result row one number of one run: a second row with the same values would be averaged in
#: as if it were another seed (a copied file, a re-run under another output folder).
RUN_IDENTITY = ("method", "method_params", "dataset", "dataset_options", "split", "view", "protocol", "masks",
                "train_masks", "ground_truth", "landmark_protocol", "num_parts", "seed", "weights", "metric")


def run_identity(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(row.get(column, "")) for column in RUN_IDENTITY)


def _damaged(path: Path, why: str) -> UserError:
    return UserError(f"damaged result file {path}: {why}; delete it and run the command that wrote it again")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of one result CSV with ``value``/``n``/``seed``/``num_parts`` parsed. The file must be complete:
    every row has every column and the ``row_of`` column counts 1/N .. N/N (a file cut in the middle of a
    row, or missing rows, is refused by name)."""
    path = Path(path)
    try:
        # utf-8-sig: a file saved by a spreadsheet (Excel) starts with a byte-order mark; it is legal CSV.
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UserError(f"cannot read result file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise _damaged(path, f"not UTF-8 text ({exc.reason})") from None
    if "\0" in text:
        raise _damaged(path, "it holds NUL bytes (binary, not a CSV)")
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
    seen: dict[tuple, int] = {}  # run_identity -> line
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
        _check_value(path, line, row["metric"], row["value"])
        identity = run_identity(row)
        if identity in seen:
            raise _damaged(path, f"line {line} repeats {row['metric']} of line {seen[identity]} (one row per metric "
                                 "and run; it would be averaged in twice)")
        seen[identity] = line
        del row[COMPLETENESS_COLUMN]
    return rows


def metric_range(metric: str) -> tuple[float, float]:
    """The closed interval a value of ``metric`` lies in: the registered metric's ``value_range``, the
    mask-quality ratios' [0, 1], and any finite number for a metric not installed here."""
    from benchmark.core.errors import UnknownNameError
    from benchmark.core.registry import METRICS
    from benchmark.metrics.mask_quality import MaskScore

    if metric in MaskScore.metrics:
        return MaskScore.value_range
    try:
        return METRICS.get(metric).value_range
    except UnknownNameError:
        return (-math.inf, math.inf)


# Room for rounding in the last bits of a stored value (an NMI of 1 computed as 1.0000000000000002).
_RANGE_TOLERANCE = 1e-9


def _check_value(path: Path, line: int, metric: str, value: float) -> None:
    if not math.isfinite(value):
        raise _damaged(path, f"line {line}: {metric} is {value}, not a number a metric can take")
    low, high = metric_range(metric)
    if not low - _RANGE_TOLERANCE <= value <= high + _RANGE_TOLERANCE:
        raise _damaged(path, f"line {line}: {metric} = {value} is outside its range [{low}, {high}]")


def is_result_file(path: Path) -> bool:
    """Whether ``path`` starts with the result header (other CSVs in a folder, such as the tables
    ``report`` writes or training loss logs, are not result files). A file that is not CSV text at all
    (empty, or binary) cannot be told apart from a damaged result file and is refused by name."""
    try:
        with open(path, "rb") as handle:
            first_line = handle.readline(1 << 16)
    except OSError:
        return True  # let read_rows name the problem
    why = None
    if not first_line.strip():
        why = "it is empty"
    elif b"\0" in first_line:
        why = "it holds NUL bytes (binary)"
    else:
        try:
            header = first_line.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            why = f"not UTF-8 text ({exc.reason})"
    if why:
        raise UserError(f"{path} is not a CSV file: {why}; delete it or move it out of the folder, then run "
                        "the command again")
    return header.startswith("method,dataset,")


def find_result_files(paths: Iterable[str | Path], required: bool = True) -> list[Path]:
    """CSV result files named directly, or found recursively below the given directories (there, CSVs
    that are not result files, e.g. tables written by ``report``, are left out). A file reached twice
    (overlapping arguments) is listed once. ``required``: finding none is an error."""
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
    if not files and required:
        raise UserError("no result files found; run `benchmark run ...` first or pass the --out directory it used")
    unique: dict[Path, Path] = {}
    for file in files:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


def read_result_files(paths: Iterable[str | Path], required: bool = True) -> list[dict[str, Any]]:
    """All rows of the given result files/directories, each file used once and each run once: two files
    with the same run key, or holding the same metric of the same run and seed, are refused by name."""
    rows: list[dict[str, Any]] = []
    owner_of_key: dict[str, Path] = {}
    owner_of_number: dict[tuple, Path] = {}
    for file in find_result_files(paths, required):
        file_rows = read_rows(file)
        keys = {row.get("run_key") for row in file_rows} - {None, ""}
        for key in keys:
            if key in owner_of_key:
                raise UserError(f"{owner_of_key[key]} and {file} hold the same run (run key {key}): one is a copy; "
                                "delete one of them (or pass only one folder), then run the command again")
            owner_of_key[key] = file
        for row in file_rows:
            identity = run_identity(row)
            if identity in owner_of_number:
                raise UserError(f"{owner_of_number[identity]} and {file} both hold {row['metric']} of "
                                f"{row['method']} seed {row.get('seed')} on {row['dataset']} with the same "
                                "settings: it would count twice; delete one of them, then run the command again")
            owner_of_number[identity] = file
        rows.extend(file_rows)
    return rows


def load_results(paths: Iterable[str | Path]):
    """All rows of the given result files/directories (see :func:`read_result_files`) as a DataFrame."""
    import pandas as pd

    rows = read_result_files(paths)
    if not rows:
        raise UserError("the result files hold no rows")
    return pd.DataFrame(rows)


def build_rows(fields: dict[str, Any], metrics: Iterable[dict[str, Any]], *, device: str, wall: float,
               started: Any) -> list[dict[str, Any]]:
    """The one builder of result rows (``run`` and ``masks score``): the job's ``fields`` (method, dataset,
    split, protocol, masks, run key, ...), one ``metrics`` entry per row (``metric``, ``value``, ``n``,
    ``view``, ...), and the provenance every row carries (code version, package versions, the device,
    wall time and start). Columns in :data:`RESULT_COLUMNS` order; a column nobody set is empty."""
    from benchmark.provenance import device_description, git_state, package_versions

    sha, dirty = git_state()
    provenance = {"git_sha": sha, "git_dirty": dirty, "versions": _json(package_versions()),
                  "device": device_description(device), "wall_time_s": round(wall, 3),
                  "started_at": started.isoformat(timespec="seconds")}
    return [{column: row.get(column, "") for column in RESULT_COLUMNS if column != COMPLETENESS_COLUMN}
            for row in ({**fields, **provenance, **metric} for metric in metrics)]


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)
