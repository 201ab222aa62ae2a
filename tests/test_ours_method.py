"""The registered `ours` method end to end: `benchmark train` through click's CliRunner (train, resume,
errors), checkpoint loading errors, cached training reuse, and the train-step benchmark running."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import benchmark.methods.ours.method  # noqa: F401  (registers `ours`)
from benchmark.cli import cli
from benchmark.core.errors import UserError
from benchmark.core.method import RunContext
from benchmark.core.registry import BENCHES, DATASETS, METHODS
from benchmark.methods.segmenter import PartSegmenter

TINY = ["--dataset", "synthetic", "-o", "num_train=6", "-o", "num_test=4", "-o", "image_size=32",
        "--preset", "tiny", "--train-batch-size", "3", "--image-size", "32", "--init", "random",
        "-p", "vgg_weights=random", "--quiet", "--num-workers", "0"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def invoke(*args):
    return CliRunner().invoke(cli, ["train", *args], catch_exceptions=False)


def test_cli_train_then_resume(tmp_path):
    out = tmp_path / "run"
    result = invoke(*TINY, "--steps", "2", "-p", "checkpoint_every=1", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "trained ours on synthetic (6 images) for 2 steps" in result.output
    assert (out / "model.pt").is_file() and (out / "checkpoints" / "step_0000001.pt").is_file()
    result = invoke(*TINY, "--steps", "3", "-p", "checkpoint_every=1", "--out", str(out), "--resume")
    assert result.exit_code == 0, result.output
    assert "resumed at step 2" in result.output
    assert len((out / "train_log.csv").read_text().splitlines()) == 1 + 3


def test_cli_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["train", *TINY, "--train-batch-size", "2", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "randint(1, B-1)" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["train", "--method", "random", "--dataset", "synthetic"])
    assert result.exit_code == 2 and "cannot be trained" in result.output
    result = CliRunner().invoke(cli, ["train", *TINY, "-p", "no_such=1"])
    assert result.exit_code == 2 and "no parameter(s) no_such" in result.output
    result = CliRunner().invoke(cli, ["train", *TINY, "--resume", "--out", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no checkpoint" in result.output
    help_text = CliRunner().invoke(cli, ["train", "--help"]).output
    assert "torchrun --nproc_per_node" in help_text and "--ablate" in help_text


def test_checkpoint_errors(tmp_path):
    ours = METHODS.get("ours")
    wrong_k = tmp_path / "k5.pth"
    torch.save({"iter": 1, "model_state_dict": PartSegmenter(5).state_dict(), "optimizer_state_dict": {}}, wrong_k)
    with pytest.raises(UserError, match="has 5 part outputs but --num-parts is 4"):
        ours(checkpoint=str(wrong_k)).fit(None)
    state = PartSegmenter(4).state_dict()
    state.pop("layer5.conv2d_list.0.bias")
    state["extra.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(UserError) as err:
        ours(checkpoint=str(broken)).fit(None)
    assert "layer5.conv2d_list.0.bias" in str(err.value) and "extra.weight" in str(err.value)
    evil = tmp_path / "evil.pth"
    torch.save({"model_state_dict": PartSegmenter(4)}, evil)
    with pytest.raises(UserError, match="not a plain tensor checkpoint"):
        ours(checkpoint=str(evil)).fit(None)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(wrong_k.read_bytes()[:1000])
    with pytest.raises(UserError, match=r"truncated\.pth is corrupted or truncated"):
        ours(checkpoint=str(truncated)).fit(None)


def test_fit_caches_the_trained_model(tmp_path):
    data = DATASETS.get("synthetic")(None, split="train", view="train", masks="gt", num_train=3, num_test=3,
                                     image_size=32)
    params = dict(preset="tiny", steps=1, batch_size=3, image_size=32, init="random", vgg_weights="random")
    first = METHODS.get("ours")(**params)
    first.context = RunContext(cache_dir=tmp_path)
    first.fit(data, seed=1)
    assert not hasattr(first, "trained_from_cache_")
    second = METHODS.get("ours")(**params)
    second.context = RunContext(cache_dir=tmp_path)
    second.fit(data, seed=1)
    assert second.trained_from_cache_.endswith("model.pt")
    for a, b in zip(first.model_.state_dict().values(), second.model_.state_dict().values()):
        assert torch.equal(a, b)
    other_seed = METHODS.get("ours")(**params)
    other_seed.context = RunContext(cache_dir=tmp_path)
    assert other_seed.cache_key(data, 2) != first.cache_key(data, 1)


def test_train_step_bench_reports_ms_flops_and_ratio():
    report = BENCHES.get("train-step")(batch_size=3, size=32, steps=1, warmup=0, device="cpu")
    assert "ms/step" in report and "GFLOP/step" in report and "vs float32 eager" in report
