"""Exact, streaming NMI and ARI from a contingency table.

The reference evaluations pool hundreds of millions of labels (every pixel of a test set) and call
scikit-learn, whose pair counts overflowed int64 in old versions (spec §8.22). Both scores depend on the
labels only through the contingency table ``n[i, j] = #{true == i and pred == j}``, so
:class:`ContingencyTable` accumulates that table batch by batch (one ``bincount`` per batch on the
labels' device), merges tables from other shards, and evaluates:

* :meth:`ContingencyTable.nmi` -- ``normalized_mutual_info_score`` with arithmetic averaging, computed in
  float64 term by term the way scikit-learn does (same special cases), so both agree to ~1e-12;
* :meth:`ContingencyTable.ari` -- ``adjusted_rand_score`` with exact Python-integer pair counts (no
  overflow whatever the number of labels), rounded to float once at the end.

Labels are integers; their values only identify clusters (gaps such as {0, 7, 1000} are fine, negative
values too). Small non-negative labels take a dense fast path (the table row/column index *is* the
label); anything else goes through a sorted vocabulary of the values seen so far.
"""

from __future__ import annotations

from fractions import Fraction
from math import log
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["ContingencyTable", "nmi", "ari"]

# Largest dense block (cells) one update may allocate; beyond it labels are compacted by value first.
_DENSE_CELLS = 1 << 22


def _as_labels(x: Any, name: str) -> Tensor:
    """A 1-D integer tensor view of ``x`` (numpy array, tensor or sequence), without copying if possible."""
    if not isinstance(x, Tensor):
        arr = np.asarray(x)
        if arr.dtype.kind == "u" and arr.dtype.itemsize > 1:  # torch has few kernels for uint16/32/64
            arr = arr.astype(np.int64)
        x = torch.as_tensor(arr)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(x.shape)}")
    if x.dtype == torch.bool or x.dtype in (torch.uint16, torch.uint32, torch.uint64):
        x = x.to(torch.int64)
    if x.dtype.is_floating_point or x.dtype.is_complex:
        raise ValueError(f"{name} must hold integer labels, got dtype {x.dtype}")
    return x


def _union(a: Tensor, b: Tensor) -> Tensor:
    if a.numel() == 0:
        return b
    if b.numel() == 0 or torch.equal(a, b):
        return a
    return torch.unique(torch.cat([a, b]))  # sorted


