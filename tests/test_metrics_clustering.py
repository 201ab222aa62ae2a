"""ContingencyTable / nmi / ari against scikit-learn and exact rational arithmetic."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from benchmark.core.registry import BENCHES, METRICS
from benchmark.metrics import ContingencyTable, ari, nmi

TOL = 1e-9


def _sk(a, b):
    return normalized_mutual_info_score(a, b), adjusted_rand_score(a, b)


def _close(a, b, tol=TOL):
    return abs(a - b) <= tol


def test_random_cases_match_sklearn():
    rng = np.random.default_rng(1234)
    for case in range(400):
        n = int(rng.integers(0, 300))
        a = rng.integers(0, int(rng.integers(1, 9)), size=n)
        b = rng.integers(0, int(rng.integers(1, 9)), size=n)
        if case % 4 == 1:  # correlated predictions
            b = np.where(rng.random(n) < 0.7, a % 3, b)
        if case % 5 == 2:  # gaps and large values (sparse path)
            a = a * 977 + 10**12
        if case % 7 == 3:  # negative labels
            b = -b - 5
        ref_nmi, ref_ari = _sk(a, b)
        assert _close(nmi(a, b), ref_nmi), (case, nmi(a, b), ref_nmi)
        assert _close(ari(a, b), ref_ari), (case, ari(a, b), ref_ari)


@pytest.mark.parametrize("a,b", [
    ([], []),
    ([3], [5]),
    ([0, 0, 0, 0], [1, 1, 1, 1]),  # single cluster on both sides
    ([0, 0, 0, 0], [0, 1, 2, 3]),  # one side single, other all distinct
    ([0, 1, 2, 3], [7, 7, 7, 7]),
    ([0, 1, 2, 3], [3, 2, 1, 0]),  # all distinct both sides
    ([0, 1, 2, 3, 4, 5], [0, 0, 1, 1, 2, 2]),
    ([0, 7, 1000, 7, 0, 1000], [5, 5, 5, 9, 9, 9]),  # label gaps
    ([0, 7, 1000, 7, 0, 1000], [0, 7, 1000, 7, 0, 1000]),
    ([0, 0, 1, 1], [0, 1, 0, 1]),  # ARI -0.5
])
def test_degenerate_cases(a, b):
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    ref_nmi, ref_ari = _sk(a, b)
    assert _close(nmi(a, b), ref_nmi)
    assert _close(ari(a, b), ref_ari)
    assert _close(nmi(torch.from_numpy(a), torch.from_numpy(b)), ref_nmi)


def test_streaming_and_merge_equal_single_pass():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 12, size=5000)
    b = np.where(rng.random(5000) < 0.5, a // 3, rng.integers(0, 6, size=5000))
    single = ContingencyTable()
    single.update(a, b)
    streamed = ContingencyTable()
    shards = [ContingencyTable() for _ in range(3)]
    cuts = [0, 13, 700, 701, 2500, 5000]
    for i, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:])):
        streamed.update(a[lo:hi], b[lo:hi])
        # shards see different label ranges (shard 2 starts with large labels -> sparse path)
        shards[i % 3].update(a[lo:hi] + (10**9 if i == 2 else 0), b[lo:hi])
    merged = ContingencyTable()
    for s in shards:
        merged.merge(s)
    ref_nmi, ref_ari = _sk(a, b)
    for t in (single, streamed):
        assert t.total == 5000
        assert _close(t.nmi(), ref_nmi) and _close(t.ari(), ref_ari)
        np.testing.assert_array_equal(t.counts(), single.counts())
    # the shifted shard splits labels -> compare to sklearn on the same shifted labels
    shifted = a.copy()
    shifted[cuts[2]:cuts[3]] += 10**9
    assert merged.total == 5000
    assert _close(merged.nmi(), normalized_mutual_info_score(shifted, b))
    assert _close(merged.ari(), adjusted_rand_score(shifted, b))


def test_torch_equals_numpy_and_dtypes():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 10, size=2000)
    b = rng.integers(0, 4, size=2000)
    ref = (nmi(a, b), ari(a, b))
    for dt in (torch.int64, torch.int32, torch.uint8, torch.int16):
        ta, tb = torch.from_numpy(a).to(dt), torch.from_numpy(b).to(dt)
        assert (nmi(ta, tb), ari(ta, tb)) == pytest.approx(ref, abs=1e-15)
    assert (nmi(a.astype(np.int32), b.astype(np.uint16)), ari(a.astype(np.uint32), b)) == pytest.approx(ref, abs=1e-15)


def test_bad_input():
    with pytest.raises(ValueError, match="integer"):
        nmi(np.array([0.5, 1.0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="length"):
        ari(np.array([0, 1, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="1-D"):
        ContingencyTable().update(np.zeros((2, 2), dtype=int), np.zeros((2, 2), dtype=int))


def _ari_hubert_arabie(counts) -> Fraction:
    """Independent oracle: the textbook ARI from binomial coefficients, in exact rationals."""
    def c2(x):
        return x * (x - 1) // 2
    cells = [int(v) for row in counts for v in row]
    rows = [sum(int(v) for v in row) for row in counts]
    cols = [sum(int(row[j]) for row in counts) for j in range(len(counts[0]))]
    n = sum(rows)
    index = sum(c2(v) for v in cells)
    a, b = sum(c2(v) for v in rows), sum(c2(v) for v in cols)
    expected = Fraction(a * b, c2(n))
    maximum = Fraction(a + b, 2)
    return (index - expected) / (maximum - expected)


def test_ari_exact_beyond_int64():
    counts = np.array([[4_000_000_000, 1_000_000_007, 3],
                       [2_500_000_001, 3_999_999_999, 17],
                       [5, 11, 2_000_000_000]], dtype=np.int64)
    table = ContingencyTable.from_counts(counts, true_values=[0, 7, 1000], pred_values=[1, 2, 3])
    total = int(counts.sum())
    assert total**2 > 2**63  # pair counts overflow int64
    assert table.total == total
    assert table.ari() == float(_ari_hubert_arabie(counts.tolist()))
    # NMI is invariant to scaling all counts: a scaled small table vs sklearn on the small table's labels
    base = np.array([[4, 1, 0], [2, 4, 1], [0, 1, 3]])
    true = np.repeat(np.arange(3), base.sum(axis=1))
    pred = np.concatenate([np.repeat(np.arange(3), row) for row in base])
    big = ContingencyTable.from_counts(base * 1_000_000_007)
    assert big.total**2 > 2**63
    assert _close(big.nmi(), normalized_mutual_info_score(true, pred))
    assert big.ari() == float(_ari_hubert_arabie((base * 1_000_000_007).tolist()))


def test_repeated_merges_reach_billions():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 5, size=3000)
    b = np.where(rng.random(3000) < 0.6, a % 3, rng.integers(0, 3, size=3000))
    table = ContingencyTable()
    table.update(a, b)
    for _ in range(24):  # doubling: 3000 * 2**24 ~ 5e10 labels
        table.merge(ContingencyTable.from_counts(table.table.numpy(), table.true_values, table.pred_values))
    assert table.total == 3000 * 2**24
    assert table.ari() == float(_ari_hubert_arabie(table.counts().tolist()))
    assert abs(table.nmi() - nmi(a, b)) < 1e-9


def test_registered_metrics():
    fg_ari = METRICS.get("fg_ari")
    assert fg_ari(protocol="legacy", ground_truth="keypoints").label_set() == "fg_with_background"
    assert fg_ari(protocol="legacy", ground_truth="pixels").label_set() == "fg"
    assert fg_ari(protocol="corrected", ground_truth="keypoints").label_set() == "fg"
    assert METRICS.get("fg_nmi")().label_set() == "fg"
    assert (METRICS.get("nmi").role, METRICS.get("nmi")().label_set()) == ("full", "full")
    assert (METRICS.get("ari").role, METRICS.get("ari")().label_set()) == ("full", "full")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 6, 400), rng.integers(0, 3, 400)
    for name, ref in (("nmi", normalized_mutual_info_score), ("ari", adjusted_rand_score)):
        m1, m2 = METRICS.get(name)(), METRICS.get(name)()
        m1.update(torch.from_numpy(a[:150]), torch.from_numpy(b[:150]))
        m2.update(torch.from_numpy(a[150:]), torch.from_numpy(b[150:]))
        m1.merge(m2)
        assert m1.count == 400
        assert _close(m1.compute(), ref(a, b))
        m1.reset()
        assert m1.count == 0


def test_bench_code_path():
    report = BENCHES.get("metrics")(n=10_000, classes=4, clusters=3, seed=1)
    assert "speed-up" in report and "OK" in report
