"""Masks are checked and prepared where they are read, in one place (`benchmark.maskgen.prepare_masks`):
only the splits the requested metrics and the training read, always in the dataset's full view, and into
the run's cache only (`run --no-cache` leaves the home cache alone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from benchmark.cli import cli


def invoke(*args, env=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    assert "Traceback" not in result.output, result.output
    return result


def _cub_with_test_masks(tmp_path: Path) -> tuple[Path, Path]:
    """A miniature CUB tree and a predicted-mask folder holding the masks of the test split only, as
    `benchmark masks predict --split test` writes it."""
    from test_datasets_cub import IMAGES, write_tree

    root = write_tree(tmp_path / "CUB_200_2011")
    folder = tmp_path / "pred"
    for rel, is_train, _, (w, h), _ in IMAGES.values():
        if is_train:
            continue
        path = folder / rel.replace(".jpg", ".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4:3 * h // 4, w // 4:3 * w // 4] = 255
        Image.fromarray(mask).save(path)
    return root, folder


def test_predicted_masks_of_the_test_split_suffice_for_test_metrics(tmp_path):
    """Issue 19, bug 2: a folder of test-split masks with full-image NMI/ARI was refused for the missing
    masks of the training images, which nothing of the run reads."""
    root, folder = _cub_with_test_masks(tmp_path)
    result = invoke("run", "-m", "random", "-d", "cub", "--data-root", root, "--masks", f"predicted:{folder}",
                    "--metric", "nmi", "--metric", "ari", "--out", tmp_path / "runs", "-q")
    assert result.exit_code == 0, result.output
    assert "nmi=" in result.output and "ari=" in result.output


def test_landmark_error_needs_the_masks_of_its_fitting_split(tmp_path):
    """The landmark regression fits on the training split: its missing masks stay one error naming it."""
    root, folder = _cub_with_test_masks(tmp_path)
    result = invoke("run", "-m", "random", "-d", "cub", "--data-root", root, "--masks", f"predicted:{folder}",
                    "--metric", "landmark_error", "--out", tmp_path / "runs", "-q")
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "split 'train'" in result.output and "is missing" in result.output, result.output
    assert not (tmp_path / "runs").exists()


def test_run_without_cache_writes_nothing_to_the_home_cache(tmp_path):
    """`run --no-cache --masks unsupervised:NAME` predicted its masks into ~/.cache/partbench all the same."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "PARTBENCH_CACHE": None}
    result = invoke("run", "-m", "random", "-d", "synthetic", "-o", "num_train=4", "-o", "num_test=4",
                    "-o", "image_size=32", "--masks", "unsupervised:spectral-random", "--metric", "nmi",
                    "--no-cache", "--out", tmp_path / "runs", "-q", env=env)
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []


def test_masks_are_prepared_in_one_place():
    """Every job prepares generated masks through `prepare_masks` (one rule for splits and view): no other
    module calls a mask source's `prepare`."""
    import re

    root = Path(__file__).resolve().parents[1]
    call = re.compile(r"(?<!self)\.prepare\(")  # a method's own `self.prepare` (a training batch) is another thing
    callers = sorted(str(path.relative_to(root)) for folder in ("benchmark", "methods", "datasets", "metrics")
                     for path in (root / folder).rglob("*.py") if call.search(path.read_text()))
    # mask_sources.py: a generated kind's own `prepare` hands over to the folder it prepares.
    assert callers == ["benchmark/mask_sources.py", "benchmark/maskgen.py"], callers


def test_generated_masks_are_made_for_the_splits_read_only(tmp_path):
    """`unsupervised:NAME` predicts the evaluated split, plus the landmark fitting split only when
    landmark_error is asked for; the folder mirrors the full view (whole images)."""
    from benchmark.runner import RunConfig, run

    options = {"num_train": 3, "num_test": 2, "image_size": 32}
    common = dict(method="random", dataset="synthetic", dataset_options=options,
                  masks="unsupervised:spectral-random")
    run(RunConfig(metrics=("nmi",), **common), out_dir=None, cache_dir=tmp_path / "cache")
    (folder,) = (tmp_path / "cache" / "masks").iterdir()
    assert sorted(p.relative_to(folder).parts[0] for p in folder.rglob("*.png")) == ["test"] * 2
    run(RunConfig(metrics=("landmark_error",), **common), out_dir=None, cache_dir=tmp_path / "cache")
    assert sorted(p.relative_to(folder).parts[0] for p in folder.rglob("*.png")) == ["test"] * 2 + ["train"] * 3
