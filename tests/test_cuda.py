"""CUDA checks (skipped without a CUDA device; run by ``tools/gpu-check.sh``).

* the training step of ``ours``, ``scops`` and ``pdiscoformer`` makes no host synchronisation
  (``set_sync_debug_mode``);
* bf16 autocast gives the float32 total loss to 1e-2 (relative) at the paper's batch and image size;
* ``kmeans`` and ``dff`` run end to end on the GPU and agree with the CPU where they must.

``tools/gpu-check.sh`` runs these with pytest (``-m cuda``) and, on a machine without pytest, calls the
``test_*`` functions of this file directly: so they take no fixtures and need nothing from pytest but
markers.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings

import torch

try:
    import pytest
except ImportError:  # tools/gpu_check.py runs this file without pytest (see the module docstring)
    pytest = None

if pytest is not None:
    pytestmark = [pytest.mark.cuda,
                  pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
                  pytest.mark.filterwarnings("ignore::benchmark.methods.backbones.RandomWeightsWarning")]

PAPER_BATCH, PAPER_SIZE = 6, 256


def _train_step(method: str, batch_size: int, size: int, amp=None):
    import benchmark.benches  # noqa: F401  (registers the scops step builder)
    from benchmark.methods.ours.bench import build_train_step

    return build_train_step(method, batch_size, size, amp, False, torch.device("cuda"), "paper")


def _assert_no_host_syncs(method: str) -> None:
    _assert_step_has_no_host_syncs(_train_step(method, 4, 128))


def _assert_step_has_no_host_syncs(step) -> None:
    step()  # first call: allocator growth, cuDNN heuristics (pdiscoformer: its normalisation constants)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
        step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()


def test_ours_training_step_has_no_host_syncs():
    _assert_no_host_syncs("ours")


def test_scops_training_step_has_no_host_syncs():
    _assert_no_host_syncs("scops")


def test_pdiscoformer_training_step_has_no_host_syncs():
    """The paper preset's step (augmentation, two passes, eight losses, clipping, Adam) on DINOv2-reg ViT-B/14
    at 224 px, batch 4."""
    from benchmark.methods.pdiscoformer.bench import bench_setup, partbench_step

    _assert_step_has_no_host_syncs(
        partbench_step(bench_setup(4, 224, 8, 200, "vit_base_patch14_reg4_dinov2", None, torch.device("cuda"))))


def _assert_bf16_losses_close(method: str) -> None:
    step = _train_step(method, PAPER_BATCH, PAPER_SIZE)
    with torch.no_grad():
        ref, ref_terms = dataclasses.replace(step, amp=None).losses(0)
        low, low_terms = dataclasses.replace(step, amp="bf16").losses(0)
    ref, low = float(ref), float(low)
    terms = ", ".join(f"{name} {float(ref_terms[name]):.6g} vs {float(low_terms[name]):.6g}" for name in ref_terms)
    assert abs(low - ref) <= 1e-2 * abs(ref), f"{method}: bf16 total {low:.6g} vs float32 {ref:.6g} ({terms})"


def test_ours_bf16_losses_within_1e_2_of_float32():
    _assert_bf16_losses_close("ours")


def test_scops_bf16_losses_within_1e_2_of_float32():
    _assert_bf16_losses_close("scops")


def _synthetic(num_test: int = 6, image_size: int = 32):
    from benchmark.core.registry import DATASETS

    return DATASETS.get("synthetic")(split="test", view="fg", num_test=num_test, image_size=image_size)


def _method(name: str, **params):
    from benchmark.core.registry import METHODS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return METHODS.get(name)(weights="random", batch_size=4, **params)


def test_kmeans_on_cuda_assigns_like_the_cpu():
    from benchmark.methods.features import FeatureExtractor

    data = _synthetic()
    method = _method("kmeans", niter=10, nredo=1).fit(data, seed=0, device="cuda")
    assert method.centroids_.is_cuda
    again = _method("kmeans", niter=10, nredo=1).fit(data, seed=0, device="cuda")
    torch.testing.assert_close(again.centroids_, method.centroids_)  # deterministic on the GPU

    batch = next(iter(data.batches(6, device="cuda")))
    maps = method.predict(batch)
    assert maps.scores.is_cuda and maps.scores.shape == (6, 4, 32, 32)
    torch.testing.assert_close(maps.scores.sum(1), torch.ones(6, 32, 32, device="cuda"))
    # The same centroids and backbone on the CPU give the same assignment (float16 features both sides).
    cpu = copy.copy(method)
    cpu.extractor_ = FeatureExtractor(copy.deepcopy(method.extractor_.backbone).cpu())
    cpu.centroids_ = method.centroids_.cpu()
    cpu_maps = cpu.predict(next(iter(data.batches(6))))
    agree = (cpu_maps.part_labels() == maps.part_labels().cpu()).float().mean().item()
    assert agree > 0.99, agree


def test_dff_nmf_on_cuda_matches_the_cpu():
    from benchmark.methods.nmf import nmf

    g = torch.Generator().manual_seed(0)
    V = (torch.rand(2048, 4, generator=g) @ torch.rand(4, 512, generator=g)
         + (torch.randn(2048, 512, generator=g) * 0.3).clamp_min(0))
    W0, H0 = torch.rand(2048, 4, generator=g), torch.rand(4, 512, generator=g)
    W_cpu, H_cpu, _ = nmf(V, 4, max_iter=50, tol=0.0, W0=W0, H0=H0)
    W_gpu, H_gpu, _ = nmf(V.cuda(), 4, max_iter=50, tol=0.0, W0=W0, H0=H0)
    assert W_gpu.is_cuda
    torch.testing.assert_close(W_gpu.cpu(), W_cpu, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(H_gpu.cpu(), H_cpu, rtol=1e-3, atol=1e-5)


def test_dff_runs_end_to_end_on_cuda():
    data = _synthetic()
    method = _method("dff", max_iter=60).fit(data, seed=0, device="cuda")
    maps = method.predict(next(iter(data.batches(6, device="cuda"))))
    assert maps.scores.is_cuda and maps.scores.shape == (6, 4, 32, 32)
    torch.testing.assert_close(maps.scores.sum(1), torch.ones(6, 32, 32, device="cuda"))
    again = _method("dff", max_iter=60).fit(data, seed=0, device="cuda")
    torch.testing.assert_close(again.predict(next(iter(data.batches(6, device="cuda")))).scores, maps.scores)
