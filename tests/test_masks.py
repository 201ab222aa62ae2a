"""Foreground masks: the `fgbg` mask model, `benchmark masks predict|score`, `--masks model:CKPT` and
`unsupervised:NAME`, evaluation without GT masks on disk, strict reading of predicted mask files."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from benchmark.cli import cli
from benchmark.core.errors import UserError

SYN = ["-o", "num_train=8", "-o", "num_test=6", "-o", "image_size=32"]
SYN_OPTIONS = {"num_train": 8, "num_test": 6, "image_size": 32}


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture(scope="module")
def fgbg_checkpoint(tmp_path_factory, one_torch_thread):
    """A 3-step fgbg model on 32 px synthetic images, trained through `benchmark train -m fgbg`."""
    out = tmp_path_factory.mktemp("fgbg") / "run"
    result = invoke("train", "-m", "fgbg", "-d", "synthetic", *SYN, "--preset", "tiny", "--init", "random",
                    "--steps", 3, "--batch-size", 2, "--image-size", 32, "--num-workers", 0, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    assert "predict masks: benchmark masks predict" in result.output
    return out / "model.pt"


def test_fgbg_is_a_mask_model_not_a_part_method():
    from benchmark.core.registry import MASK_MODELS, METHODS

    assert "fgbg" in MASK_MODELS and "fgbg" not in METHODS
    output = invoke("list").output
    section = output.split("Foreground mask models")[1].split("Datasets:")[0]
    assert "fgbg" in section and "unsupervised:spectral" in section
    assert "fgbg" not in output.split("Foreground mask models")[0]
    result = invoke("run", "-m", "fgbg", "-d", "synthetic", *SYN)
    assert result.exit_code == 2 and "unknown method 'fgbg'" in result.output


def test_fgbg_rejects_bad_settings():
    from benchmark.methods.fgbg import resolve_config

    with pytest.raises(UserError, match="outputs must be 1"):
        resolve_config("tiny", outputs=3)
    with pytest.raises(UserError, match="unknown fgbg preset"):
        resolve_config("huge")
    with pytest.raises(UserError, match="optimizer must be one of sgd, adam"):
        resolve_config("tiny", optimizer="rmsprop")
    with pytest.raises(UserError, match="warmup_steps must be >= 0"):
        resolve_config("tiny", warmup_steps=-1)


def test_fgbg_presets_build_their_optimisers():
    """paper: the DeepLab SGD recipe without warm-up; tiny: Adam with a warm-up (the faster learner from
    random weights on a CPU); both keep the classifier's 10x learning rate."""
    from benchmark.methods.fgbg import optimizer_factory, resolve_config
    from benchmark.methods.training import ParamGroup, TrainConfig

    net = torch.nn.Conv2d(3, 2, 1)
    groups = [ParamGroup("backbone", [net.weight]), ParamGroup("classifier", [net.bias], lr_mult=10.0)]
    paper, tiny = resolve_config("paper"), resolve_config("tiny")
    assert (paper.optimizer, paper.warmup_steps, tiny.optimizer) == ("sgd", 0, "adam") and tiny.warmup_steps > 0
    for config, kind in ((paper, torch.optim.SGD), (tiny, torch.optim.Adam)):
        train_config = TrainConfig(steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                                   weight_decay=config.weight_decay, warmup_steps=config.warmup_steps)
        optimizer = optimizer_factory(config.optimizer)(groups, train_config)
        assert type(optimizer) is kind
        assert [g["lr_mult"] for g in optimizer.param_groups] == [1.0, 10.0]
        assert all(g["weight_decay"] == config.weight_decay for g in optimizer.param_groups)


