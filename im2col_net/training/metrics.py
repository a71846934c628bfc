"""The metrics log: JSON lines in ``<run dir>/metrics.jsonl``, one object per line.

Every record has ``"kind"``; readers must ignore kinds they do not know.

``{"kind": "step", ...}`` every ``log_every`` optimizer updates and at the end of each
epoch, averaged over the updates since the previous step record:

    ``epoch`` (float, fractional epochs done, e.g. 1.25), ``step`` (int, optimizer updates
    done in the run), ``loss`` (mean training loss), ``accuracy`` (training accuracy in
    [0, 1], dropout active), ``lr`` (learning rate of the last update),
    ``images_per_sec`` (training throughput), ``time`` (seconds of training wall time
    since the run started, summed over resumed sessions).

``{"kind": "epoch", ...}`` after each epoch's evaluation:

    ``epoch`` (int, 1-based number of the epoch just finished), ``step``, ``train_loss``,
    ``train_accuracy`` (means over the epoch's batches, weighted by batch size),
    ``test_loss``, ``test_accuracy`` (null without test data), ``lr``, ``epoch_time``
    (seconds spent in the epoch's training and evaluation, this session), ``time``.

``{"kind": "event", "event": "start" | "resume" | "interrupt" | "end", "step", "epoch",
"time", ...}`` marks session boundaries (``start`` also carries the run description).

On resume the log is first cut back to the checkpoint: step records after its step and
epoch records after its epoch are dropped, so the file describes one consistent run.
"""

from __future__ import annotations

import json
import math
import os

from ..safeio import atomic_file

__all__ = ["MetricsLog", "read_metrics"]


def _clean(value):
    """JSON has no NaN/inf; write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    """Appends records to a JSON-lines file (or does nothing when ``path`` is None)."""

    def __init__(self, path):
        self.path = None if path is None else os.fspath(path)

    def write(self, record: dict):
        if self.path is None:
            return
        line = json.dumps({k: _clean(v) for k, v in record.items()}, sort_keys=False)
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()
        except OSError as exc:  # e.g. a full disk: say which file
            raise type(exc)(exc.errno, f"cannot append to the metrics log {self.path}: "
                                       f"{exc.strerror or exc}") from exc

    def truncate_to(self, *, step: int, epoch: int):
        """Drop step records after ``step`` and epoch records after ``epoch`` (resume).

        A damaged trailing line (a crash mid-write) is dropped too. Rewritten atomically.
        """
        if self.path is None or not os.path.exists(self.path):
            return
        kept = []
        for record in read_metrics(self.path, strict=False):
            if record.get("kind") == "step" and record.get("step", 0) > step:
                continue
            if record.get("kind") == "epoch" and record.get("epoch", 0) > epoch:
                continue
            kept.append(record)
        try:
            with atomic_file(self.path) as handle:   # signals wait until it is in place
                for record in kept:
                    handle.write((json.dumps(record) + "\n").encode("utf-8"))
        except OSError as exc:
            raise type(exc)(exc.errno, f"cannot rewrite the metrics log {self.path}: "
                                       f"{exc.strerror or exc}") from exc


def read_metrics(path, *, kind: str | None = None, strict: bool = True) -> list[dict]:
    """The records of a metrics log, optionally only those of one ``kind``.

    ``strict=False`` skips lines that are not JSON objects instead of raising ValueError.
    """
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                if strict:
                    raise ValueError(f"{path}:{number}: not a metrics record: {exc}") from exc
                continue
            if kind is None or record.get("kind") == kind:
                records.append(record)
    return records