class ContingencyTable:
    """Streaming contingency table of (true, pred) label pairs; exact NMI / ARI (see module docstring).

    ``update(true, pred)`` takes two 1-D integer arrays (numpy or torch, any device) of equal length;
    ``merge(other)`` adds another table (e.g. from another process). The table itself is kept on the CPU
    as int64 counts indexed by the sorted label values seen so far.
    """

    def __init__(self) -> None:
        self.true_values = torch.zeros(0, dtype=torch.int64)  # sorted label values indexing the rows
        self.pred_values = torch.zeros(0, dtype=torch.int64)  # ... and the columns
        self.table = torch.zeros(0, 0, dtype=torch.int64)
        self._dense = True  # values are exactly arange(len): labels index the table directly

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_counts(cls, counts: Any, true_values: Any = None, pred_values: Any = None) -> "ContingencyTable":
        """A table with the given 2-D counts (rows = true labels, columns = predicted labels). Counts
        may exceed int64 only in total, not per cell."""
        counts = torch.as_tensor(np.asarray(counts, dtype=np.int64))
        if counts.ndim != 2 or bool((counts < 0).any()):
            raise ValueError("counts must be a 2-D array of non-negative integers")
        tv = torch.arange(counts.shape[0]) if true_values is None else torch.as_tensor(np.asarray(true_values, dtype=np.int64))
        pv = torch.arange(counts.shape[1]) if pred_values is None else torch.as_tensor(np.asarray(pred_values, dtype=np.int64))
        table = cls()
        table._add_block(tv, pv, counts)
        return table

    def update(self, true: Any, pred: Any) -> None:
        """Add the pairs ``(true[i], pred[i])``."""
        t = _as_labels(true, "true labels")
        p = _as_labels(pred, "predicted labels")
        if t.shape != p.shape:
            raise ValueError(f"true and predicted labels differ in length: {t.shape[0]} != {p.shape[0]}")
        if p.device != t.device:
            p = p.to(t.device)
        if t.numel() == 0:
            return
        t_min, t_max = (int(v) for v in torch.aminmax(t))
        p_min, p_max = (int(v) for v in torch.aminmax(p))
        n_t = max(t_max + 1, self.true_values.numel())
        n_p = max(p_max + 1, self.pred_values.numel())
        if self._dense and t_min >= 0 and p_min >= 0 and n_t * n_p <= _DENSE_CELLS:
            # Fast path: one int64 key array (the only copy), one bincount on the labels' device.
            keys = t.to(torch.int64, copy=True).mul_(n_p).add_(p)
            block = torch.bincount(keys, minlength=n_t * n_p).view(n_t, n_p)
            self._add_block(torch.arange(n_t), torch.arange(n_p), block.cpu())
            return
        t_vals, t_idx = torch.unique(t, return_inverse=True)
        p_vals, p_idx = torch.unique(p, return_inverse=True)
        keys = t_idx.to(torch.int64).mul_(p_vals.numel()).add_(p_idx)
        block = torch.bincount(keys, minlength=t_vals.numel() * p_vals.numel()).view(t_vals.numel(), p_vals.numel())
        self._add_block(t_vals.cpu().to(torch.int64), p_vals.cpu().to(torch.int64), block.cpu())

    def merge(self, other: "ContingencyTable") -> None:
        """Add the counts of ``other`` (tables from other shards / processes)."""
        self._add_block(other.true_values, other.pred_values, other.table)

    def _add_block(self, t_vals: Tensor, p_vals: Tensor, block: Tensor) -> None:
        """``table[t_vals, p_vals] += block`` (by label value), growing the vocabularies as needed."""
        new_t, new_p = _union(self.true_values, t_vals), _union(self.pred_values, p_vals)
        if new_t is not self.true_values or new_p is not self.pred_values:
            grown = torch.zeros(new_t.numel(), new_p.numel(), dtype=torch.int64)
            if self.table.numel():
                rows = torch.searchsorted(new_t, self.true_values)
                cols = torch.searchsorted(new_p, self.pred_values)
                grown[rows[:, None], cols[None, :]] = self.table
            self.true_values, self.pred_values, self.table = new_t, new_p, grown
            self._dense = bool(torch.equal(new_t, torch.arange(new_t.numel()))) and bool(
                torch.equal(new_p, torch.arange(new_p.numel())))
        if block.numel() == 0:
            return
        if self._dense and t_vals.numel() and int(t_vals[0]) == 0 and int(t_vals[-1]) == t_vals.numel() - 1 \
                and int(p_vals[0]) == 0 and int(p_vals[-1]) == p_vals.numel() - 1:
            self.table[: t_vals.numel(), : p_vals.numel()] += block
            return
        rows = torch.searchsorted(self.true_values, t_vals)
        cols = torch.searchsorted(self.pred_values, p_vals)
        self.table[rows[:, None], cols[None, :]] += block

    # -- results --------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Number of label pairs counted."""
        return int(self.table.sum()) if self.table.numel() else 0

    def counts(self) -> np.ndarray:
        """The int64 table restricted to the labels that occur (no empty rows or columns)."""
        table = self.table.numpy()
        if table.size == 0:
            return np.zeros((0, 0), dtype=np.int64)
        return table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]

    def require_items(self, min_items: int = 1, what: str = "label pairs") -> None:
        """Raise :class:`~benchmark.core.errors.EmptyEvaluationError` unless at least ``min_items`` pairs
        were counted (at least one). The pure :meth:`nmi`/:meth:`ari` follow scikit-learn, which scores an
        empty input 1.0; a metric reported to users calls this first, so that an evaluation over nothing
        (or over fewer items than the labels it must tell apart) is an error, never 100.00."""
        from benchmark.core.errors import EmptyEvaluationError

        total = self.total
        if total == 0:
            raise EmptyEvaluationError(f"no {what} to score (0 items)")
        if total < min_items:
            raise EmptyEvaluationError(f"only {total} {what} to score, fewer than the {min_items} labels "
                                       "they must tell apart")

    def nmi(self) -> float:
        """Normalised mutual information, arithmetic mean normaliser (scikit-learn's default)."""
        return _nmi_from_counts(self.counts())

    def ari(self) -> float:
        """Adjusted Rand index, exact integer pair counts."""
        return _ari_from_counts(self.counts())

    def __repr__(self) -> str:
        return f"ContingencyTable(total={self.total}, shape={tuple(self.counts().shape)})"


