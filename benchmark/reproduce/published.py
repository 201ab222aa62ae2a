"""Published numbers a plan compares with, as ``(method, dataset, K, metric) -> (mean, std, source)`` x100.

Named tables (a plan's ``published = "k-sweep"``) come from the numbers partbench ships (the data file read
by :func:`benchmark.published.published_results`); a plan's own ``[[published]]`` entries add to them.
Each number sits beside the cells of its protocol family (:attr:`Published.protocol`):

* ``k-sweep``, ``five-seeds`` and a plan's ``[[published]]``: the paper's numbers, produced by the
  reference evaluation notebooks, so beside the ``legacy`` cells, and only in tables whose mask source
  matches theirs: the paper evaluated with predicted fg/bg masks (``predicted``: the plan's ``fgbg`` or
  ``predicted:DIR`` sources), so its numbers are not put beside ground-truth-mask cells.
* ``whole-image``: the 2023-2025 papers' numbers (PDiscoNet, PDiscoFormer, MPAE), produced by their own
  evaluators with the method's own background channel (``masks = "method"``), beside the ``whole-image``
  cells (any size and crop: their ``source`` says which they used). A method of the plan gets them beside
  its cells with that mask source; a published method the plan does not run gets rows of its own
  (``<method> (published)``) in every ``whole-image`` table of its dataset and K.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.core.protocol import PAPER_PROTOCOL, WHOLE_IMAGE, MaskSource

#: what a published number's ``masks`` may say: an argument-free mask kind, or ``predicted`` = any source of
#: predicted fg/bg masks (a kind with ``MaskSource.predicted``: the plan's ``fgbg``, ``predicted:DIR``)
PUBLISHED_MASKS = ("gt", "none", "method", "predicted")

#: what the paper and Δ columns mean (Markdown and HTML tables)
PAPER_NOTE = ("paper = the published number under the protocol of the column before it (legacy: the reference "
              "notebooks; whole-image: the newer papers' own evaluators, with their own background); "
              "Δ = measured − paper; '(published)' rows: methods this plan does not run.")


@dataclass(frozen=True)
class Published:
    mean: float
    std: float | None
    source: str
    masks: str | None = None  # the mask source it was computed with (None: any)
    protocol: str = PAPER_PROTOCOL  # the protocol family whose cells it sits beside
    supervision: str = ""  # the method's supervision track, for rows of methods the plan does not run

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


def _whole_image_table() -> dict[tuple, Published]:
    """The newer papers' numbers: every packaged number of the ``whole-image`` family, own background."""
    import math

    from benchmark.published import protocol_family, published_results

    family = protocol_family(WHOLE_IMAGE)
    return {(r.method, r.dataset, r.num_parts, r.metric):
            Published(r.mean_x100, None if math.isnan(r.std_x100) else r.std_x100, f"{r.source} ({r.label})",
                      "method", family, r.supervision)
            for r in published_results() if protocol_family(r.protocol) == family}


# the newer papers' table is named after the protocol it was computed under
PUBLISHED_TABLES = {"k-sweep": lambda: _table("paper"), "five-seeds": lambda: _table("paper, 5 seeds"),
                    WHOLE_IMAGE: _whole_image_table}


def published_numbers(table: str | None, extra=()) -> dict[tuple, Published]:
    """The named table (or none) plus a plan's own ``[[published]]`` entries (which win)."""
    out = dict(PUBLISHED_TABLES[table]()) if table else {}
    for number in extra:
        out[(number.method, number.dataset, number.num_parts, number.metric)] = Published(
            number.mean, number.std, number.source or "the plan's [[published]]", number.masks)
    return out
