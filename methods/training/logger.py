"""Per-step log of every loss term: ``train_log.csv`` (and TensorBoard when ``tensorboard`` is installed).

Loss values stay on the device during the steps; :meth:`StepLogger.flush` copies a whole block of steps to
the host at once (one synchronisation per block instead of one per step) and appends one CSV row per step.
When a run resumes from step ``s``, rows of steps ``>= s`` (written after that checkpoint by the killed run)
are dropped first, so the log equals an uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import torch

from benchmark.core.atomic import atomic_write_text
from benchmark.core.errors import UserError


class StepLogger:
    def __init__(self, path: Path | None, *, tensorboard_dir: Path | None = None):
        self.path = path
        self.columns: list[str] | None = None
        self._pending: list[tuple[int, float, dict[str, torch.Tensor]]] = []
        self._tb = None
        if path is not None and tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the optional `tensorboard` package

                self._tb = SummaryWriter(str(tensorboard_dir))
            except Exception:  # noqa: BLE001 - TensorBoard is optional
                self._tb = None
        if path is not None and path.exists():
            with open(path, newline="") as handle:
                header = next(csv.reader(handle), None)
            self.columns = header or None

    def truncate(self, step: int) -> None:
        """Drop rows of steps ``>= step`` (atomically)."""
        if self.path is None or not self.path.exists():
            return
        with open(self.path, newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < step]
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(kept)
        atomic_write_text(self.path, buffer.getvalue())

    def record(self, step: int, lr: float, terms: dict[str, torch.Tensor]) -> None:
        """Keep the step's (detached, on-device) loss terms until the next flush."""
        self._pending.append((step, lr, {k: v.detach() for k, v in terms.items()}))

    def flush(self) -> dict[str, float] | None:
        """Write the pending steps; returns the last step's values (for the progress bar), or None.
        Raises UserError on a non-finite total loss (training diverged)."""
        if not self._pending:
            return None
        names = list(self._pending[0][2])
        stacked = torch.stack([torch.stack([terms[n].float() for n in names]) for _, _, terms in self._pending])
        values = stacked.cpu().tolist()  # the one host sync of the block
        pending, self._pending = self._pending, []
        last = dict(zip(names, values[-1]))
        for (step, _, _), row in zip(pending, values):
            if "total" in names and not math.isfinite(row[names.index("total")]):
                raise UserError(f"training diverged: the total loss is {row[names.index('total')]} at step {step}; "
                                "lower the learning rate or use float32 (no --amp)")
        if self.path is not None:
            columns = ["step", "lr"] + names
            new_file = not self.path.exists() or self.columns is None
            if not new_file and self.columns != columns:
                raise UserError(f"log {self.path} has columns {self.columns}, this run logs {columns}; "
                                "use another --out directory")
            self.columns = columns
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                if new_file:
                    writer.writerow(columns)
                for (step, lr, _), row in zip(pending, values):
                    writer.writerow([step, f"{lr:.9g}"] + [f"{v:.9g}" for v in row])
            if self._tb is not None:
                for (step, lr, _), row in zip(pending, values):
                    self._tb.add_scalar("lr", lr, step)
                    for name, value in zip(names, row):
                        self._tb.add_scalar(f"loss/{name}", value, step)
        return last

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
