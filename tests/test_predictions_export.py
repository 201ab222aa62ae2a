"""`benchmark export` -> `predictions`: the saved maps come back bit-identical for every evaluation view."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from benchmark.cli import cli
from benchmark.core.dataset import Dataset
from benchmark.core.registry import DATASETS, METHODS
from benchmark.core.types import Sample
from benchmark.commands.export import export_predictions


class _TwoViews(Dataset):
    """A tiny dataset whose fg and full views show different pixels under the same ids."""

    needs_data_root = False

    def __init__(self, root=None, *, split="test", view="fg", protocol="corrected", masks="gt"):
        super().__init__(root, split=split, view=view, protocol=protocol, masks=masks)

    def __len__(self):
        return 5

    def image_size(self, index):
        return (12, 16) if index < 3 else (16, 12)

    def __getitem__(self, index):
        gen = torch.Generator().manual_seed(hash((self.split, self.view, index)) % (2**31))
        h, w = self.image_size(index)
        return Sample(image=torch.rand(3, h, w, generator=gen), id=f"{self.split}/dir{index % 2}/img{index}.jpg",
                      mask=torch.ones(h, w))


@pytest.fixture
def two_views():
    DATASETS._ensure_loaded()
    DATASETS.register("_two_views")(_TwoViews)
    yield "_two_views"
    DATASETS.unregister("_two_views")


def test_export_then_predictions_reproduces_every_view(tmp_path, two_views):
    out = export_predictions("random", two_views, to=tmp_path / "exp", num_parts=3, params={"resolution": 5},
                             seed=7, device="cpu", batch_size=2)
    sidecar = json.loads((out / "predictions.json").read_text())
    assert sidecar["folders"] == ["test/fg", "test/full"] and sidecar["num_parts"] == 3
    direct = METHODS.get("random")(num_parts=3, resolution=5).fit(None, seed=7)
    reader = METHODS.get("predictions")(num_parts=3, dir=str(out))
    for view in ("fg", "full"):
        for batch in _TwoViews(split="test", view=view).batches(3):
            want, got = direct.predict(batch), reader.predict(batch)
            assert torch.equal(got.scores, want.scores)
            assert (got.kind, got.has_background, got.align_corners) == (want.kind, want.has_background,
                                                                            want.align_corners)


def test_export_command_line(tmp_path, two_views):
    result = CliRunner().invoke(cli, ["export", "-m", "random", "-d", two_views, "-k", "2", "--view", "fg",
                                      "--out", str(tmp_path / "e"), "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "e" / "test" / "fg" / "test" / "dir0").iterdir()) == \
        ["img0.jpg.npz", "img2.jpg.npz", "img4.jpg.npz"]
    assert not (tmp_path / "e" / "test" / "full").exists()


def test_export_rejects_bad_input(tmp_path, two_views):
    result = CliRunner().invoke(cli, ["export", "-m", "random", "-d", two_views, "-p", "nope=1",
                                      "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "no parameter 'nope'" in result.output
    result = CliRunner().invoke(cli, ["export", "-m", "predictions", "-d", two_views, "--out", str(tmp_path / "e")])
    assert result.exit_code == 2


@pytest.mark.parametrize("method,params", [
    ("random", {"resolution": 6}), ("random", {}),
    ("kmeans", {"weights": "random", "niter": 5, "nredo": 1, "batch_size": 4}),  # transductive, per view
])
def test_export_then_run_predictions_reproduces_the_direct_run(tmp_path, method, params):
    """The acceptance test: `export` + `run -m predictions` gives exactly the direct run's numbers (every
    metric, the landmark regression included: its fit split is exported too)."""
    from benchmark.runner import RunConfig, run

    options = {"num_train": 6, "num_test": 5, "image_size": 32, "seed": 3}
    direct = run(RunConfig(method=method, dataset="synthetic", seed=2, params=params, dataset_options=options,
                           device="cpu", batch_size=4), out_dir=None)
    out = export_predictions(method, "synthetic", to=tmp_path / "exp", params=params, dataset_options=options,
                             seed=2, device="cpu", batch_size=4)  # the run's batch size: see export.py
    assert json.loads((out / "predictions.json").read_text())["folders"] == ["test/fg", "train/fg", "test/full"]
    again = run(RunConfig(method="predictions", dataset="synthetic", seed=2, params={"dir": str(out)},
                          dataset_options=options, device="cpu", batch_size=4), out_dir=None)
    want = {r["metric"]: r["value"] for r in direct.rows}
    got = {r["metric"]: r["value"] for r in again.rows}
    assert set(want) == set(got) and len(want) >= 4
    assert got == want
    assert all(int(r["skipped_images"]) == 0 for r in again.rows)