def _nmi_from_counts(n: np.ndarray) -> float:
    """scikit-learn's ``normalized_mutual_info_score`` (arithmetic) on a table without empty rows/cols,
    with the same special cases and the same float64 formulas."""
    n_classes, n_clusters = n.shape
    if n_classes == n_clusters == 1 or n_classes == n_clusters == 0:
        return 1.0  # both labelings unsplit (or no data): a perfect match
    if n_classes == 1 or n_clusters == 1:
        return 0.0  # one side has zero entropy -> MI = 0
    rows = n.sum(axis=1).astype(np.float64)
    cols = n.sum(axis=0).astype(np.float64)
    nzx, nzy = np.nonzero(n)
    nz = n[nzx, nzy].astype(np.float64)
    total = float(nz.sum())
    p_ij = nz / total
    # log(r_i c_j) as a sum of logs: the product can overflow int64 for billions of labels.
    log_outer = -(np.log(rows[nzx]) + np.log(cols[nzy])) + log(rows.sum()) + log(cols.sum())
    terms = p_ij * (np.log(nz) - log(total)) + p_ij * log_outer
    terms = np.where(np.abs(terms) < np.finfo(np.float64).eps, 0.0, terms)
    mi = float(np.clip(terms.sum(), 0.0, None))
    if mi == 0.0:
        return 0.0
    h_true = float(-np.sum((rows / rows.sum()) * (np.log(rows) - log(rows.sum()))))
    h_pred = float(-np.sum((cols / cols.sum()) * (np.log(cols) - log(cols.sum()))))
    return float(mi / ((h_true + h_pred) / 2.0))


def _sum_squares(values: np.ndarray) -> int:
    """Exact sum of squares of non-negative int64 values (Python ints once int64 could overflow)."""
    if values.size == 0:
        return 0
    if int(values.max()) < (1 << 31) and values.size * (int(values.max()) ** 2) < (1 << 63):
        return int(np.sum(values * values))
    return sum(v * v for v in values.tolist())


def _ari_from_counts(n: np.ndarray) -> float:
    """scikit-learn's ``adjusted_rand_score`` from the pair confusion matrix, in exact integers."""
    total = int(n.sum()) if n.size else 0
    sum_sq = _sum_squares(n[n > 0])
    sum_rows_sq = _sum_squares(n.sum(axis=1))
    sum_cols_sq = _sum_squares(n.sum(axis=0))
    # Pair confusion matrix (ordered pairs), as sklearn.metrics.cluster.pair_confusion_matrix.
    tp = sum_sq - total
    fp = sum_cols_sq - sum_sq
    fn = sum_rows_sq - sum_sq
    tn = total * total - fp - fn - sum_sq
    if fn == 0 and fp == 0:
        return 1.0  # empty data or identical partitions
    return float(Fraction(2 * (tp * tn - fn * fp), (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)))


def _table(labels_true: Any, labels_pred: Any) -> ContingencyTable:
    table = ContingencyTable()
    table.update(labels_true, labels_pred)
    return table


def nmi(labels_true: Any, labels_pred: Any) -> float:
    """NMI (arithmetic) of two 1-D integer labelings (numpy or torch); equals scikit-learn's
    ``normalized_mutual_info_score``."""
    return _table(labels_true, labels_pred).nmi()


def ari(labels_true: Any, labels_pred: Any) -> float:
    """Adjusted Rand index of two 1-D integer labelings (numpy or torch); equals scikit-learn's
    ``adjusted_rand_score`` (exact for any number of labels)."""
    return _table(labels_true, labels_pred).ari()
