"""Numbers published for ``ours`` (Choudhury et al. 2021, supplementary material), x100, to compare with.

Keys: (dataset, K) -> {metric: mean} for the K sweep, and (dataset, 4, "5 seeds") -> {metric: (mean, std)}.
The paper's tables come from the reference evaluation notebooks, i.e. ``--protocol legacy``.
"""

from __future__ import annotations

K_SWEEP = {
    ("cub", 4): {"fg_nmi": 46.0, "fg_ari": 21.0, "nmi": 43.5, "ari": 19.6},
    ("cub", 6): {"fg_nmi": 47.2, "fg_ari": 23.0, "nmi": 44.4, "ari": 20.7},
    ("cub", 8): {"fg_nmi": 58.2, "fg_ari": 34.0, "nmi": 51.5, "ari": 28.3},
    ("deepfashion", 4): {"fg_nmi": 44.8, "fg_ari": 46.6, "nmi": 68.1, "ari": 90.6},
    ("deepfashion", 6): {"fg_nmi": 43.5, "fg_ari": 42.2, "nmi": 66.2, "ari": 91.0},
    ("deepfashion", 8): {"fg_nmi": 39.2, "fg_ari": 30.7, "nmi": 62.4, "ari": 90.6},
}
FIVE_SEEDS_K4 = {
    "cub": {"fg_nmi": (45.3, 2.8), "fg_ari": (20.5, 1.5), "nmi": (42.8, 1.7), "ari": (19.2, 0.5)},
    "deepfashion": {"fg_nmi": (44.6, 0.4), "fg_ari": (46.1, 0.6), "nmi": (68.2, 0.2), "ari": (90.7, 0.1)},
}


def paper_rows(dataset: str, num_parts: int) -> list[dict]:
    """Pseudo summary rows (x100) for the report: ``ours (paper)`` (the K sweep: one model per K, the
    released checkpoints at K=4) and ``ours (paper, 5 seeds)`` (mean ± std, K=4 only)."""
    rows = []
    for metric, mean in K_SWEEP.get((dataset, num_parts), {}).items():
        rows.append({"label": "ours (paper)", "metric": metric, "mean": mean, "std": float("nan"), "seeds": 1})
    if num_parts == 4:
        for metric, (mean, std) in FIVE_SEEDS_K4.get(dataset, {}).items():
            rows.append({"label": "ours (paper, 5 seeds)", "metric": metric, "mean": mean, "std": std, "seeds": 5})
    return rows
