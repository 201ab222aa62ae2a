"""Supervision tracks: every method declares one, rows record it, tables rank only within a track, and
``report --protocols-side-by-side`` puts the protocols of one model in one row."""

from __future__ import annotations

import json

import pandas as pd

from benchmark.core.method import SUPERVISION_TRACKS, Method
from benchmark.core.registry import METHODS
from benchmark.report import render


def test_every_registered_method_declares_its_supervision():
    expected = {"ours": "fg-masks", "scops": "fg-masks", "kmeans": "fg-masks", "dff": "none", "random": "none"}
    for name, cls in METHODS.items():
        if name == "predictions":  # the supervision of the saved maps' method (sidecar)
            assert cls.supervision is None and cls.supervision_track is not Method.supervision_track
            continue
        assert cls.supervision in SUPERVISION_TRACKS, name
        if name in expected:
            assert cls.supervision == expected[name], name


def test_predictions_take_the_supervision_of_the_exported_method(tmp_path):
    from benchmark.methods.predictions import PredictionsMethod, write_sidecar

    write_sidecar(tmp_path, {"method": "kmeans", "num_parts": 4})
    assert PredictionsMethod(dir=str(tmp_path)).supervision_track() == "fg-masks"
    write_sidecar(tmp_path, {"method": "external", "supervision": "class-labels", "num_parts": 4})
    assert PredictionsMethod(dir=str(tmp_path)).supervision_track() == "class-labels"
    write_sidecar(tmp_path, {"method": "external", "num_parts": 4})
    assert PredictionsMethod(dir=str(tmp_path)).supervision_track() == ""


def _row(method, supervision, protocol, metric, value, params="{}"):
    return {"method": method, "supervision": supervision, "dataset": "cub", "split": "test", "protocol": protocol,
            "masks": "gt", "num_parts": 8, "seed": 0, "n": 10, "metric": metric, "value": value,
            "method_params": params}


def test_bold_is_chosen_within_a_supervision_track():
    rows = [_row("a", "none", "whole-image", "nmi", 0.30), _row("b", "none", "whole-image", "nmi", 0.20),
            _row("c", "class-labels", "whole-image", "nmi", 0.70), _row("d", "class-labels", "whole-image", "nmi", 0.60)]
    lines = render(pd.DataFrame(rows), "markdown").splitlines()
    cell = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and "Method" not in line}
    assert "**30.00**" in cell["a"] and "**20.00**" not in cell["b"]  # best unsupervised, despite c and d
    assert "**70.00**" in cell["c"] and "none" in cell["a"] and "class-labels" in cell["c"]
    order = [line.split("|")[1].strip() for line in lines if line.startswith("| ") and "Method" not in line]
    assert order.index("a") < order.index("c")  # unsupervised first
    old = pd.DataFrame([{k: v for k, v in r.items() if k != "supervision"} for r in rows])
    assert "| ?" in render(old, "markdown")  # result files without the column: unknown track


def test_protocols_side_by_side_for_one_model():
    params = json.dumps({"checkpoint": "model.pt"})
    rows = [_row("ours", "fg-masks", "legacy", "nmi", 0.43, params), _row("ours", "fg-masks", "whole-image", "nmi", 0.51, params),
            _row("ours", "fg-masks", "legacy", "fg_nmi", 0.46, params)]
    text = render(pd.DataFrame(rows), "markdown", side_by_side=True)
    assert text.count("### ") == 1 and "protocol=legacy + whole-image" in text
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    assert header.index("FG-NMI [legacy]") < header.index("NMI [legacy]") < header.index("NMI [whole-image]")
    body = [line for line in text.splitlines() if line.startswith("| ours")]
    assert len(body) == 1 and "43.00" in body[0] and "51.00" in body[0] and "46.00" in body[0]


def test_newer_papers_join_every_whole_image_setting_with_their_track():
    from benchmark.published import published_results

    rows = [_row("dff", "none", "whole-image:518-crop", "nmi", 0.40, "{}")]
    rows = [{**r, "num_parts": 16} for r in rows]
    text = render(pd.DataFrame(rows), "markdown", with_paper=True)
    line = next(l for l in text.splitlines() if "pdiscoformer (paper)" in l)
    assert "class-labels" in line and "73.38" in line and "**" not in line
    assert "mpae (model zoo)" in text and "79.00" in text
    legacy = render(pd.DataFrame([{**rows[0], "protocol": "legacy"}]), "markdown", with_paper=True)
    assert "pdiscoformer" not in legacy
    newer = published_results(protocol="whole-image")
    assert {r.method for r in newer} == {"pdisconet", "pdisconet-vitb", "pdiscoformer", "mpae", "huang", "dino-coseg"}
    assert all(r.source and r.supervision in SUPERVISION_TRACKS for r in newer)
    assert {(r.dataset, r.num_parts) for r in newer} == {
        ("cub", 16), ("partimagenet", 50), ("partimagenet", 25), ("flowers102", 8), ("flowers102", 2),
        ("nabirds", 4), ("nabirds", 8), ("nabirds", 11)}
    # the "Kp" column of the newer papers is the whole-image landmark regression (x100, lower is better)
    kp = {r.method: r.mean_x100 for r in published_results(dataset="cub", num_parts=16, metric="landmark_error")}
    assert kp == {"huang": 12.60, "pdisconet": 7.67, "pdisconet-vitb": 5.95, "pdiscoformer": 5.74}
