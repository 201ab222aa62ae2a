"""Published numbers a plan compares with, as ``(method, dataset, K, metric) -> (mean, std, source)`` x100.

Named tables (a plan's ``published = "k-sweep"``) come from the numbers partbench ships for the paper
(:mod:`benchmark.paper`); a plan's own ``[[published]]`` entries add to them. Published numbers were
produced by the reference evaluation notebooks, so they sit beside the ``legacy`` cells, and only in tables
whose mask source matches theirs: the paper evaluated with predicted fg/bg masks (``predicted``: the
plan's ``fgbg`` or ``predicted:DIR`` sources), so its numbers are not put beside ground-truth-mask cells.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    mean: float
    std: float | None
    source: str
    masks: str | None = None  # the mask source they were computed with (None: any)

    def matches(self, mask_source: str) -> bool:
        if self.masks is None:
            return True
        if self.masks == "predicted":
            return mask_source == "fgbg" or mask_source.startswith("predicted:")
        return mask_source == self.masks


def _k_sweep() -> dict[tuple, Published]:
    from benchmark.paper import K_SWEEP

    return {("ours", dataset, k, metric): Published(mean, None, "Choudhury et al. 2021, supp., K sweep",
                                                         "predicted")
            for (dataset, k), values in K_SWEEP.items() for metric, mean in values.items()}


def _five_seeds() -> dict[tuple, Published]:
    from benchmark.paper import FIVE_SEEDS_K4

    return {("ours", dataset, 4, metric): Published(mean, std, "Choudhury et al. 2021, supp., 5 seeds",
                                                       "predicted")
            for dataset, values in FIVE_SEEDS_K4.items() for metric, (mean, std) in values.items()}


PUBLISHED_TABLES = {"k-sweep": _k_sweep, "five-seeds": _five_seeds}


def published_numbers(table: str | None, extra=()) -> dict[tuple, Published]:
    """The named table (or none) plus a plan's own ``[[published]]`` entries (which win)."""
    out = dict(PUBLISHED_TABLES[table]()) if table else {}
    for number in extra:
        out[(number.method, number.dataset, number.num_parts, number.metric)] = Published(
            number.mean, number.std, number.source or "the plan's [[published]]", number.masks)
    return out