def _fitted_logit_map_iou(side: int, iterations: int = 300) -> float:
    """IoU on the synthetic test masks of a free logit map of the size the network gives for a ``side`` px
    input, fitted to each mask by pixel-wise cross-entropy through the predictor's bilinear upsampling: what
    no network trained with that loss can beat (docs/masks.md#measured)."""
    import torch.nn.functional as F

    from benchmark.methods.segmenter import output_size
    from benchmark.runner import build_dataset

    data = build_dataset("synthetic", split="test", view="full")
    truth = torch.stack([data[i].mask for i in range(len(data))]) > 0.5
    n = output_size(side)[0]
    logits = torch.zeros(len(truth), 1, n, n, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.5)
    for _ in range(iterations):
        up = F.interpolate(logits, size=truth.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.binary_cross_entropy_with_logits(up, truth[:, None].float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    up = F.interpolate(logits.detach(), size=truth.shape[-2:], mode="bilinear", align_corners=False)[:, 0] > 0
    tp, fp, fn = (up & truth).sum().item(), (up & ~truth).sum().item(), (~up & truth).sum().item()
    return tp / (tp + fp + fn)


def test_64_px_input_caps_a_cross_entropy_model_below_iou_0_8():
    """Why `tiny` trains at 96 px: at 64 px the 9 x 9 logit map fitted by cross-entropy stays near 0.75."""
    assert _fitted_logit_map_iou(64) < 0.8 < 0.85 < _fitted_logit_map_iou(96)


@pytest.mark.long  # about 2 minutes on 2 cores: run by `pytest -m long` (.ci/run does)
def test_tiny_fgbg_learns_the_synthetic_foreground(tmp_path):
    """The ``tiny`` preset as shipped (default synthetic data, default schedule, ~1 min on two cores) learns
    the foreground: IoU on the 200 test images well above the trivial predictors (all-foreground: 0.125).
    Measured 0.536 (docs/masks.md#measured); the bar leaves room for other CPUs' rounding. The issue's 0.8
    is out of reach for this budget: see the resolution ceiling and learning curves in docs/masks.md."""
    run = tmp_path / "run"
    trained = invoke("train", "-m", "fgbg", "-d", "synthetic", "--preset", "tiny", "--init", "random",
                     "--out", run, "-q")
    assert trained.exit_code == 0, trained.output
    scored = invoke("masks", "score", "-d", "synthetic", "--masks", f"model:{run / 'model.pt'}",
                    "--out", tmp_path / "scores", "-q")
    assert scored.exit_code == 0, scored.output
    path = Path(scored.output.strip().splitlines()[-1].split("-> ")[1])
    rows = {r["metric"]: float(r["value"]) for r in csv.DictReader(open(path))}
    assert rows["mask_iou"] >= 0.45 and rows["mask_precision"] >= 0.6 and rows["mask_recall"] >= 0.5, rows


def test_fgbg_one_logit_objective_and_two_class_agree_on_the_decision():
    from benchmark.methods.fgbg import fg_logit

    two = torch.randn(2, 2, 5, 5)
    assert torch.equal(fg_logit(two) > 0, two.softmax(1)[:, 1:2] > 0.5)
    one = torch.randn(2, 1, 5, 5)
    assert torch.equal(fg_logit(one), one)


def test_predict_writes_the_layout_predicted_dir_reads_and_equals_model_source(fgbg_checkpoint, tmp_path):
    masks = tmp_path / "masks"
    for split in ("test", "train"):  # the landmark fit split is `train`
        result = invoke("masks", "predict", "--checkpoint", fgbg_checkpoint, "-d", "synthetic", *SYN,
                        "--split", split, "--out", masks, "-q")
        assert result.exit_code == 0, result.output
    files = sorted(p.relative_to(masks).as_posix() for p in masks.rglob("*.png"))
    assert files == [f"test/{i:06d}.png" for i in range(6)] + [f"train/{i:06d}.png" for i in range(8)]
    with Image.open(masks / "test/000000.png") as im:
        assert im.mode == "L" and im.size == (32, 32)
        assert set(np.unique(np.asarray(im)).tolist()) <= {0, 255}

    rows = {}
    for source in (f"predicted:{masks}", f"model:{fgbg_checkpoint}"):
        result = invoke("run", "-m", "random", "-d", "synthetic", *SYN, "--masks", source, "--out",
                        tmp_path / "runs", "--cache-dir", tmp_path / "cache", "-q")
        assert result.exit_code == 0, result.output
        path = Path(result.output.strip().splitlines()[-1].split("-> ")[1])
        rows[source.split(":")[0]] = {r["metric"]: r["value"] for r in csv.DictReader(open(path))}
    assert rows["predicted"] == rows["model"]
    # The model's masks were cached once, keyed by its content, and are byte-identical to the folder's.
    cached = list((tmp_path / "cache" / "masks").iterdir())
    assert len(cached) == 1
    for rel in files:
        assert (cached[0] / rel).read_bytes() == (masks / rel).read_bytes()


def test_killed_predict_resumes(fgbg_checkpoint, tmp_path):
    from benchmark.maskgen import predict_masks
    from benchmark.methods.fgbg import load_mask_model
    from benchmark.runner import build_dataset

    data = build_dataset("synthetic", split="train", view="full", masks="none", options=SYN_OPTIONS)
    model = load_mask_model(fgbg_checkpoint)
    whole = tmp_path / "whole"
    predict_masks(model, data, whole, batch_size=3)

    class Killed(Exception):
        pass

    def kill_after_three(path, count=[0]):
        count[0] += 1
        if count[0] == 3:
            raise Killed

    resumed = tmp_path / "resumed"
    with pytest.raises(Killed):
        predict_masks(model, data, resumed, batch_size=3, on_file=kill_after_three)
    assert len(list(resumed.rglob("*.png"))) == 3 and not list(resumed.rglob("*.tmp"))
    summary = predict_masks(model, data, resumed, batch_size=3)
    assert (summary.written, summary.skipped) == (5, 3)
    for path in whole.rglob("*.png"):
        assert (resumed / path.relative_to(whole)).read_bytes() == path.read_bytes()
    # Image by image gives the same files as batched prediction.
    single = tmp_path / "single"
    predict_masks(model, data, single, batched=False)
    for path in whole.rglob("*.png"):
        assert (single / path.relative_to(whole)).read_bytes() == path.read_bytes()


def _synthetic_masks(folder: Path, split: str = "test", n: int = 6, size: int = 32) -> None:
    for i in range(n):
        path = folder / split / f"{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        mask = np.zeros((size, size), np.uint8)
        mask[8:24, 8:24] = 255
        Image.fromarray(mask).save(path)


@pytest.mark.parametrize("damage, expected", [
    ("size", r"000002.png is 16x16 \(WxH\) but its image is 32x32; expected a mask at the image's original"),
    ("mode", r"000002.png has PIL mode RGB; expected a greyscale PNG"),
    ("values", r"000002.png has values \{0, 7, 255\}; expected a binary mask holding only 0 and 255"),
    ("missing", r"000002.png is missing"),
])
def test_bad_predicted_mask_files_are_named(tmp_path, damage, expected):
    folder = tmp_path / "masks"
    _synthetic_masks(folder)
    bad = folder / "test" / "000002.png"
    if damage == "size":
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(bad)
    elif damage == "mode":
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(bad)
    elif damage == "values":
        values = np.zeros((32, 32), np.uint8)
        values[0, :2] = (7, 255)
        Image.fromarray(values).save(bad)
    else:
        bad.unlink()
    result = invoke("masks", "score", "-d", "synthetic", *SYN, "--masks", f"predicted:{folder}", "--out",
                    tmp_path / "runs", "-q")
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1, result.output
    import re

    assert re.search(expected, result.output), result.output


def test_bad_predicted_mask_files_are_named_on_cub(tmp_path):
    from test_datasets_cub import IMAGES, write_tree

    from benchmark.runner import build_dataset

    root = write_tree(tmp_path / "CUB_200_2011", segment_ids=())
    folder = tmp_path / "pred"
    test_ids = [i for i, v in IMAGES.items() if v[1] == 0]
    rel, _, _, (w, h), _ = IMAGES[test_ids[0]]
    path = folder / rel.replace(".jpg", ".png")
    path.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((h + 1, w), np.uint8)).save(path)
    data = build_dataset("cub", data_root=root, split="test", view="fg", masks=f"predicted:{folder}")
    with pytest.raises(UserError, match=rf"{path.name} is {w}x{h + 1} \(WxH\) but its image is {w}x{h}"):
        data[0]


def test_masks_score_rows_are_tabled_by_report(tmp_path):
    folder = tmp_path / "masks"
    _synthetic_masks(folder)
    result = invoke("masks", "score", "-d", "synthetic", *SYN, "--masks", f"predicted:{folder}", "--out",
                    tmp_path / "runs", "-q")
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip().splitlines()[-1].split("-> ")[1])
    rows = {r["metric"]: r for r in csv.DictReader(open(path))}
    assert set(rows) == {"mask_iou", "mask_precision", "mask_recall"}
    assert {r["dataset"] for r in rows.values()} == {"synthetic"} and {r["split"] for r in rows.values()} == {"test"}
    # Oracle: pooled counts over the full-view GT masks.
    from benchmark.runner import build_dataset

    gt = build_dataset("synthetic", split="test", view="full", options=SYN_OPTIONS)
    truth = torch.stack([gt[i].mask for i in range(len(gt))]) > 0.5
    pred = torch.zeros_like(truth)
    pred[:, 8:24, 8:24] = True
    tp, fp, fn = (pred & truth).sum().item(), (pred & ~truth).sum().item(), (~pred & truth).sum().item()
    assert float(rows["mask_iou"]["value"]) == pytest.approx(tp / (tp + fp + fn), abs=1e-12)
    assert float(rows["mask_precision"]["value"]) == pytest.approx(tp / (tp + fp), abs=1e-12)
    assert float(rows["mask_recall"]["value"]) == pytest.approx(tp / (tp + fn), abs=1e-12)
    report = invoke("report", tmp_path / "runs", "--to", tmp_path / "tables")
    assert report.exit_code == 0 and "mask_iou" in report.output.replace("Mask IoU", "mask_iou")


