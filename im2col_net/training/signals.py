"""Stopping training on SIGINT (Ctrl-C) or SIGTERM (kill, systemd, Slurm, Docker stop).

:func:`stop_on_signals` turns the first of these signals into a request
(:class:`StopRequest`) that the trainer acts on at its next safe point. A second signal
aborts the update in progress (KeyboardInterrupt) unless the stop is already under way
(:meth:`StopRequest.stopping`), in which case it is only recorded: the checkpoint being
written is finished first. Files are written by ``atomic_savez``, which additionally holds
both signals for the duration of each write.
"""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["StopRequest", "stop_on_signals", "STOP_SIGNALS"]

# Signal -> the handler it must still have for training to take it over (the user's own
# handlers are left alone).
STOP_SIGNALS = {signal.SIGINT: signal.default_int_handler}
if hasattr(signal, "SIGTERM"):
    STOP_SIGNALS[signal.SIGTERM] = signal.SIG_DFL


class StopRequest:
    """``signum``: the first stop signal received (None: none). ``handled``: the trainer
    has reported it (raised TrainingInterrupted), so it must not be delivered again."""

    def __init__(self):
        self.signum = None
        self.handled = False
        self._abort_allowed = True

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def stopping(self):
        """From now on further signals are only recorded, never raised."""
        self._abort_allowed = False

    def _on_signal(self, signum, frame):
        if self.signum is None:
            self.signum = signum
        elif self._abort_allowed:  # a second signal before the stop began: abort now
            self._abort_allowed = False
            raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals(enabled=True):
    """Yield a :class:`StopRequest` fed by SIGINT/SIGTERM while the block runs.

    Only in the main thread and only for signals still at their default handler. On a
    normal exit, a request nobody handled (a signal during the final writes) is delivered
    again to the restored handler, so it still takes its usual effect.
    """
    request = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {}
    for signum, default in STOP_SIGNALS.items():
        if signal.getsignal(signum) is default:
            previous[signum] = signal.signal(signum, request._on_signal)
    completed = False
    try:
        yield request
        completed = True
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if completed and request.requested and not request.handled \
                and request.signum in previous:
            signal.raise_signal(request.signum)
