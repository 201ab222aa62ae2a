"""One loader for every weights file (backbones, segmenters, trainer checkpoints): safe, strict, one format."""

from __future__ import annotations

import re

import pytest
import torch

from benchmark.core.errors import UserError
from benchmark.methods.weights import check_state_dict, load_strict, read_state_dict, read_weights


def _loaders():
    from benchmark.methods.backbones import VGGFeatures
    from benchmark.methods.segmenter import PartSegmenter
    from benchmark.methods.training import load_checkpoint_file

    return {
        "vgg": lambda p: VGGFeatures("vgg16", weights=str(p), layers=("relu1_1",)),
        "segmenter": lambda p: PartSegmenter.load_official(p),
        "trainer": lambda p: load_checkpoint_file(p),
    }


@pytest.mark.parametrize("loader", ["vgg", "segmenter", "trainer"])
def test_every_loader_reports_a_broken_file_in_one_format(tmp_path, loader):
    load = _loaders()[loader]
    truncated = tmp_path / "truncated.pth"
    torch.save({"a": torch.zeros(100)}, tmp_path / "good.pth")
    truncated.write_bytes((tmp_path / "good.pth").read_bytes()[:60])
    evil = tmp_path / "evil.pth"
    torch.save({"model": torch.nn.Linear(1, 1)}, evil)  # a pickled module
    for path, problem in ((truncated, "is corrupted or truncated"), (evil, "is not a plain tensor checkpoint"),
                          *([] if loader == "vgg" else [(tmp_path / "none.pth", "does not exist")])):
        # (a VGG `weights` value that is no file is refused earlier, as neither a name nor a path)
        with pytest.raises(UserError) as err:
            load(path)
        message = str(err.value)
        # "<what> <path> <problem>; <fix>" on one line
        assert re.search(rf"^[\w ]+ {re.escape(str(path))} {problem}", message), message
        assert "\n" not in message and "weights_only=False" not in message


def test_strict_check_lists_every_kind_of_key_and_allows_optional_ones():
    expected = {"a": torch.zeros(2), "b": torch.zeros(3), "head": torch.zeros(1)}
    check_state_dict(expected, {"a": torch.ones(2), "b": torch.ones(3)}, source="file x.pt", target="net",
                     optional=lambda k: k == "head")
    with pytest.raises(UserError) as err:
        check_state_dict(expected, {"a": torch.ones(5), "c": torch.ones(1)}, source="file x.pt", target="net",
                         fix="re-save it")
    assert str(err.value) == ("file x.pt does not match net: 2 missing key(s): b, head; 1 unexpected key(s): c; "
                              "1 shape-mismatched key(s): a (file (5,) vs model (2,)); re-save it")


def test_state_dict_reading_unwraps_and_strips_prefixes(tmp_path):
    net = torch.nn.Linear(2, 2)
    path = tmp_path / "wrapped.pt"
    torch.save({"iter": 3, "model_state_dict": {"module." + k: v for k, v in net.state_dict().items()}}, path)
    state = read_state_dict(path, what="checkpoint")
    assert set(state) == {"weight", "bias"}
    other = torch.nn.Linear(2, 2)
    load_strict(other, state, source=f"checkpoint {path}", target="a linear layer")
    assert torch.equal(other.weight, net.weight)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(UserError, match=r"list\.pt does not hold a state dict \(it holds a list\)"):
        read_state_dict(tmp_path / "list.pt")
    assert read_weights(tmp_path / "list.pt") == [1, 2]