def test_cub_tree_without_segmentations(tmp_path, fgbg_checkpoint):
    from test_datasets_cub import IMAGES, write_tree

    root = write_tree(tmp_path / "CUB_200_2011", segment_ids=())
    assert not (root / "segmentations").exists()
    metrics = ["--metric", "fg_nmi", "--metric", "fg_ari", "--metric", "landmark_error"]
    # GT masks are needed for --masks gt: the error says what the missing files block.
    result = invoke("run", "-m", "random", "-d", "cub", "--data-root", root, "--out", tmp_path / "runs", "-q")
    assert result.exit_code == 2 and "block --masks gt" in result.output, result.output
    check = invoke("data", "check", "-d", "cub", "--data-root", root, "--quick")
    assert check.exit_code == 2 and "what this blocks:" in check.output and "--masks none" in check.output
    assert invoke("data", "check", "-d", "cub", "--data-root", root, "--quick", "--masks", "none").exit_code == 0
    # --masks none: keypoint NMI/ARI and landmark regression need no masks.
    result = invoke("run", "-m", "random", "-d", "cub", "--data-root", root, "--masks", "none", *metrics,
                    "--out", tmp_path / "runs", "-q")
    assert result.exit_code == 0, result.output
    # Predicted masks: a folder, and the same folder made by a model (--masks model:CKPT).
    folder = tmp_path / "pred"
    for split in ("test", "train"):
        made = invoke("masks", "predict", "--checkpoint", fgbg_checkpoint, "-d", "cub", "--data-root", root,
                      "--split", split, "--out", folder, "-q")
        assert made.exit_code == 0, made.output
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == \
        sorted(v[0].replace(".jpg", ".png") for v in IMAGES.values())
    values = []
    for source in (f"predicted:{folder}", f"model:{fgbg_checkpoint}"):
        result = invoke("run", "-m", "random", "-d", "cub", "--data-root", root, "--masks", source, *metrics,
                        "--out", tmp_path / "runs", "--cache-dir", tmp_path / "cache", "-q")
        assert result.exit_code == 0, result.output
        values.append(result.output.splitlines()[0].split("]: ")[1])
    assert values[0] == values[1]


