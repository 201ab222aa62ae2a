"""`benchmark train` works for any method with the training capability, a third-party one included: a toy
plug-in built on the shared TrainableMethod base trains, resumes, is listed and is evaluated by `run`."""

from __future__ import annotations

import re

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from benchmark.cli import cli
from benchmark.core.registry import METHODS
from benchmark.core.types import PartMaps
from benchmark.methods.training import ParamGroup, TrainableMethod, TrainConfig, Trainer
from benchmark.methods.weights import load_strict, read_state_dict

PRESETS = {"tiny": {"steps": 2, "batch_size": 4}, "long": {"steps": 50, "batch_size": 4}}


class ToyTrainable(TrainableMethod):
    """A 1x1-convolution part segmenter (test plug-in)."""

    code_version = "toy-1"

    def __init__(self, num_parts: int = 3, preset: str = "tiny", steps: int | None = None,
                 batch_size: int | None = None, checkpoint: str | None = None):
        self.num_parts = num_parts
        self.preset = preset
        self.steps = steps
        self.batch_size = batch_size
        self.checkpoint = checkpoint

    @classmethod
    def train_presets(cls):
        return PRESETS

    def settings(self):
        preset = PRESETS[self.preset]
        return {"steps": self.steps or preset["steps"], "batch_size": self.batch_size or preset["batch_size"]}

    def weight_sources(self):
        return {}

    def training_record(self, data):
        return {"num_parts": self.num_parts, **self.settings()}

    def trainer(self, data, *, out_dir, seed, device, keep_checkpoints=0):
        torch.manual_seed(seed)
        self.net_ = nn.Conv2d(3, self.num_parts, 1)
        s = self.settings()
        config = TrainConfig(steps=s["steps"], batch_size=s["batch_size"], lr=0.1, checkpoint_every=1,
                             keep_checkpoints=keep_checkpoints, log_flush_every=1)

        def loss(model, batch, info):
            out = model(batch.images).softmax(1)
            term = ((out[:, 0] - batch.masks) ** 2).mean()
            return term, {"fit": term}

        return Trainer(self.net_, lambda m: [ParamGroup("all", list(m.parameters()))], loss, config,
                       out_dir=out_dir, device=device, seed=seed)

    def trained_network(self):
        return self.net_

    def load_network(self, path):
        net = nn.Conv2d(3, self.num_parts, 1)
        load_strict(net, read_state_dict(path, what="checkpoint"), source=f"checkpoint {path}", target="the toy")
        return net

    def predict_with(self, network, batch):
        return PartMaps(network(batch.images), image_size=batch.size, kind="logits")


@pytest.fixture
def toy():
    METHODS.register("toy-trainable")(ToyTrainable)
    yield ToyTrainable
    METHODS.unregister("toy-trainable")


DATA = ["-d", "synthetic", "-o", "num_train=8", "-o", "num_test=4", "-o", "image_size=16", "-q", "--num-workers", "0"]


def test_a_plugin_trains_resumes_and_is_evaluated(toy, tmp_path):
    out = tmp_path / "toy"
    result = CliRunner().invoke(cli, ["train", "-m", "toy-trainable", *DATA, "--preset", "tiny", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "trained toy-trainable on synthetic (8 images) for 2 steps" in result.output
    result = CliRunner().invoke(cli, ["train", "-m", "toy-trainable", *DATA, "--steps", "3", "--out", str(out),
                                      "--resume"])
    assert result.exit_code == 0 and "resumed at step 2" in result.output, result.output
    result = CliRunner().invoke(cli, ["run", "-m", "toy-trainable", "-d", "synthetic", "-o", "num_train=8",
                                      "-o", "num_test=4", "-o", "image_size=16", "--checkpoint", str(out / "model.pt"), "-k", "3",
                                      "--out", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output


def test_trainable_methods_come_from_the_registry(toy):
    help_text = CliRunner().invoke(cli, ["train", "--help"]).output
    assert re.search(r"toy-trainable +presets: tiny, long", help_text) and re.search(r"scops +presets", help_text)
    listing = CliRunner().invoke(cli, ["list"]).output
    line = next(l for l in listing.splitlines() if l.strip().startswith("toy-trainable"))
    assert "trainable: presets tiny/long" in line
    assert "trainable" not in next(l for l in listing.splitlines() if l.strip().startswith("kmeans"))


def test_options_the_method_does_not_take_are_named(toy, tmp_path):
    result = CliRunner().invoke(cli, ["train", "-m", "toy-trainable", *DATA, "--ablate", "color",
                                      "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "does not take --ablate" in result.output
    result = CliRunner().invoke(cli, ["train", "-m", "kmeans", *DATA])
    assert result.exit_code == 2 and "cannot be trained" in result.output and "toy-trainable" in result.output


def test_shared_base_identity_and_cache_key(tmp_path):
    from benchmark.datasets import load
    from benchmark.methods.training.method import source_identity

    weights = tmp_path / "init.pth"
    weights.write_bytes(b"one")
    first = source_identity(f"caffe:{weights}")
    weights.write_bytes(b"two")
    assert first.startswith("caffe:") and source_identity(f"caffe:{weights}") != first  # content, not path
    assert source_identity("torchvision") == "torchvision:IMAGENET1K_V1" and source_identity("random") == "random"
    with pytest.raises(Exception, match="no such file"):
        source_identity(f"caffe:{tmp_path / 'missing.pth'}")

    data = load("synthetic", split="train", view="train", num_train=4, num_test=2, image_size=16)
    toy = ToyTrainable()
    assert toy.cache_key(data, 0) == ToyTrainable().cache_key(data, 0)
    assert toy.cache_key(data, 1) != toy.cache_key(data, 0)
    assert ToyTrainable(steps=7).cache_key(data, 0) != toy.cache_key(data, 0)
    ours = METHODS.get("ours")
    assert ours(init=f"caffe:{weights}", vgg_weights="random").weights_id().startswith("trained(init=caffe:")
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"x")
    assert ours(checkpoint=str(checkpoint)).weights_id().startswith("checkpoint:")
    assert METHODS.get("scops")(checkpoint=str(checkpoint)).weights_id().startswith("scops-checkpoint:")
