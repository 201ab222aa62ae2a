"""Validation of a whole data tree (``benchmark data check``; ``run`` can call it with ``deep=False``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.core.errors import UserError
from benchmark.core.protocol import MaskSource
from benchmark.core.registry import DATASETS

from ._io import Problem


@dataclass
class CheckReport:
    dataset: str
    root: Path
    summaries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    masks: str = "gt"  # the mask source checked

    def blocked_uses(self) -> list[str]:
        """Which uses the problems block, in words (``data check`` prints it under the list)."""
        mask_problems = [p for p in self.problems if p.kind == "mask"]
        other = len(self.problems) - len(mask_problems)
        lines = []
        if mask_problems:
            if MaskSource.kind_of(self.masks).needs_gt_masks:
                lines.append(
                    f"{len(mask_problems)} problem(s) concern ground-truth mask files: they block --masks gt "
                    "(evaluation with GT masks, training with GT masks, `benchmark masks score`); evaluation with "
                    "--masks none, predicted:DIR, model:CKPT or unsupervised:NAME does not read them (e.g. "
                    "keypoint NMI/ARI and landmark regression on CUB): check that with --masks none")
            else:
                lines.append(f"{len(mask_problems)} problem(s) concern the mask files of --masks {self.masks}: they "
                             f"block evaluation and training with that folder")
        if other:
            lines.append(f"{other} problem(s) concern images or annotations: they block every use of the "
                         f"affected split(s)")
        return lines

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self, max_problems: int = 200) -> str:
        lines = [f"{self.dataset} at {self.root}"]
        for summary in self.summaries:
            rest = ", ".join(f"{k}={v}" for k, v in summary.items() if k not in ("dataset", "split", "samples"))
            lines.append(f"  {summary['split']}: {summary['samples']} samples" + (f" ({rest})" if rest else ""))
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  {p}" for p in self.problems[:max_problems]]
            if len(self.problems) > max_problems:
                lines.append(f"  ... and {len(self.problems) - max_problems} more")
            lines += [f"what this blocks: {line}" for line in self.blocked_uses()]
        else:
            lines.append("OK")
        return "\n".join(lines)


def check_dataset(name: str, root: str | Path, *, deep: bool = True, splits: tuple[str, ...] | None = None,
                  progress: bool = False, **options: Any) -> CheckReport:
    """Validate the index files (every bad line), expected counts per split, and every file the samples
    need (``deep``: decoded; otherwise existence + header)."""
    cls = DATASETS.get(name)
    if not cls.has_tree_check():
        raise UserError(f"dataset {name!r} has no data tree to check")
    if root is None or not Path(root).is_dir():
        raise UserError(f"data root {root} does not exist or is not a directory; pass --data-root. {cls.data_hint}")
    report = CheckReport(name, Path(root), masks=str(options.get("masks", "gt")))
    datasets, problems = cls.check_tree(root, **options)
    report.problems += problems
    for ds in datasets:
        if splits is not None and ds.split not in splits:
            continue
        summary = ds.summary()
        report.summaries.append(summary)
        expected = ds.expected_counts.get(ds.split)
        is_filtered = any(v not in (None, "official") for k, v in ds.options().items() if k in ("classes", "split_source"))
        if summary["samples"] == 0:
            report.warnings.append(f"{ds.split}: no samples (check the split files and the options)")
        elif expected is not None and summary["samples"] != expected and not is_filtered:
            report.warnings.append(f"{ds.split}: {summary['samples']} samples, the complete official tree has "
                                   f"{expected} (a partial or modified tree)")
        report.problems += ds.check_files(deep=deep, progress=progress)
    return report
