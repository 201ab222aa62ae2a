"""``benchmark bench output-cache``: what the network-output cache costs and saves per evaluation batch.

:class:`~.output_cache.CachedNetwork` keys each input batch by the SHA-256 of its bytes, read on the host, and
stores the output on the host. On a CPU the forward pass dwarfs that; on a GPU the hash of a paper-size batch
(16 x 3 x 518 x 518 floats, 51 MB) may cost more than the forward it saves. This benchmark times, on the same
network and batches, the plain forward pass (the baseline), a miss (hash, forward, copy to the host, atomic
write) and a hit (hash, read, copy to the device), and checks that a hit returns the forward's exact output.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import torch

from benchmark.core.registry import register_bench
from benchmark.methods.step_timing import sync


@register_bench("output-cache")
def bench_output_cache(batch_size: int = 16, size: int = 518, backbone: str = "vit_base_patch14_reg4_dinov2",
                       num_parts: int = 8, batches: int = 5, device: str = "auto", quick: bool = False) -> str:
    """ms per evaluation batch of a pdiscoformer network: plain forward vs the output cache's miss and hit.

    Defaults: paper sizes (16 images of 518 px on DINOv2-reg ViT-B/14, K = 8), random weights, ``batches``
    distinct batches timed once each as misses, then again as hits (median of each). ``quick=true``: 2 images
    of 112 px on ViT-S/14-reg, 3 batches."""
    from benchmark.factories import resolve_device
    from benchmark.methods.pdiscoformer.network import build_network
    from benchmark.methods.training.output_cache import CachedNetwork, OutputField, tensor_digest

    if str(quick).lower() in ("1", "true", "yes"):
        batch_size, size, backbone, batches = 2, 112, "vit_small_patch14_reg4_dinov2", 3
    batch_size, size, num_parts, batches = int(batch_size), int(size), int(num_parts), max(1, int(batches))
    dev = torch.device(resolve_device(device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = OutputField(build_network(backbone, size, num_parts, 200, gumbel=False).to(dev).eval(), "maps")
        inputs = [torch.rand(batch_size, 3, size, size, device=dev) for _ in range(batches)]

    def timed(call, tensor):
        sync(dev)
        start = time.perf_counter()
        out = call(tensor)
        sync(dev)
        return (time.perf_counter() - start) * 1000.0, out

    with torch.inference_mode(), tempfile.TemporaryDirectory() as folder:
        network(inputs[0])  # warm-up (kernels, allocator)
        plain = [timed(network, x) for x in inputs]
        cached = CachedNetwork(network, folder, label="bench")
        cached.identity  # the network's digest is computed once per model, not per batch
        missed = [timed(cached, x) for x in inputs]
        hit = [timed(cached, x) for x in inputs]
        hashed = [timed(tensor_digest, x) for x in inputs]
    exact = all(torch.equal(h[1], p[1]) for h, p in zip(hit, plain))
    if cached.misses != batches or cached.hits != batches:
        raise RuntimeError(f"bench output-cache: expected {batches} misses and hits, got {cached.misses} and "
                           f"{cached.hits}")
    megabytes = inputs[0].numel() * inputs[0].element_size() / 2**20
    rows = [("network alone", statistics.median(t for t, _ in plain)),
            ("cache miss (hash + forward + store)", statistics.median(t for t, _ in missed)),
            ("cache hit (hash + read)", statistics.median(t for t, _ in hit)),
            ("the input's hash alone", statistics.median(t for t, _ in hashed))]
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{torch.get_num_threads()} threads"
    lines = [f"output-cache bench: {batch_size} x {size}x{size} px per batch ({megabytes:.1f} MiB of input), "
             f"{backbone}, K = {num_parts}; device {dev} ({where}); median of {batches} batches",
             f"  check: a hit returns the forward's exact output: {'yes' if exact else 'NO'}"]
    width = max(len(name) for name, _ in rows)
    base = rows[0][1]
    for name, ms in rows:
        lines.append(f"  {name:<{width}} {ms:9.2f} ms/batch   x{base / ms:.2f} of the network alone")
    if not exact:
        raise RuntimeError("\n".join(lines + ["a cache hit differs from the forward pass"]))
    lines.append(f"  speed-up of a cache hit: x{base / rows[2][1]:.2f} vs the network alone; a cache miss: "
                 f"x{base / rows[1][1]:.2f}")
    return "\n".join(lines)
