"""Published numbers a plan compares with, as ``(method, dataset, K, metric) -> (mean, std, source)`` x100.

Named tables (a plan's ``published = "k-sweep"``) come from the numbers partbench ships for the paper
(the data file read by :func:`benchmark.published.published_results`); a plan's own ``[[published]]`` entries add to them. Published numbers were
produced by the reference evaluation notebooks, so they sit beside the ``legacy`` cells, and only in tables
whose mask source matches theirs: the paper evaluated with predicted fg/bg masks (``predicted``: the
plan's ``fgbg`` or ``predicted:DIR`` sources), so its numbers are not put beside ground-truth-mask cells.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.core.protocol import MaskSource

#: what a published number's ``masks`` may say: an argument-free mask kind, or ``predicted`` = any source of
#: predicted fg/bg masks (a kind with ``MaskSource.predicted``: the plan's ``fgbg``, ``predicted:DIR``)
PUBLISHED_MASKS = ("gt", "none", "method", "predicted")


@dataclass(frozen=True)
class Published:
    mean: float
    std: float | None
    source: str
    masks: str | None = None  # the mask source it was computed with (None: any)

    def matches(self, mask_source: str) -> bool:
        if self.masks is None:
            return True
        kind, argument = MaskSource.split(mask_source, in_plans=True)
        if self.masks == "predicted":
            return kind.predicted
        return argument is None and kind.kind == self.masks


def _table(label: str) -> dict[tuple, Published]:
    """One table of the packaged published numbers (:mod:`benchmark.published`), under the paper's protocol."""
    import math

    from benchmark.core.protocol import PAPER_PROTOCOL
    from benchmark.published import published_results

    return {(r.method, r.dataset, r.num_parts, r.metric):
            Published(r.mean_x100, None if math.isnan(r.std_x100) else r.std_x100, r.source, "predicted")
            for r in published_results(label=label, protocol=PAPER_PROTOCOL)}


PUBLISHED_TABLES = {"k-sweep": lambda: _table("paper"), "five-seeds": lambda: _table("paper, 5 seeds")}


def published_numbers(table: str | None, extra=()) -> dict[tuple, Published]:
    """The named table (or none) plus a plan's own ``[[published]]`` entries (which win)."""
    out = dict(PUBLISHED_TABLES[table]()) if table else {}
    for number in extra:
        out[(number.method, number.dataset, number.num_parts, number.metric)] = Published(
            number.mean, number.std, number.source or "the plan's [[published]]", number.masks)
    return out
