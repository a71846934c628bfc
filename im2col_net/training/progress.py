"""Progress display for training: a tqdm bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys

__all__ = ["make_progress", "LineProgress", "TqdmProgress", "NullProgress"]


def _fmt_step(loss, accuracy, images_per_sec, lr):
    return (f"loss {loss:.4f}  acc {100 * accuracy:6.2f}%  lr {lr:.3g}  "
            f"{images_per_sec:,.0f} img/s")


class NullProgress:
    """Shows nothing."""

    def start_epoch(self, epoch, epochs, total, initial=0):
        pass

    def advance(self, n=1):
        pass

    def update(self, step_in_epoch, loss, accuracy, images_per_sec, lr):
        pass

    def end_epoch(self):
        pass

    def message(self, text):
        pass

    def close(self):
        pass


class LineProgress(NullProgress):
    """One line per logged step and per message, flushed (suits log files and pipes)."""

    def __init__(self, stream=None):
        self.stream = stream
        self._prefix = ""
        self._total = 0

    def _print(self, text):
        stream = self.stream or sys.stdout
        print(text, file=stream, flush=True)

    def start_epoch(self, epoch, epochs, total, initial=0):
        self._prefix = f"epoch {epoch}/{epochs}"
        self._total = total

    def update(self, step_in_epoch, loss, accuracy, images_per_sec, lr):
        self._print(f"{self._prefix} step {step_in_epoch}/{self._total}  "
                    + _fmt_step(loss, accuracy, images_per_sec, lr))

    def message(self, text):
        self._print(text)


class TqdmProgress(NullProgress):
    """A tqdm bar per epoch with loss, accuracy, images/s and lr as postfix."""

    def __init__(self, tqdm_cls, stream=None):
        self._tqdm = tqdm_cls
        self.stream = stream
        self._bar = None

    def start_epoch(self, epoch, epochs, total, initial=0):
        self.end_epoch()
        self._bar = self._tqdm(total=total, initial=initial, desc=f"epoch {epoch}/{epochs}",
                               unit="batch", file=self.stream or sys.stderr, leave=False,
                               dynamic_ncols=True)

    def advance(self, n=1):
        if self._bar is not None:
            self._bar.update(n)

    def update(self, step_in_epoch, loss, accuracy, images_per_sec, lr):
        if self._bar is not None:
            self._bar.set_postfix_str(_fmt_step(loss, accuracy, images_per_sec, lr),
                                      refresh=False)

    def end_epoch(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def message(self, text):
        self._tqdm.write(text, file=self.stream or sys.stdout)

    def close(self):
        self.end_epoch()


def make_progress(progress, stream=None):
    """``progress``: True/"auto" (bar if stderr is a terminal and tqdm is installed, else
    lines), "bar", "lines", False/None (silent) or an object with this module's interface."""
    if progress in (False, None):
        return NullProgress()
    if progress in (True, "auto", "bar"):
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        terminal = getattr(stream or sys.stderr, "isatty", lambda: False)()
        if tqdm is not None and (progress == "bar" or terminal):
            return TqdmProgress(tqdm, stream)
        return LineProgress(stream)
    if progress == "lines":
        return LineProgress(stream)
    if all(hasattr(progress, m) for m in ("start_epoch", "update", "message", "close")):
        return progress
    raise ValueError(f"fit: progress must be True, False, 'auto', 'bar', 'lines' or a "
                     f"progress object, got {progress!r}")
