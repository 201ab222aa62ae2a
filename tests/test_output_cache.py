"""The content-addressed cache of trained networks' outputs (methods/training/output_cache.py): a plan's
evaluations of one model under both protocols and every mask source feed it the same batches, which then
run once; the numbers stay exactly those of the network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import benchmark.methods.ours.method  # noqa: F401  (registers `ours`)
from benchmark.core.method import RunContext
from benchmark.core.registry import DATASETS, METHODS
from benchmark.methods.segmenter import PartSegmenter
from benchmark.methods.training.output_cache import FOLDER, CachedNetwork, module_digest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Counting(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.conv(x)


def test_the_same_input_runs_once_and_reads_back_the_exact_output(tmp_path):
    torch.manual_seed(0)
    network = Counting().eval()
    x, other = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    first = CachedNetwork(network, tmp_path)
    computed = first(x)
    again = CachedNetwork(network, tmp_path)(x)  # a later run (another wrapper, read from disk)
    assert network.calls == 1 and torch.equal(again, computed) and again.dtype == computed.dtype
    CachedNetwork(network, tmp_path)(other)  # another input: computed
    assert network.calls == 2
    with torch.no_grad():
        network.conv.bias.add_(1.0)  # other weights: another network, never the old outputs
    changed = CachedNetwork(network, tmp_path)(x)
    assert network.calls == 3 and torch.allclose(changed, computed + 1.0, atol=1e-6)
    assert len(list((tmp_path / FOLDER).glob("*.npy"))) == 3


def test_module_digest_sees_every_value_and_the_class():
    a, b = Counting(), Counting()
    b.load_state_dict(a.state_dict())
    assert module_digest(a) == module_digest(b)
    with torch.no_grad():
        b.conv.weight[0, 0, 0, 0] += 1e-7
    assert module_digest(a) != module_digest(b)


def _without_a_cold_and_a_warm_cache(make_method, batch, folder):
    """``[(maps, forward calls)]`` of a fresh method from ``make_method()`` predicting ``batch`` with no cache,
    then a cold cache under ``folder``, then the same cache warm."""
    results = []
    for cache_dir in (None, folder / "cache", folder / "cache"):
        method = make_method()
        method.context = RunContext(cache_dir=cache_dir)
        method.fit(None)
        calls = []
        method.network_.register_forward_hook(lambda *args: calls.append(1))
        results.append((method.predict(batch), len(calls)))
    return results


def test_ours_from_a_checkpoint_predicts_the_same_maps_with_a_cold_a_warm_and_no_cache(tmp_path):
    torch.manual_seed(1)
    checkpoint = tmp_path / "model_60000.pth"
    torch.save({"iter": 1, "model_state_dict": PartSegmenter(4).state_dict(), "optimizer_state_dict": {}}, checkpoint)
    data = DATASETS.get("synthetic")(None, split="test", view="fg", masks="gt", num_train=2, num_test=2,
                                     image_size=32)
    batch = next(iter(data.batches(2)))

    (plain, plain_calls), (cold, cold_calls), (warm, warm_calls) = _without_a_cold_and_a_warm_cache(
        lambda: METHODS.get("ours")(checkpoint=str(checkpoint)), batch, tmp_path)
    assert (plain_calls, cold_calls, warm_calls) == (1, 1, 0)
    assert torch.equal(plain.scores, cold.scores) and torch.equal(plain.scores, warm.scores)
    assert (warm.kind, warm.align_corners, warm.image_size) == (plain.kind, plain.align_corners, plain.image_size)


def test_pdiscoformer_predicts_the_same_maps_with_a_cold_a_warm_and_no_cache(tmp_path):
    # Real-path bug: the cache stored the network's output as one array, but PDiscoFormer's network returns its
    # four outputs (features, maps, scores, distances); every evaluation of a pdiscoformer model in `run` or
    # `reproduce` (which cache by default) failed with "'PartOutput' object has no attribute 'detach'".
    import benchmark.methods.pdiscoformer.method  # noqa: F401  (registers `pdiscoformer`)
    from benchmark.core.types import Batch
    from benchmark.methods.pdiscoformer.network import build_network

    torch.manual_seed(2)
    checkpoint = tmp_path / "3_parts_snapshot_best.pt"
    torch.save({"model_state": build_network("test_vit", 32, 3, 5).state_dict()}, checkpoint)
    batch = Batch(images=torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)), ids=["a", "b"])

    (plain, plain_calls), (cold, cold_calls), (warm, warm_calls) = _without_a_cold_and_a_warm_cache(
        lambda: METHODS.get("pdiscoformer")(num_parts=3, checkpoint=str(checkpoint), backbone="test_vit"),
        batch, tmp_path)
    assert (plain_calls, cold_calls, warm_calls) == (1, 1, 0)
    assert torch.equal(plain.scores, cold.scores) and torch.equal(plain.scores, warm.scores)
    assert plain.has_background and warm.has_background and warm.num_parts == 3
