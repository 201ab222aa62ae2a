"""The shipped ``whole-image`` plan runs end to end on stand-ins: miniature CUB and PartImageNet trees in the
official formats, small image sizes, random weights and, to stay cheap, its method lists cut to ``random``
and ``kmeans`` (``scops`` at K = 4 for the own-background experiment). Every protocol and K of the plan
is run and every table is filled. (With all five methods this takes ~2 CPU minutes; the full method list
is dry-run against fixture trees in test_reproduce_plan.py.)"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmark.cli import cli
from benchmark.reproduce.plan import shipped_plans

CHEAP = {
    'method = "dff"\n': 'method = "dff"\nparams = { weights = "random", max_iter = 20 }\n',
    'method = "kmeans"\n': 'method = "kmeans"\nparams = { weights = "random", niter = 5, nredo = 1, batch_size = 8 }\n',
    'method = "scops"\nparams = { preset = "paper" }':
        'method = "scops"\nparams = { preset = "tiny", init = "random", vgg_weights = "random", steps = 2, image_size = 32, batch_size = 3 }',
    'method = "ours"\nparams = { preset = "paper" }':
        'method = "ours"\nparams = { preset = "tiny", init = "random", vgg_weights = "random", steps = 2, image_size = 32, batch_size = 3 }',
    '"whole-image"]': '"whole-image:64"]',
    '"whole-image:224-crop"]': '"whole-image:32-crop"]',
    # the miniature tree's official splits (PDiscoFormer's re-split is tested in test_datasets_partimagenet.py)
    'split_source = "pdisco"': 'split_source = "official"',
    'methods = ["random", "dff", "kmeans", "dino-coseg", "scops", "pdiscoformer", "ours", "pdisconet"]':
        'methods = ["random", "kmeans"]',
    'methods = ["scops", "dino-coseg", "pdiscoformer", "pdisconet"]\ndatasets = ["cub"]\nnum_parts = [4, 8, 16]':
        'methods = ["scops"]\ndatasets = ["cub"]\nnum_parts = [4]',
}


def cub_stand_in(root):
    """The CUB fixture tree plus one training image, so that a training batch of 3 fits."""
    from test_datasets_cub import IMAGES, keypoints_for, write_tree

    images = dict(IMAGES)
    images[5] = ("004.Groove_billed_Ani/Groove_Billed_Ani_0005_5.jpg", 1, 4, (56, 48), (3.0, 4.0, 40.0, 30.0))

    def keypoints(image_id):
        if image_id in IMAGES:
            return keypoints_for(image_id)
        return [(float(5 + 2 * p), float(5 + 2 * p), 1) for p in range(15)]

    return write_tree(root, images=images, keypoints=keypoints, segment_ids=tuple(images))


def _reproduce_on_stand_ins(name: str, cheaper: dict[str, str], tmp_path) -> Path:
    """Run the shipped plan ``name`` with ``cheaper``'s text replacements (each must occur) on the CUB and
    PartImageNet stand-ins; returns its output folder after asserting exit status 0."""
    from test_datasets_partimagenet import write_tree as write_pin

    text = shipped_plans()[name].read_text()
    for old, new in cheaper.items():
        assert old in text, old
        text = text.replace(old, new)
    plan = tmp_path / f"{name}-standins.toml"
    plan.write_text(text)
    cub = cub_stand_in(tmp_path / "cub" / "CUB_200_2011")
    pin = write_pin(tmp_path / "pin" / "PartImageNet")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["reproduce", str(plan), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                                      "--data-root", f"cub={cub}", "--data-root", f"partimagenet={pin}",
                                      "-q", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_whole_image_plan_fills_every_cell_on_stand_ins(tmp_path):
    out = _reproduce_on_stand_ins("whole-image", CHEAP, tmp_path)
    tables = sorted(out.rglob("*.csv"))
    rows = [row for path in tables if path.parent.name == "tables" for row in csv.DictReader(path.open())]
    assert rows, [str(p) for p in tables]
    protocols = {row.get("protocol") for row in rows}
    assert {"legacy", "corrected", "whole-image:64", "whole-image:32-crop"} <= protocols, protocols
    assert {row.get("num_parts") for row in rows} >= {"4", "8", "16", "25", "50"}
    measured = [row for row in rows if row["seeds"] != "0"]
    assert {(row["method"], row["supervision"]) for row in measured} == {("random", "none"), ("kmeans", "fg-masks"),
                                                                         ("scops", "fg-masks")}
    # the newer papers' numbers sit beside the whole-image cells of their dataset and K (published = "whole-image")
    beside = {(row["method"], row["dataset"], row["num_parts"], row["protocol"]) for row in rows if row["published_mean"]}
    assert {("mpae (published)", "cub", "16", "whole-image:64"),
            ("pdiscoformer (published)", "partimagenet", "25", "whole-image:32-crop")} <= beside, beside
    assert "| Supervision" in (out / "tables" / "whole-image-cub.md").read_text()
    # the landmark regression on CUB: measured under every protocol, the papers' Kp beside the whole-image cells
    kp = {(row["method"], row["protocol"]): row for row in rows
          if row["metric"] == "landmark_error" and row["num_parts"] == "16"}
    assert all(kp[("random", p)]["mean"] for p in ("legacy", "corrected", "whole-image:64")), sorted(kp)
    assert float(kp[("pdisconet (published)", "whole-image:64")]["published_mean"]) == 7.67


def test_tables_put_the_newer_papers_numbers_beside_whole_image_cells(monkeypatch):
    """The shipped ``whole-image`` published table: a plan method's own ``paper`` and ``Δ`` cells beside its
    whole-image cell (own-background table only), rows for the published methods the plan does not run,
    and the paper's legacy numbers still beside ``legacy`` only."""
    from dataclasses import asdict

    import benchmark.reproduce.tables as tables
    from benchmark.published import published_results
    from benchmark.reproduce.graph import Settings, Step
    from benchmark.reproduce.published import published_numbers

    assert "whole-image" in shipped_plans()["whole-image"].read_text()
    published = {"|".join(map(str, k)): asdict(v) for k, v in published_numbers("whole-image").items()}
    # a k-sweep (legacy) number of a plan method, as a plan's [[published]] entry would add
    published["ours|cub|16|nmi"] = {"mean": 50.0, "std": None, "source": "legacy test", "masks": None,
                                    "protocol": "legacy", "supervision": ""}
    rows = []
    for masks in ("gt", "method"):
        for protocol, value in (("legacy", 0.55), ("whole-image:64", 0.7)):
            for label in ("ours", "pdiscoformer"):
                rows.append({"label": label, "mask_source": masks, "dataset_label": "cub", "dataset": "cub",
                             "num_parts": 16, "metric": "nmi", "protocol": protocol, "value": value, "seed": 0,
                             "supervision": "class-labels" if label == "pdiscoformer" else "fg-masks"})
    monkeypatch.setattr(tables, "_records", lambda step, settings: rows)
    spec = {"experiment": "e", "title": "T", "methods": ["ours", "pdiscoformer"], "num_parts": [16],
            "protocols": ["legacy", "whole-image:64"], "masks": ["gt", "method"], "published": published}
    shown, long_rows = tables.experiment_tables(Step("tables/e", "tables", "k", (), spec), Settings("o", "c"))
    for table in shown:
        assert table["header"] == ["Method", "Supervision", "NMI legacy", "NMI paper", "Δ", "NMI whole-image:64",
                                   "NMI paper", "Δ", "seeds"]
        body = {row[0]: row for row in table["rows"]}
        assert body["ours"][2:5] == ["55.00", "50.0", "+5.00"] and body["ours"][6:8] == ["–", "–"]
        reference = published_results(method="pdiscoformer", dataset="cub", num_parts=16, metric="nmi")[0].mean_x100
        own = body["pdiscoformer"][6:8]
        if table["masks"] == "method":  # published with their own background: beside that table's cells only
            assert own == [f"{reference:.1f}", f"{70.0 - reference:+.2f}"]
        else:
            assert own == ["–", "–"]
        for method in ("pdisconet", "pdisconet-vitb", "mpae"):
            number = published_results(method=method, dataset="cub", num_parts=16, metric="nmi")[0]
            row = body[f"{method} (published)"]
            assert row[1] == number.supervision and row[2:6] == ["–", "–", "–", "–"]
            assert row[6:8] == [f"{number.mean_x100:.1f}", "–"] and row[-1] == "0"
        assert not any("partimagenet" in str(cell) for row in table["rows"] for cell in row)
    long = [r for r in long_rows if r["method"] == "mpae (published)"]
    assert len(long) == 2 and all(r["protocol"] == "whole-image:64" and r["mean"] is None for r in long)
    assert "whole-image" in tables.render_markdown(shown).split("\n\n")[1]


