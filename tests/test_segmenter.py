"""Tests of the DeepLab-v2 ResNet-50 2-branch segmenter (docs/training.md) and its checkpoint loading."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
import torch.nn.functional as F

from benchmark.core.errors import UserError
from benchmark.methods.segmenter import (
    PartSegmenter,
    caffe_input,
    init_segmenter,
    load_segmenter_state,
    output_size,
    torchvision_key_map,
)

STAGES = {1: (64, 3, 1, 1), 2: (128, 4, 2, 1), 3: (256, 6, 1, 2), 4: (512, 3, 1, 4)}


@pytest.fixture(scope="module")
def model() -> PartSegmenter:
    torch.manual_seed(0)
    return PartSegmenter(4)


def expected_keys(num_outputs: int) -> dict[str, tuple[int, ...]]:
    """The reference state dict's keys and shapes, enumerated from the architecture description."""
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix: str, c: int) -> None:
        keys.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                     f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

    bn("bn1", 64)
    inplanes = 64
    for s, (planes, blocks, _stride, _dil) in STAGES.items():
        for b in range(blocks):
            p = f"layer{s}.{b}"
            cin = inplanes if b == 0 else planes * 4
            keys[f"{p}.conv1.weight"] = (planes, cin, 1, 1)
            bn(f"{p}.bn1", planes)
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            keys[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{p}.bn3", planes * 4)
            if b == 0:
                keys[f"{p}.downsample.0.weight"] = (planes * 4, cin, 1, 1)
                bn(f"{p}.downsample.1", planes * 4)
        inplanes = planes * 4
    for i in range(4):
        keys[f"layer5.conv2d_list.{i}.weight"] = (num_outputs, 1024, 3, 3)
        keys[f"layer5.conv2d_list.{i}.bias"] = (num_outputs,)
    return keys


def test_state_dict_keys_and_shapes_equal_the_reference(model):
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected_keys(4)
    assert {k: tuple(v.shape) for k, v in PartSegmenter(5).state_dict().items()} == expected_keys(5)


def test_layer_hyperparameters(model):
    assert (model.conv1.stride, model.conv1.padding, model.conv1.kernel_size) == ((2, 2), (3, 3), (7, 7))
    assert model.maxpool.ceil_mode and model.maxpool.kernel_size == 3 and model.maxpool.stride == 2
    for s, (_planes, blocks, stride, dil) in STAGES.items():
        layer = getattr(model, f"layer{s}")
        for b in range(blocks):
            block = layer[b]
            # caffe style: the stride is on the first 1x1 conv, never on the 3x3
            assert block.conv1.stride == ((stride, stride) if b == 0 else (1, 1))
            assert block.conv2.stride == (1, 1)
            assert block.conv2.dilation == (dil, dil) and block.conv2.padding == (dil, dil)
            assert (block.downsample is not None) == (b == 0)
            if b == 0:
                assert block.downsample[0].stride == (stride, stride)
            for bn in (block.bn1, block.bn2, block.bn3):
                assert bn.eps == 1e-5 and bn.momentum == 0.1
    for conv, d in zip(model.layer5.conv2d_list, (6, 12, 18, 24)):
        assert conv.dilation == (d, d) and conv.padding == (d, d) and conv.bias is not None


def test_requires_grad_matches_the_two_branch_file(model):
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    expected_frozen = {"bn1.weight", "bn1.bias"}
    for s, (_p, blocks, _st, _d) in STAGES.items():
        for b in range(blocks):
            for j in (1, 2, 3):
                expected_frozen |= {f"layer{s}.{b}.bn{j}.weight", f"layer{s}.{b}.bn{j}.bias"}
    assert frozen == expected_frozen
    assert model.layer1[0].downsample[1].weight.requires_grad  # shortcut BNs are trainable
    back = list(model.backbone_parameters())
    head = list(model.classifier_parameters())
    assert len({id(p) for p in back}) == len(back)  # each parameter once (unlike SCOPS)
    assert {id(p) for p in back} | {id(p) for p in head} == {id(p) for p in model.parameters() if p.requires_grad}
    assert len(head) == 8


def reference_output_side(n: int) -> int:
    n = math.floor((n + 2 * 3 - 7) / 2) + 1          # conv1
    n = math.ceil((n + 2 * 1 - 3) / 2) + 1           # ceil-mode max-pool (no window starts in padding here)
    return math.floor((n - 1) / 2) + 1               # layer2 stride-2 1x1 conv


@pytest.mark.parametrize("size", [(256, 256), (64, 64), (65, 97), (321, 200), (33, 34)])
def test_output_size_formula_and_meta_forward(size):
    h, w = size
    expected = (reference_output_side(h), reference_output_side(w))
    assert output_size(h, w) == expected
    with torch.device("meta"):
        net = PartSegmenter(3)
        out = net(torch.empty(2, 3, h, w))
    assert tuple(out.shape) == (2, 3, *expected)
    assert output_size(256) == (33, 33)


def functional_reference(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Independent eval-mode forward written from the reference architecture with torch.nn.functional only."""

    def bn(t, p):
        return F.batch_norm(t, state[f"{p}.running_mean"], state[f"{p}.running_var"], state[f"{p}.weight"],
                            state[f"{p}.bias"], training=False, eps=1e-5)

    x = F.relu(bn(F.conv2d(x, state["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
    for s, (_planes, blocks, stride, dil) in STAGES.items():
        for b in range(blocks):
            p = f"layer{s}.{b}"
            st = stride if b == 0 else 1
            out = F.relu(bn(F.conv2d(x, state[f"{p}.conv1.weight"], stride=st), f"{p}.bn1"))
            out = F.relu(bn(F.conv2d(out, state[f"{p}.conv2.weight"], padding=dil, dilation=dil), f"{p}.bn2"))
            out = bn(F.conv2d(out, state[f"{p}.conv3.weight"]), f"{p}.bn3")
            short = x if b else bn(F.conv2d(x, state[f"{p}.downsample.0.weight"], stride=st), f"{p}.downsample.1")
            x = F.relu(out + short)
    part = x[:, 1024:]
    logits = 0
    for i, d in enumerate((6, 12, 18, 24)):
        logits = logits + F.conv2d(part, state[f"layer5.conv2d_list.{i}.weight"], state[f"layer5.conv2d_list.{i}.bias"],
                                   padding=d, dilation=d)
    return logits


def test_eval_forward_matches_functional_reference(model):
    torch.manual_seed(1)
    with torch.no_grad():  # non-trivial BN statistics so that a BN mix-up would show
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    model.eval()
    x = caffe_input(torch.rand(1, 3, 40, 40))
    with torch.no_grad():
        got = model(x)
        inst, part, logits, none = model.forward_all(x)
        ref = functional_reference(model.state_dict(), x)
    assert got.shape == (1, 4, 6, 6) and none is None
    assert inst.shape == part.shape == (1, 1024, 6, 6)
    torch.testing.assert_close(part.norm(dim=1), torch.ones(1, 6, 6), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    torch.testing.assert_close(logits, got)


def test_train_forward_gradients_reach_trainable_params_only():
    torch.manual_seed(2)
    net = PartSegmenter(4).train()
    x = caffe_input(torch.rand(2, 3, 24, 24))
    net(x).square().mean().backward()
    assert net.conv1.weight.grad is not None and net.layer5.conv2d_list[3].bias.grad is not None
    assert net.layer2[0].downsample[1].weight.grad is not None
    assert net.bn1.weight.grad is None and net.layer3[2].bn2.weight.grad is None
    assert int(net.bn1.num_batches_tracked) == 1  # train mode updates running statistics


def test_caffe_input_mean_orders():
    x = torch.zeros(1, 3, 2, 2)
    x[:, 0], x[:, 1], x[:, 2] = 1.0, 0.5, 0.0
    quirk = caffe_input(x)
    rgb = caffe_input(x, "rgb")
    assert torch.allclose(quirk[0, :, 0, 0], torch.tensor([255 - 104.00698793, 127.5 - 116.66876762, -122.67891434]))
    assert torch.allclose(rgb[0, :, 0, 0], torch.tensor([255 - 122.67891434, 127.5 - 116.66876762, -104.00698793]))
    with pytest.raises(UserError):
        caffe_input(x, "bgr")


# -- official checkpoints ------------------------------------------------------------------------------------
def random_state(num_outputs: int, *, with_nbt: bool = True) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(num_outputs)
    state = {}
    for k, shape in expected_keys(num_outputs).items():
        if k.endswith("num_batches_tracked"):
            if with_nbt:
                state[k] = torch.tensor(60000)
        elif k.endswith("running_var"):
            state[k] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[k] = torch.randn(shape, generator=gen)
    return state


@pytest.mark.parametrize("fmt", ["unsup-parts", "unsup-parts-module", "scops", "scops-module-old"])
def test_load_official_round_trip(tmp_path, fmt):
    k = 4 if fmt.startswith("unsup") else 5
    state = random_state(k, with_nbt=not fmt.endswith("old"))
    saved = {("module." + key if "module" in fmt else key): v for key, v in state.items()}
    if fmt.startswith("unsup"):
        saved = {"iter": 60000, "model_state_dict": saved,
                 "optimizer_state_dict": {"state": {0: {"momentum_buffer": torch.zeros(3)}},
                                          "param_groups": [{"lr": 1e-5, "momentum": 0.9, "params": [0]}]}}
    path = tmp_path / "model_60000.pth"
    torch.save(saved, path)
    net = PartSegmenter.load_official(path)
    assert net.num_outputs == k and not net.training
    loaded = net.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert set(loaded) == set(expected_keys(k))
    if fmt.endswith("old"):  # an old file has no BN counters: they start at 0, as in a fresh model
        assert all(int(v) == 0 for key, v in loaded.items() if key.endswith("num_batches_tracked"))


def test_load_official_mismatch_lists_every_kind_of_key(tmp_path):
    state = random_state(4)
    del state["layer3.2.conv2.weight"]
    state["layer6.weight"] = torch.zeros(3)
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(UserError) as info:
        PartSegmenter.load_official(path)
    msg = str(info.value)
    assert "bad.pth" in msg
    assert "1 missing key(s): layer3.2.conv2.weight" in msg
    assert "1 unexpected key(s): layer6.weight" in msg
    assert "layer1.0.conv1.weight (file (64, 64, 3, 3) vs model (64, 64, 1, 1))" in msg


def test_load_official_refuses_non_tensor_pickles_and_broken_files(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"model_state_dict": random_state(4), "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(UserError, match="not a plain tensor checkpoint.*weights_only"):
        PartSegmenter.load_official(path)
    good = tmp_path / "good.pth"
    torch.save(random_state(4), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(UserError, match="truncated.pth"):
        PartSegmenter.load_official(truncated)
    with pytest.raises(UserError, match="does not exist"):
        PartSegmenter.load_official(tmp_path / "nope.pth")
    no_head = random_state(4)
    del no_head["layer5.conv2d_list.0.weight"]
    torch.save(no_head, tmp_path / "nohead.pth")
    with pytest.raises(UserError, match="classifier weight"):
        PartSegmenter.load_official(tmp_path / "nohead.pth")


def test_load_segmenter_state_accepts_module_prefixes(model):
    net = PartSegmenter(4)
    load_segmenter_state(net, {"module." + k: v for k, v in model.state_dict().items()})
    assert torch.equal(net.layer4[2].conv3.weight, model.layer4[2].conv3.weight)


# -- initialisation ------------------------------------------------------------------------------------------
def test_torchvision_mapping_covers_every_backbone_tensor():
    import torchvision

    tv = torchvision.models.resnet50(weights=None).state_dict()
    mapped = torchvision_key_map(tv)
    own = PartSegmenter(4).state_dict()
    backbone = {k for k in own if not k.startswith("layer5.")}
    assert set(mapped) == backbone
    assert all(mapped[k].shape == own[k].shape for k in backbone)


def test_init_torchvision_from_local_cache(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    net = PartSegmenter(4)
    with pytest.raises(UserError, match="not in the local torch hub cache.*resnet50"):
        init_segmenter(net, "torchvision")

    torch.manual_seed(3)
    tv = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():
        tv.bn1.running_mean.normal_(0, 1)
        tv.bn1.running_var.uniform_(0.5, 2)
    url = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(tv.state_dict(), tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[-1])
    report = init_segmenter(net, "torchvision")
    assert set(report.not_initialised) == {k for k in net.state_dict() if k.startswith("layer5.")}
    assert report.unused == ["fc.weight (ImageNet head, dropped)", "fc.bias (ImageNet head, dropped)"]
    assert torch.equal(net.layer4[2].conv3.weight, tv.layer4[2].conv3.weight)
    # The folded stem sees caffe_input(x) the way torchvision's stem sees the ImageNet-normalised x.
    net.eval()
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = net.bn1(net.conv1(caffe_input(x)))
        theirs = tv.bn1(tv.conv1((x - mean) / std))
    torch.testing.assert_close(ours[..., 2:-2, 2:-2], theirs[..., 2:-2, 2:-2], rtol=1e-4, atol=1e-4)


def test_init_caffe_copies_matching_and_reports_skipped(tmp_path):
    state = {k: v for k, v in random_state(21).items() if "layer4.2" not in k}
    state["fc.weight"] = torch.zeros(1000, 2048)
    path = tmp_path / "resnet50-caffe.pth"
    torch.save(state, path)
    net = PartSegmenter(4)
    report = init_segmenter(net, f"caffe:{path}")
    assert torch.equal(net.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert "layer4.2.conv1.weight" in report.not_initialised
    assert "layer5.conv2d_list.0.weight" in report.not_initialised  # 21 classes vs 4: classifier stays random
    assert "fc.weight (no such layer)" in report.unused
    assert any(u.startswith("layer5.conv2d_list.0.weight (shape (21, 1024, 3, 3)") for u in report.unused)
    assert "left at random init" in report.summary()
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="no backbone tensor"):
        init_segmenter(net, f"caffe:{tmp_path / 'other.pth'}")
    with pytest.raises(UserError, match="unknown --init"):
        init_segmenter(net, "imagenet")


def test_init_random_is_the_reference_init():
    net = PartSegmenter(4)
    init_segmenter(net, "random")
    w = net.layer3[1].conv2.weight
    assert abs(w.std().item() - 0.01) < 1e-3 and abs(w.mean().item()) < 1e-3
    assert torch.equal(net.layer2[0].bn3.weight, torch.ones(512)) and torch.equal(net.bn1.bias, torch.zeros(64))
    bound = 1 / math.sqrt(1024 * 9)
    assert net.layer5.conv2d_list[0].bias.abs().max() <= bound


def test_init_caffe_recognises_the_scale_wrapper(tmp_path):
    state = {"Scale." + k: v for k, v in random_state(4).items()}
    torch.save(state, tmp_path / "scale.pth")
    net = PartSegmenter(4)
    report = init_segmenter(net, f"caffe:{tmp_path / 'scale.pth'}")
    assert torch.equal(net.layer2[1].conv2.weight, state["Scale.layer2.1.conv2.weight"])
    assert not report.not_initialised and any("Scale." in n for n in report.notes)


def test_caffe_bgr_fix_feeds_the_backbone_its_training_convention(tmp_path):
    state = random_state(4)
    torch.save(state, tmp_path / "caffe.pth")
    net = PartSegmenter(4)
    report = init_segmenter(net, f"caffe:{tmp_path / 'caffe.pth'}", caffe_bgr_fix=True)
    assert any("reversed" in n for n in report.notes)
    x = torch.rand(1, 3, 12, 12)
    # what Caffe saw: BGR channels minus the BGR means, through the original conv1
    bgr = x.flip(1) * 255 - torch.tensor([104.00698793, 116.66876762, 122.67891434]).view(1, 3, 1, 1)
    expected = F.conv2d(bgr, state["conv1.weight"], stride=2, padding=3)
    with torch.no_grad():
        got = net.conv1(caffe_input(x, "rgb"))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-3)
