"""Run directories: one trainer at a time, no run silently replaced, no stale temp files.

Lock
    :func:`lock_run_dir` holds an exclusive ``flock`` on ``<run dir>/train.lock`` (the
    file's contents, the holder's pid, are only informative). The operating system
    releases the lock when the holding process ends in any way, kill -9 included, so it
    can never go stale. Within one process the lock is re-entrant for the thread holding
    it (the CLI takes it before loading data; ``fit`` takes it again).

Claiming
    :func:`open_run_dir` takes the lock, then refuses a directory that already holds a
    run's files (checkpoint, model, metrics log) unless the run is resumed or
    ``overwrite`` is given, and removes temporary files a killed writer left behind.
"""

from __future__ import annotations

import contextlib
import os
import threading

from ..serialization import remove_stale_temp_files

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking available
    fcntl = None

__all__ = ["CHECKPOINT_NAME", "METRICS_NAME", "MODEL_NAME", "BEST_NAME", "LOCK_NAME",
           "RUN_FILES",
           "RunDirLocked", "lock_run_dir", "open_run_dir", "run_files_in"]

CHECKPOINT_NAME = "checkpoint.npz"
METRICS_NAME = "metrics.jsonl"
MODEL_NAME = "model.npz"
# The best weights so far under early stopping (see fit's early_stop).
BEST_NAME = "best.npz"
LOCK_NAME = "train.lock"
RUN_FILES = (CHECKPOINT_NAME, MODEL_NAME, METRICS_NAME, BEST_NAME)
# The metrics log's own temporary file (MetricsLog.truncate_to).
_METRICS_TEMP = METRICS_NAME + ".tmp"


class RunDirLocked(RuntimeError):
    """Another trainer (another process, or another thread) is using the run directory."""


_held = {}  # (st_dev, st_ino) of a locked directory -> [thread ident, depth]
_held_guard = threading.Lock()


def _holder_pid(path):
    with contextlib.suppress(OSError, ValueError), open(path, encoding="ascii") as handle:
        return int(handle.read().strip())
    return None


@contextlib.contextmanager
def lock_run_dir(out_dir):
    """Hold the run directory's lock for the block; raise :class:`RunDirLocked` at once
    (never wait) if another process or thread holds it. ``out_dir`` must exist."""
    out_dir = os.fspath(out_dir)
    info = os.stat(out_dir)
    key, me = (info.st_dev, info.st_ino), threading.get_ident()
    with _held_guard:
        entry = _held.get(key)
        if entry is not None and entry[0] != me:
            raise RunDirLocked(f"run directory {out_dir} is in use by another training in "
                               f"this process")
        if entry is not None:
            entry[1] += 1
    if entry is not None:
        try:
            yield
        finally:
            with _held_guard:
                entry[1] -= 1
        return
    path = os.path.join(out_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _holder_pid(path)
                raise RunDirLocked(
                    f"run directory {out_dir} is in use by another training"
                    + (f" (pid {pid})" if pid else "")
                    + "; wait for it to finish or use another directory") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        with _held_guard:
            _held[key] = [me, 1]
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(key, None)
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


def run_files_in(out_dir) -> list[str]:
    """Names of the run files (checkpoint, model, metrics log, best weights) present in
    ``out_dir``."""
    return [name for name in RUN_FILES if os.path.lexists(os.path.join(out_dir, name))]


def make_run_dir(out_dir, owner="fit"):
    """Create ``out_dir`` (and parents) unless it exists; a clear error if it is a file."""
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"{owner}: the run directory {out_dir} exists and is not a "
                                 f"directory")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise type(exc)(exc.errno, f"{owner}: cannot create the run directory {out_dir}: "
                                   f"{exc.strerror or exc}") from exc
    return out_dir


def run_paths(out_dir) -> dict:
    """``{file name: path}`` of the run files in ``out_dir``."""
    return {name: os.path.join(os.fspath(out_dir), name) for name in RUN_FILES}


@contextlib.contextmanager
def open_run_dir(out_dir, *, resume=False, overwrite=False):
    """Lock ``out_dir`` for a training session and yield ``{file name: path}``.

    A fresh start (``resume=False``) refuses a directory holding any run file unless
    ``overwrite``, which deletes them first. Either way, temporary files left by a
    killed writer are removed, under the lock, so no live writer's file is touched.
    """
    if resume and not os.path.isdir(out_dir):
        raise FileNotFoundError(f"fit: nothing to resume: {out_dir} is not a directory")
    out_dir = make_run_dir(out_dir)
    paths = run_paths(out_dir)
    with lock_run_dir(out_dir):
        held = run_files_in(out_dir)
        if not resume and held and not overwrite:
            raise FileExistsError(f"fit: {out_dir} already holds a run ({', '.join(held)}); "
                                  f"pass resume=True to continue it, overwrite=True to "
                                  f"replace it, or use another out_dir")
        for name in (CHECKPOINT_NAME, MODEL_NAME, BEST_NAME):
            remove_stale_temp_files(paths[name])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(out_dir, _METRICS_TEMP))
        if not resume:
            for name in held:
                os.unlink(paths[name])
        yield paths
