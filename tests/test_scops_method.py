"""The `scops` method: registration, official/own checkpoint loading, prediction, the legacy optimiser and
the trainer hooks it needs. Random weights and tiny images throughout."""

from __future__ import annotations

import pytest
import torch

from benchmark.core.errors import UserError
from benchmark.core.registry import METHODS
from benchmark.core.types import Batch
from benchmark.methods.scops.optim import DuplicatedSGD, reference_multiplicity
from benchmark.methods.segmenter import PartSegmenter, caffe_input


def test_registered_with_tags():
    cls = METHODS.get("scops")
    assert cls.requires_training and cls.provides_background and not cls.transductive
    assert cls.demo_params() == {"preset": "tiny"}
    params = cls.param_defaults()
    assert params["preset"] == "paper" and params["quirk_concentration_b2"] is True
    assert params["quirk_duplicate_params"] is True and params["quirk_mean_swap"] is True


def test_paper_preset_is_the_reference_configuration():
    s = METHODS.get("scops")(num_parts=4).settings()
    assert (s.image_size, s.batch_size, s.steps, s.lr, s.lr_basis) == (256, 6, 100000, 1e-5, 0.01)
    assert (s.momentum, s.weight_decay, s.poly_power, s.clip) == (0.9, 5e-4, 0.9, 5.0)
    assert (s.lambda_con, s.lambda_eqv, s.lambda_lmeqv, s.lambda_sc, s.lambda_orth) == (10, 1e3, 1e2, 1e4, 0.1)
    assert (s.tps_sigma, s.scale_low, s.scale_high, s.jitter) == (0.01, 0.7, 2.0, (0.3, 0.3, 0.2, 0.2))
    assert METHODS.get("scops")(steps=7, jitter=[0.1, 0, 0, 0]).settings().steps == 7
    with pytest.raises(UserError, match="preset"):
        METHODS.get("scops")(preset="nope").settings()


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    torch.manual_seed(0)
    model = PartSegmenter(4)  # K = 3 parts + background
    with torch.no_grad():  # a non-trivial classifier so that the output depends on the input
        for p in model.layer5.parameters():
            p.normal_(0, 0.5)
    path = tmp_path_factory.mktemp("ckpt") / "model_60000.pth"
    torch.save(model.state_dict(), path)  # SCOPS saves a raw state dict
    return model.eval(), path


def _images(n=1, size=24):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_official_checkpoint_loads_strictly_and_predicts_background_channel(official):
    model, path = official
    method = METHODS.get("scops")(num_parts=3, checkpoint=str(path)).fit(None)
    batch = Batch(images=_images(), ids=["a"])
    maps = method.predict(batch)
    assert maps.has_background and maps.kind == "logits" and maps.num_parts == 3
    with torch.no_grad():
        expected = model(caffe_input(batch.images, mean_order="rgb"))  # SCOPS's RGB means
    torch.testing.assert_close(maps.scores, expected)
    assert method.weights_id().startswith("scops-checkpoint:")
    # the unsup-parts notebooks' convention is a switch: it changes the input, hence the logits
    legacy = METHODS.get("scops")(num_parts=3, checkpoint=str(path), mean_order="rgb_caffe_bgr_quirk").fit(None)
    assert not torch.allclose(legacy.predict(batch).scores, maps.scores)


