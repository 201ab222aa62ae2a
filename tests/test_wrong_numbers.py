"""Issue 23, "wrong numbers with exit 0": each case below printed a number, or took bad input, and exited 0.

`report` over garbage, empty, BOM-prefixed, copied or repeated result files and impossible values; `export`
into a folder holding an older export; degenerate saved probability maps; CUB/PASCAL annotations that
`data check` passed but that dropped images or moved landmarks.
"""

from __future__ import annotations

import pytest

from benchmark.results import RESULT_COLUMNS, read_rows, write_rows
from helpers import invoke, one_error_line


# -- report ---------------------------------------------------------------------------------------------
def _run_rows(seed, values=None, key=None):
    values = values or {"fg_nmi": 0.40 + seed / 10, "ari": 0.9, "landmark_error": 0.1}
    common = {"method": "kmeans", "dataset": "synthetic", "split": "test", "protocol": "corrected", "masks": "gt",
              "num_parts": 4, "seed": seed, "n": 100, "method_params": '{"num_parts": 4}',
              "dataset_options": "{}", "run_key": key or f"key{seed}"}
    return [{**common, "metric": metric, "value": value} for metric, value in values.items()]


def _two_seeds(tmp_path):
    runs = tmp_path / "runs" / "synthetic" / "kmeans"
    runs.mkdir(parents=True)
    for seed in (0, 1):
        write_rows(runs / f"seed{seed}-key{seed}.csv", _run_rows(seed))
    return runs


def _report(tmp_path):
    return invoke("report", tmp_path / "runs", "--out", tmp_path / "tables", "--format", "csv")


def test_report_of_two_seeds_is_the_baseline(tmp_path):
    _two_seeds(tmp_path)
    result = _report(tmp_path)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "tables" / "results.csv").read_text()
    assert "fg_nmi,45.0000,7.0711,2,100" in text