def test_model_source_errors_are_one_line(tmp_path):
    result = invoke("run", "-m", "random", "-d", "synthetic", *SYN, "--masks", f"model:{tmp_path}/nope.pt")
    assert result.exit_code == 2 and "nope.pt is not a file" in result.output
    result = invoke("run", "-m", "random", "-d", "synthetic", *SYN, "--masks", "unsupervised:magic")
    assert result.exit_code == 2 and "unknown unsupervised mask source 'magic'" in result.output
    not_fgbg = tmp_path / "other.pt"
    torch.save({"model_state_dict": {}, "config": {"extra": {"method": "ours"}}}, not_fgbg)
    result = invoke("masks", "predict", "--checkpoint", not_fgbg, "-d", "synthetic", *SYN, "--out", tmp_path / "m")
    assert result.exit_code == 2 and "is not an fg/bg model" in result.output


def test_unsupervised_source_predicts_scores_and_trains(tmp_path):
    """spectral-random on the synthetic data: masks made, scored and usable for training (`benchmark train`
    builds the training view with them for any trainable method; fgbg, 1 step, is the cheapest)."""
    result = invoke("masks", "score", "-d", "synthetic", *SYN, "--masks", "unsupervised:spectral-random",
                    "--out", tmp_path / "runs", "--cache-dir", tmp_path / "cache", "-q")
    assert result.exit_code == 0, result.output
    assert "mask_iou=" in result.output
    result = invoke("train", "-m", "fgbg", "-d", "synthetic", *SYN, "--preset", "tiny", "--init", "random",
                    "--steps", 1, "--batch-size", 2, "--image-size", 32, "--num-workers", 0,
                    "--masks", "unsupervised:spectral-random", "--out", tmp_path / "t", "-q")
    assert result.exit_code == 0, result.output
    assert "unsupervised:spectral-random" in (tmp_path / "t" / "train_info.json").read_text()


