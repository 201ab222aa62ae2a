"""``benchmark bench metrics``: the streaming contingency table against scikit-learn on the same labels."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch

from benchmark.core.registry import register_bench, register_bench_check
from benchmark.metrics.clustering import ContingencyTable


#: Peak bytes per label pair: the two int64 label arrays, the draw's temporaries, the contingency table's
#: combined index and scikit-learn's own copies (measured about 50 on 1e7 pairs; rounded up).
BYTES_PER_LABEL = 64


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _refuse_beyond_memory(n: int) -> None:
    """``-p n`` whose label arrays cannot fit in the memory available now: one clear error, not a crash."""
    need, have = n * BYTES_PER_LABEL, _available_memory()
    if have is not None and need > have:
        from benchmark.core.errors import InvalidParameterError

        raise InvalidParameterError(f"bench metrics -p n={n:,} needs about {need / 2 ** 30:,.1f} GiB of memory, "
                                    f"{have / 2 ** 30:,.1f} GiB is available; use a smaller -p n (e.g. "
                                    f"-p n={max(1, have // BYTES_PER_LABEL // 2)})")


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

    _refuse_beyond_memory(n)

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


@register_bench_check("metrics")  # run by `benchmark bench` before it starts
def _check_metrics_options(n: int = 100_000_000, **_: object) -> None:
    _refuse_beyond_memory(int(n))
