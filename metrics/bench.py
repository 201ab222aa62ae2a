"""``benchmark bench metrics``: the streaming contingency table against scikit-learn on the same labels."""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from benchmark.core.registry import register_bench
from benchmark.metrics.clustering import ContingencyTable


@register_bench("metrics")
def bench_metrics(n: int = 100_000_000, classes: int = 16, clusters: int = 5, seed: int = 0) -> str:
    """Time ContingencyTable (update + nmi + ari) and scikit-learn's NMI + ARI on ``n`` random labels
    (predictions correlated with the truth), check both agree to 1e-9 and report the speed ratio."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    n, classes, clusters = int(n), int(classes), int(clusters)
    if n < 1 or classes < 1 or clusters < 1:
        from benchmark.core.errors import InvalidParameterError

        raise InvalidParameterError(f"n, classes and clusters must be >= 1, got n={n}, classes={classes}, "
                                    f"clusters={clusters}")

    def phase(text: str) -> None:  # a line per phase on stderr: 1e8 labels take minutes on a laptop
        print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    phase(f"drawing {n:,} label pairs")
    rng = np.random.default_rng(int(seed))
    true = rng.integers(0, classes, size=n, dtype=np.int64)
    # Predictions agree with a fixed class -> cluster map 60 % of the time, uniform otherwise.
    pred = rng.integers(0, clusters, size=n, dtype=np.int64)
    agree = rng.random(n) < 0.6
    pred[agree] = true[agree] % clusters
    del agree

    phase("ContingencyTable: update + nmi + ari")
    start = time.perf_counter()
    table = ContingencyTable()
    table.update(torch.from_numpy(true), torch.from_numpy(pred))
    ours_nmi, ours_ari = table.nmi(), table.ari()
    ours_s = time.perf_counter() - start

    phase(f"scikit-learn: nmi + ari (ContingencyTable took {ours_s:.2f} s)")
    start = time.perf_counter()
    ref_nmi = normalized_mutual_info_score(true, pred)
    ref_ari = adjusted_rand_score(true, pred)
    ref_s = time.perf_counter() - start

    diff = max(abs(ours_nmi - ref_nmi), abs(ours_ari - ref_ari))
    ok = diff <= 1e-9
    lines = [
        f"metrics bench: n={n:,} labels, {classes} classes, {clusters} clusters, seed {seed}, torch threads {torch.get_num_threads()}",
        f"  ContingencyTable (update + nmi + ari): {ours_s:9.3f} s   nmi={ours_nmi:.12f} ari={ours_ari:.12f}",
        f"  scikit-learn (nmi + ari)             : {ref_s:9.3f} s   nmi={ref_nmi:.12f} ari={ref_ari:.12f}",
        f"  speed-up vs scikit-learn: {ref_s / max(ours_s, 1e-12):.1f}x   max |difference| = {diff:.2e} ({'OK' if ok else 'MISMATCH'})",
    ]
    if not ok:
        raise AssertionError("\n".join(lines))
    return "\n".join(lines)