NEWER_CHEAP = {
    'method = "pdiscoformer"\nparams = { preset = "paper" }':
        'method = "pdiscoformer"\nparams = { preset = "tiny", backbone_weights = "random", steps = 2, image_size = 32, batch_size = 2 }',
    'method = "pdisconet"\nparams = { preset = "paper" }': 'method = "pdisconet"\nparams = { preset = "tiny", steps = 2 }',
    # dino-coseg's random-weight saliency cannot split the few stand-in images reliably (its own tests cover it)
    'methods = ["pdiscoformer", "dino-coseg"]': 'methods = ["pdiscoformer"]',
    'methods = ["pdiscoformer", "pdisconet", "dino-coseg"]': 'methods = ["pdiscoformer", "pdisconet"]',
    '"whole-image:518-crop"]': '"whole-image:64-crop"]',
    '"whole-image"]': '"whole-image:64"]',
    '"whole-image:224-crop"]': '"whole-image:32-crop"]',
    'split_source = "pdisco"': 'split_source = "official"',
    'num_parts = [4, 8, 16]': 'num_parts = [4]',
    'num_parts = [8, 25, 50]': 'num_parts = [8]',
}


@pytest.mark.slow
def test_newer_methods_plan_trains_pdiscoformer_and_fills_its_tables_on_stand_ins(tmp_path):
    """The shipped ``newer-methods`` plan with tiny settings and its method list cut to pdiscoformer and
    pdisconet: they train (class labels of the CUB and PartImageNet stand-ins) and are scored with their own
    background under both families; every shipped method of the plan is dry-run in test_reproduce_plan.py."""
    out = _reproduce_on_stand_ins("newer-methods", NEWER_CHEAP, tmp_path)
    rows = [row for path in sorted((out / "tables").glob("*.csv")) for row in csv.DictReader(path.open())]
    measured = {(row["method"], row["dataset"], row["protocol"]) for row in rows if row["seeds"] != "0"}
    assert {("pdiscoformer", "cub", "corrected"), ("pdiscoformer", "cub", "whole-image:64-crop"),
            ("pdiscoformer", "partimagenet", "whole-image:32-crop"), ("pdisconet", "cub", "corrected"),
            ("pdisconet", "cub", "whole-image:64"), ("pdisconet", "partimagenet", "whole-image:32-crop")} <= measured, measured
    assert {row["supervision"] for row in rows if row["method"] in ("pdiscoformer", "pdisconet")
            and row["seeds"] != "0"} == {"class-labels"}
