"""PNG figures: images with ground-truth and predicted part overlays, side by side."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.atomic import atomic_write_bytes


def _palette(n: int) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return np.array([cmap(i % 20)[:3] for i in range(max(n, 1))])


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Colour every label > 0 over an (H, W, 3) image in [0, 1]; label 0 (background) is left as is."""
    colours = _palette(int(labels.max()) + 1 if labels.size else 1)
    out = image.copy()
    fg = labels > 0
    out[fg] = (1 - alpha) * image[fg] + alpha * colours[(labels[fg] - 1) % len(colours)]
    return out


def comparison_figure(path: str | Path, examples: dict[str, dict[str, Any]], *, title: str = "") -> Path:
    """Rows = images, columns = image, ground truth, one column per method (``examples[method]`` as kept
    by :func:`benchmark.runner.run` with ``examples=N``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    methods = list(examples)
    reference = examples[methods[0]]
    images = reference["images"].permute(0, 2, 3, 1).clamp(0, 1).numpy()
    n_rows, n_cols = len(images), 2 + len(methods)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.8 * n_cols, 1.8 * n_rows + 0.4), squeeze=False)
    for r in range(n_rows):
        axes[r, 0].imshow(images[r])
        gt = reference.get("gt")
        if gt is not None:
            axes[r, 1].imshow(overlay(images[r], gt[r].numpy()))
        else:
            axes[r, 1].imshow(images[r])
        if reference.get("keypoints") is not None:
            kp, vis = reference["keypoints"][r].numpy(), reference["visible"][r].numpy()
            axes[r, 1].scatter(kp[vis, 0] - 0.5, kp[vis, 1] - 0.5, s=8, c=np.arange(vis.sum()) % 20,
                               cmap="tab20", edgecolors="white", linewidths=0.4)
        for c, method in enumerate(methods):
            axes[r, 2 + c].imshow(overlay(images[r], examples[method]["pred"][r].numpy()))
    for c, name in enumerate(["image", "ground truth", *methods]):
        axes[0, c].set_title(name, fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