@pytest.mark.parametrize("content, why", [(b"", "it is empty"), (b"\n\n", "it is empty"),
                                          (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8"),
                                          (b"method\x00\x00\x01\n", "NUL bytes"),
                                          (b"\xff\xfe\xfa garbage\n", "not UTF-8")])
def test_report_names_and_refuses_a_csv_that_is_not_text(tmp_path, content, why):
    runs = _two_seeds(tmp_path)
    bad = runs / "seed2-key2.csv"
    bad.write_bytes(content)
    one_error_line(_report(tmp_path), str(bad), why)
    assert not (tmp_path / "tables").exists()


def test_report_reads_a_result_file_saved_with_a_byte_order_mark(tmp_path):
    runs = _two_seeds(tmp_path)
    path = runs / "seed2-key2.csv"
    write_rows(path, _run_rows(2, {"fg_nmi": 0.6, "ari": 0.9, "landmark_error": 0.1}))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as a spreadsheet saves it
    assert read_rows(path)[0]["method"] == "kmeans"
    result = _report(tmp_path)
    assert result.exit_code == 0, result.output
    assert "fg_nmi,50.0000,10.0000,3,100" in (tmp_path / "tables" / "results.csv").read_text()


def test_report_refuses_a_copy_of_a_seed(tmp_path):
    runs = _two_seeds(tmp_path)
    copy = runs.parent / "copy" / "seed1-key1.csv"
    copy.parent.mkdir()
    copy.write_bytes((runs / "seed1-key1.csv").read_bytes())
    one_error_line(_report(tmp_path), str(runs / "seed1-key1.csv"), str(copy), "key1")


def test_report_refuses_one_run_stored_twice_under_different_keys(tmp_path):
    runs = _two_seeds(tmp_path)
    write_rows(runs / "seed1-other.csv", _run_rows(1, key="other"))
    one_error_line(_report(tmp_path), "seed1-other.csv", "seed 1", "count twice")


def test_report_passed_one_folder_twice_reads_each_file_once(tmp_path):
    runs = _two_seeds(tmp_path)
    result = invoke("report", tmp_path / "runs", runs, runs / "seed0-key0.csv", "--out", tmp_path / "tables",
                    "--format", "csv")
    assert result.exit_code == 0, result.output
    assert "fg_nmi,45.0000,7.0711,2,100" in (tmp_path / "tables" / "results.csv").read_text()


def test_report_refuses_a_repeated_metric_row(tmp_path):
    runs = _two_seeds(tmp_path)
    path = runs / "seed1-key1.csv"
    rows = read_rows(path)
    write_rows(path, rows + [{**rows[0], "value": 0.9}])
    one_error_line(_report(tmp_path), str(path), "line 5 repeats fg_nmi of line 2")


@pytest.mark.parametrize("metric, value", [("fg_nmi", "nan"), ("ari", "inf"), ("landmark_error", "-inf"),
                                           ("fg_nmi", "1.5"), ("fg_nmi", "-0.01"), ("ari", "-1.2"),
                                           ("landmark_error", "-0.1")])
def test_report_refuses_a_value_no_metric_can_take(tmp_path, metric, value):
    runs = _two_seeds(tmp_path)
    path = runs / "seed1-key1.csv"
    rows = read_rows(path)
    line = 2 + [r["metric"] for r in rows].index(metric)
    write_rows(path, [{**r, "value": value if r["metric"] == metric else r["value"]} for r in rows])
    one_error_line(_report(tmp_path), str(path), f"line {line}: {metric}")


def test_values_at_the_ends_of_a_range_are_kept(tmp_path):
    runs = _two_seeds(tmp_path)
    write_rows(runs / "seed2-key2.csv", _run_rows(2, {"fg_nmi": 1.0, "ari": -1.0, "landmark_error": 3.5}))
    assert _report(tmp_path).exit_code == 0


def test_every_registered_metric_declares_its_range():
    from benchmark.core.registry import METRICS

    ranges = {name: METRICS.get(name).value_range for name in METRICS.names()}
    assert ranges["fg_nmi"] == ranges["nmi"] == (0.0, 1.0) and ranges["ari"] == ranges["fg_ari"] == (-1.0, 1.0)
    assert ranges["landmark_error"] == (0.0, float("inf"))
    assert RESULT_COLUMNS[-1] == "row_of"


# -- -m predictions -------------------------------------------------------------------------------------
def _predictions_error(tmp_path, maps, **saved):
    import numpy as np
    import torch

    from benchmark.core.errors import UserError
    from benchmark.core.registry import METHODS
    from benchmark.core.types import Batch

    np.savez(tmp_path / "x.npz", **{"scores": maps}, **saved)
    batch = Batch(images=torch.rand(1, 3, 4, 6), ids=["x"])
    with pytest.raises(UserError) as info:
        METHODS.get("predictions")(dir=str(tmp_path), num_parts=4).predict(batch)
    assert str(tmp_path / "x.npz") in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("kind", [None, "probs", "logits"])
def test_predictions_refuse_all_zero_maps(tmp_path, kind):
    import numpy as np

    saved = {} if kind is None else {"kind": kind}
    assert "zero everywhere" in _predictions_error(tmp_path, np.zeros((4, 4, 6), np.float32), **saved)


@pytest.mark.parametrize("kind", [None, "probs"])
def test_predictions_refuse_probabilities_that_sum_to_zero_at_a_pixel(tmp_path, kind):
    import numpy as np

    maps = np.zeros((4, 4, 6), np.float32)
    maps[1] = 1.0
    maps[:, 2, 3] = 0.0  # one pixel names no part
    saved = {} if kind is None else {"kind": kind}
    assert "1 pixel(s) sum to 0 (first at row 2, column 3)" in _predictions_error(tmp_path, maps, **saved)


# -- export owns its folder -----------------------------------------------------------------------------
TINY = ["-d", "synthetic", "-o", "num_train=4", "-o", "num_test=4", "-o", "image_size=16", "--device", "cpu", "-q"]


def _export(out, *extra):
    return invoke("export", "-m", "random", *TINY, "--out", out, *extra)


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_export_refuses_a_folder_holding_an_older_export(tmp_path):
    out = tmp_path / "exp"
    assert _export(out, "--view", "fg").exit_code == 0
    before = {name: (out / name).read_bytes() for name in _files(out)}
    one_error_line(_export(out, "--view", "full"), str(out), "--overwrite")
    assert {name: (out / name).read_bytes() for name in _files(out)} == before


def test_export_overwrite_replaces_the_older_export(tmp_path):
    import json

    out = tmp_path / "exp"
    assert _export(out, "--view", "fg").exit_code == 0
    (out / "stale.npz").write_bytes(b"old")
    result = _export(out, "--view", "full", "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "predictions.json").read_text())["folders"] == ["test/full"]
    assert {name.split("/")[1] for name in _files(out) if "/" in name} == {"full"}
    assert not (out / "stale.npz").exists() and not list(out.glob(".export-new*"))


def test_a_failed_overwrite_leaves_the_older_export_as_it_was(tmp_path):
    out = tmp_path / "exp"
    assert _export(out, "--view", "fg").exit_code == 0
    before = {name: (out / name).read_bytes() for name in _files(out)}
    one_error_line(_export(out, "--overwrite", "-p", "nope=1"), "nope")
    assert {name: (out / name).read_bytes() for name in _files(out)} == before
    assert not list(out.glob(".export-new*"))


def test_export_overwrite_clears_only_an_earlier_export(tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    one_error_line(_export(out, "--overwrite"), str(out), "not an earlier export")
    assert (out / "thesis.tex").read_text() == "precious"


# -- CUB and PASCAL-Part annotations: `data check` and loading apply the same checks ---------------------
def _cub(tmp_path):
    from test_datasets_cub import write_tree

    return write_tree(tmp_path / "CUB_200_2011")


def _edit_line(path, number, text):
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _check(dataset, root, *extra):
    return invoke("data", "check", "-d", dataset, "--data-root", root, "-q", *extra)


def _load_error(dataset, root, split="test", index=None, **options):
    import benchmark.datasets as D
    from benchmark.core.errors import UserError

    with pytest.raises(UserError) as info:
        data = D.load(dataset, root=root, split=split, masks="none", **options)
        if index is not None:
            data[index]
    return str(info.value)


@pytest.mark.parametrize("file, line, text, says", [
    ("train_test_split.txt", 3, "3 2", "image id 3 has is_training_image 2, expected 0 or 1"),
    ("image_class_labels.txt", 4, "4 7", "image id 4 has class id 7, expected an id listed in"),
])
def test_cub_index_values_outside_their_set_are_named(tmp_path, file, line, text, says):
    root = _cub(tmp_path)
    _edit_line(root / file, line, text)
    where = f"{root / file}, line {line}: {says}"
    assert where in _load_error("cub", root)
    result = _check("cub", root)
    assert result.exit_code == 2 and where in result.output, result.output


def test_cub_box_outside_its_image_is_named_by_loading_and_by_data_check(tmp_path):
    root = _cub(tmp_path)
    _edit_line(root / "bounding_boxes.txt", 1, "1 85.0 5.0 47.9 40.3")  # image 1 is 80 px wide
    where = f"{root / 'bounding_boxes.txt'}, line 1: the box [85.0, 5.0, 47.9, 40.3]"
    for view in ("fg", "full"):
        assert where in _load_error("cub", root, index=0, view=view)
    result = _check("cub", root)
    assert result.exit_code == 2 and where in result.output and "lies outside its 80x60 image" in result.output


def test_data_check_refuses_an_unknown_split(tmp_path):
    root = _cub(tmp_path)
    one_error_line(_check("cub", root, "--split", "nope"), "has no split 'nope'", "train, test")
    assert _check("cub", root, "--split", "test").exit_code == 0


def _pascal(tmp_path):
    from test_datasets_pascal_part import write_tree

    return write_tree(tmp_path / "pascal")


def test_pascal_jpeg_of_another_size_than_its_annotation_is_named(tmp_path):
    import numpy as np
    from PIL import Image

    root = _pascal(tmp_path)
    jpeg = root / "VOC2010" / "JPEGImages" / "2008_000001.jpg"
    Image.fromarray(np.zeros((50, 70, 3), np.uint8)).save(jpeg)
    says = f"{root / 'Annotations_Part' / '2008_000001.mat'}: object masks are"
    assert says in _load_error("pascal-part", root, index=0, category="car")
    result = _check("pascal-part", root, "--category", "car")
    assert result.exit_code == 2 and says in result.output and "is 70x50" in result.output, result.output


def test_pascal_imagesets_flag_outside_minus_one_to_one_is_named(tmp_path):
    root = _pascal(tmp_path)
    split_file = root / "VOC2010" / "ImageSets" / "Main" / "car_val.txt"
    _edit_line(split_file, 3, "2008_000003  7")
    where = f"{split_file}, line 3: image 2008_000003 has flag 7, expected -1, 0 or 1"
    assert where in _load_error("pascal-part", root, category="car")
    result = _check("pascal-part", root, "--category", "car")
    assert result.exit_code == 2 and where in result.output, result.output


# -- old option spellings in what users read -----------------------------------------------------------
def test_no_message_or_doc_shows_an_old_option_spelling():
    """`--to`, `--seeds`, ... still parse (aliases in benchmark/options.py) but hints, errors and docs show
    the current names: a pasted hint must match `--help`."""
    import re
    from pathlib import Path

    from test_cli_vocabulary import OLD_SPELLINGS

    root = Path(__file__).resolve().parents[1]
    pattern = re.compile("(?<![\\w-])(" + "|".join(re.escape(s) for s in OLD_SPELLINGS) + ")(?![\\w-])")
    files = [p for folder in ("benchmark", "methods", "datasets", "metrics", "tools", "docs", "results")
             for p in (root / folder).rglob("*") if p.suffix in (".py", ".md", ".sh", ".toml")]
    files.append(root / "README.md")
    found = [f"{p.relative_to(root)}:{n}: {line.strip()}" for p in files if p.name != "options.py"
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not found, "\n".join(found)


# -- the random-weights warning: once per command, not once per seed ---------------------------------------
def test_random_weights_warning_once_per_command_not_per_seed(tmp_path):
    import warnings

    args = ["run", "-m", "kmeans", "-d", "synthetic", "--seed", "0-1", "-o", "num_train=8", "-o", "num_test=8",
            "-o", "image_size=32", "--out", tmp_path / "runs", "--no-cache", "-q"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke(*args)
    assert result.exit_code == 0, result.output
    backbone = [w for w in caught if "backbone uses RANDOM weights" in str(w.message)]
    assert len(backbone) == 1, [str(w.message) for w in caught]


def test_a_killed_export_leaves_only_a_staging_folder_that_the_next_export_clears(tmp_path):
    out = tmp_path / "exp"
    (out / ".export-new.killed" / "test").mkdir(parents=True)  # what a SIGKILL mid-export leaves
    result = _export(out, "--view", "fg")
    assert result.exit_code == 0, result.output
    assert (out / "predictions.json").is_file() and not list(out.glob(".export-new*"))