@pytest.mark.parametrize("masks, expected", [("unsupervised:spectral-random", "unsupervised:spectral-random"),
                                             ("gt", "gt"), ("none", "gt")])
def test_a_method_trained_within_a_run_trains_on_the_runs_masks(tmp_path, masks, expected):
    """`run -m ours --masks unsupervised:NAME` trains with the masks it evaluates with (the paper's unsupervised
    setting); every other source trains on GT masks, as the paper did. The row
    records what trained in `train_masks`; nothing trained in the run (a checkpoint) leaves it empty."""
    from benchmark.core.method import Method
    from benchmark.core.registry import METHODS, register_method
    from benchmark.runner import RunConfig, run

    seen = []

    @register_method("test-trains")
    class Trains(Method):
        """Records the training view it is fitted on; random maps."""

        requires_training = True

        def __init__(self, num_parts: int = 4, checkpoint: str | None = None):
            self.num_parts, self.checkpoint = num_parts, checkpoint
            self.inner = METHODS.get("random")(num_parts=num_parts)

        def fit(self, data, *, seed=0, device="cpu"):
            if not self.checkpoint:
                seen.append((data.split, data.view, data.masks.spec, data.masks.folder))
            self.inner.fit(data, seed=seed)
            return self

        def predict(self, batch):
            return self.inner.predict(batch)

    try:
        common = dict(method="test-trains", dataset="synthetic", dataset_options=SYN_OPTIONS, metrics=("nmi",),
                      masks=masks)
        row = run(RunConfig(**common), out_dir=None, cache_dir=tmp_path / "cache").rows[0]
        assert row["masks"] == masks and row["train_masks"] == expected
        split, view, spec, folder = seen[-1]
        assert (split, view, spec) == ("train", "train", expected)
        if expected != "gt":  # the training split's masks were predicted into the run's cache folder
            assert folder.parent == (tmp_path / "cache" / "masks").resolve()
            assert len(list(folder.glob("train/*.png"))) == SYN_OPTIONS["num_train"]
        checkpoint = tmp_path / "weights.pt"
        checkpoint.write_bytes(b"x")
        row = run(RunConfig(params={"checkpoint": str(checkpoint)}, **common), out_dir=None,
                  cache_dir=tmp_path / "cache").rows[0]
        assert row["train_masks"] == ""
    finally:
        METHODS.unregister("test-trains")


def test_fgbg_has_the_training_capability_apart_from_part_methods(tmp_path):
    """The contract of the train capability, for the mask model: trainable, presets in `train --help`, one
    step, an exact resume to a second step, the result loaded back (`--masks model:CKPT` reads it); and
    not among the trainable part methods."""
    from benchmark.commands.train import trainable_mask_models, trainable_methods
    from benchmark.methods.fgbg import FgBg, load_mask_model

    assert "fgbg" in trainable_mask_models() and "fgbg" not in trainable_methods()
    assert FgBg.trainable() and set(FgBg.train_presets()) == {"paper", "tiny"}
    assert "fgbg tiny" in invoke("train", "--help").output
    args = ["train", "-m", "fgbg", "-d", "synthetic", *SYN, "--preset", "tiny", "--init", "random",
            "--batch-size", 2, "--image-size", 32, "--num-workers", 0, "--out", tmp_path / "t", "-q",
            "-p", "checkpoint_every=1"]
    assert invoke(*args, "--steps", 1).exit_code == 0
    resumed = invoke(*args, "--steps", 2, "--resume")
    assert resumed.exit_code == 0 and "resumed at step 1" in resumed.output, resumed.output
    predictor = load_mask_model(tmp_path / "t" / "model.pt")
    assert predictor.config.steps == 2 and predictor.input_size == 32