def test_official_checkpoint_errors(official, tmp_path):
    _, path = official
    with pytest.raises(UserError, match="--num-parts 3"):
        METHODS.get("scops")(num_parts=4, checkpoint=str(path)).fit(None)
    state = torch.load(path, weights_only=True)
    del state["layer1.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(UserError, match="layer1.0.conv1.weight"):
        METHODS.get("scops")(num_parts=3, checkpoint=str(broken)).fit(None)
    with pytest.raises(UserError, match="does not exist"):
        METHODS.get("scops")(num_parts=3, checkpoint=str(tmp_path / "none.pth")).fit(None)


def test_own_model_file_loads(official, tmp_path):
    from benchmark.methods.scops.method import SCOPSNet
    from benchmark.methods.training.checkpoint import MODEL_FORMAT

    model, _ = official
    net = SCOPSNet(3, 8)
    net.segmenter.load_state_dict(model.state_dict())
    path = tmp_path / "model.pt"
    torch.save({"format": MODEL_FORMAT, "model_state_dict": net.state_dict(), "step": 1, "config": {}}, path)
    method = METHODS.get("scops")(num_parts=3, checkpoint=str(path)).fit(None)
    batch = Batch(images=_images(1), ids=["a"])
    with torch.no_grad():
        expected = model(caffe_input(batch.images, mean_order="rgb"))
    torch.testing.assert_close(method.predict(batch).scores, expected)


def test_reference_multiplicity_follows_the_module_walk():
    assert reference_multiplicity("conv1.weight") == 1
    assert reference_multiplicity("layer1.0.conv1.weight") == 3
    assert reference_multiplicity("layer1.0.downsample.1.bias") == 4


def _naive_sgd_040(params_listed, grads, state, lr, momentum, wd):
    """PyTorch 0.4.0's SGD.step written out literally, for a param list that may repeat parameters."""
    grads = {k: g.clone() for k, g in grads.items()}
    for key in params_listed:
        d_p = grads[key]
        d_p += wd * state["p"][key]  # in place on the gradient
        if key not in state["buf"]:
            state["buf"][key] = torch.zeros_like(d_p) * momentum + d_p
        else:
            state["buf"][key] = state["buf"][key] * momentum + d_p
        state["p"][key] = state["p"][key] - lr * state["buf"][key]


def test_duplicated_sgd_matches_pytorch_040_with_repeated_listing():
    gen = torch.Generator().manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, generator=gen, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(3, generator=gen, dtype=torch.float64))
    c = torch.nn.Parameter(torch.randn(2, generator=gen, dtype=torch.float64))
    opt = DuplicatedSGD([{"params": [a, b]}, {"params": [c], "lr": 0.3}], lr=0.1, momentum=0.9,
                        weight_decay=0.05, repeats={id(a): 3, id(b): 1, id(c): 2})
    state = {"p": {"a": a.detach().clone(), "b": b.detach().clone(), "c": c.detach().clone()}, "buf": {}}
    state_c = {"p": {"c": c.detach().clone()}, "buf": {}}
    for _ in range(3):
        grads = {"a": torch.randn(5, generator=gen, dtype=torch.float64),
                 "b": torch.randn(3, generator=gen, dtype=torch.float64),
                 "c": torch.randn(2, generator=gen, dtype=torch.float64)}
        a.grad, b.grad, c.grad = grads["a"].clone(), grads["b"].clone(), grads["c"].clone()
        opt.step()
        # the reference's listing order interleaves repeats; only each parameter's own sequence matters
        _naive_sgd_040(["a", "b", "a", "a"], grads, state, 0.1, 0.9, 0.05)
        _naive_sgd_040(["c", "c"], grads, state_c, 0.3, 0.9, 0.05)
        torch.testing.assert_close(a.detach(), state["p"]["a"], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(b.detach(), state["p"]["b"], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c.detach(), state_c["p"]["c"], rtol=1e-12, atol=1e-12)


def test_duplicated_sgd_without_repeats_is_torch_sgd():
    gen = torch.Generator().manual_seed(3)
    p1 = torch.nn.Parameter(torch.randn(4, generator=gen))
    p2 = torch.nn.Parameter(p1.detach().clone())
    ours = DuplicatedSGD([p1], lr=0.1, momentum=0.9, weight_decay=5e-4)
    ref = torch.optim.SGD([p2], lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(3):
        g = torch.randn(4, generator=gen)
        p1.grad, p2.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(p1.detach(), p2.detach())


def test_trainer_constant_lr_group_and_separate_clipping():
    """The hooks SCOPS needs: the basis at a constant LR outside the poly schedule, clipped on its own."""
    from benchmark.methods.training import ParamGroup, TrainConfig
    from benchmark.methods.training.loop import build_optimizer
    from benchmark.methods.training.schedule import set_lrs

    net = torch.nn.Linear(2, 2)
    basis = torch.nn.Parameter(torch.ones(3))
    config = TrainConfig(steps=10, batch_size=2, lr=1e-3, max_iter=10)
    opt = build_optimizer([ParamGroup("net", list(net.parameters())),
                           ParamGroup("basis", [basis], lr=0.01, clip_group="basis")], config)
    set_lrs(opt, config.lr, 5, 10, 0.9)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5 ** 0.9)
    assert opt.param_groups[1]["lr"] == 0.01
    assert [g["clip_group"] for g in opt.param_groups] == ["model", "basis"]


def test_train_step_bench_knows_scops():
    import benchmark.benches  # noqa: F401  (what build_train_step imports: every method's bench module registers)
    from benchmark.methods.ours.bench import STEP_BUILDERS

    assert "scops" in STEP_BUILDERS
