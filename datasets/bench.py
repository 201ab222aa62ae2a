"""Speed benchmarks of the datasets (``benchmark bench synthetic|cub-index``), each against a baseline
measured in the same run. See :mod:`benchmark.benches` for the convention."""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.core.registry import register_bench
from benchmark.datasets.cub import NUM_PARTS, PART_NAMES, TABLES, CUB
from benchmark.datasets.synthetic import SyntheticCreatures


@register_bench("synthetic")
def bench_synthetic(n: int = 300, image_size: int = 64, view: str = "fg") -> str:
    """Samples per second of the synthetic dataset (rendering, then from the scene cache), against decoding
    the same number of in-memory PNGs of the same size into tensors (the least a file-backed dataset pays)."""
    from PIL import Image

    n, image_size = int(n), int(image_size)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    start = time.perf_counter()
    for _ in range(n):
        with Image.open(io.BytesIO(data)) as im:
            torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1).contiguous()
    baseline = time.perf_counter() - start

    ds = SyntheticCreatures(split="test", view=view, num_test=n, image_size=image_size)
    timings = []
    for _ in range(2):  # first pass renders, second pass reads the scene cache
        start = time.perf_counter()
        for i in range(n):
            ds[i]
        timings.append(time.perf_counter() - start)
    lines = [f"synthetic {view} view, {n} samples at {image_size}x{image_size}:",
             f"  baseline  PNG decode   {n / baseline:10.0f} samples/s   1.00x",
             f"  render    (cold)       {n / timings[0]:10.0f} samples/s   {baseline / timings[0]:.2f}x",
             f"  cached    (warm)       {n / timings[1]:10.0f} samples/s   {baseline / timings[1]:.2f}x"]
    return "\n".join(lines)


def write_annotation_tree(root: Path, n_images: int = 11788, crlf: bool = False) -> Path:
    """Write the text files of a CUB tree with ``n_images`` images (no images; for the indexing bench)."""
    end = "\r\n" if crlf else "\n"
    (root / "parts").mkdir(parents=True, exist_ok=True)
    ids = np.arange(1, n_images + 1)
    cls = 1 + (ids - 1) % 200
    (root / "images.txt").write_text("".join(f"{i} {c:03d}.C/img_{i}.jpg{end}" for i, c in zip(ids, cls)))
    (root / "train_test_split.txt").write_text("".join(f"{i} {i % 2}{end}" for i in ids))
    (root / "bounding_boxes.txt").write_text("".join(f"{i} 10.0 20.0 100.0 120.0{end}" for i in ids))
    (root / "image_class_labels.txt").write_text("".join(f"{i} {c}{end}" for i, c in zip(ids, cls)))
    (root / "classes.txt").write_text("".join(f"{c} {c:03d}.C{end}" for c in range(1, 201)))
    (root / "parts" / "parts.txt").write_text("".join(f"{p + 1} {n}{end}" for p, n in enumerate(PART_NAMES)))
    (root / "parts" / "part_locs.txt").write_text(
        "".join(f"{i} {p} {p * 3.0:.1f} {p * 2.0:.1f} {p % 2}{end}" for i in ids for p in range(1, NUM_PARTS + 1)))
    return root


def _python_baseline(root: Path) -> int:
    """The naive index: every file parsed line by line in Python (what the vectorised reader replaces)."""
    rows = 0
    for name, kinds in TABLES.items():
        for line in (root / name).read_text().splitlines():
            fields = line.split()
            [k(v) for k, v in zip(kinds, fields)]
            rows += 1
    return rows


@register_bench("cub-index")
def bench_cub_index(images: int = 11788, repeats: int = 3) -> str:
    """Indexing a full-size CUB annotation tree (vectorised pandas parse + checks) vs a line-by-line
    Python parse of the same files (baseline, no checks), best of ``repeats``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = write_annotation_tree(Path(tmp) / "CUB_200_2011", int(images), crlf=True)

        def best(fn) -> float:
            times = []
            for _ in range(int(repeats)):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            return min(times)

        ours = best(lambda: CUB(root, split="test"))
        base = best(lambda: _python_baseline(root))
    return (f"cub-index ({images} images, CRLF): vectorised index {ours * 1000:.0f} ms, line-by-line Python "
            f"parse {base * 1000:.0f} ms, speed-up x{base / ours:.1f}")
