"""BLAS control: which BLAS libraries are loaded, how many threads they use, and a way
to hold them at one thread while the engine's own threads run.

Everything goes through ``threadpoolctl`` (a dependency); should it be missing all the
same, the engine cannot see or change BLAS's threads and treats the thread count as 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import threading
from contextlib import contextmanager

__all__ = ["blas_info", "blas_thread_count", "blas_controllable", "single_threaded_blas",
           "pin_this_thread", "machine_identity"]

_blas = None          # threadpoolctl selection of the BLAS libraries, or False
_local = threading.local()


def _blas_libraries():
    """threadpoolctl controllers of the loaded BLAS libraries (False when unavailable)."""
    global _blas
    if _blas is None:
        try:
            import threadpoolctl

            selection = threadpoolctl.ThreadpoolController().select(user_api="blas")
            _blas = selection if selection.lib_controllers else False
        except Exception:  # noqa: BLE001 - an optional dependency failing in any way
            _blas = False
    return _blas


def blas_controllable() -> bool:
    """Whether BLAS's threads can be held at one (threadpoolctl sees the libraries)."""
    return bool(_blas_libraries())


def blas_info() -> list[dict]:
    """threadpoolctl's description of the BLAS libraries (empty without threadpoolctl)."""
    libs = _blas_libraries()
    return list(libs.info()) if libs else []


def blas_thread_count() -> int:
    """The smallest thread count among the loaded BLAS libraries (1 when unknown)."""
    libs = _blas_libraries()
    if not libs:
        return 1
    counts = [lib.get_num_threads() or 1 for lib in libs.lib_controllers]
    return max(1, min(counts))


@contextmanager
def single_threaded_blas():
    """BLAS held at one thread inside the block, then restored. Talks to threadpoolctl's
    per-library controllers directly, because ``ThreadpoolController.limit`` re-reads
    every library's description on each call."""
    libs = _blas_libraries()
    controllers = libs.lib_controllers if libs else []
    previous = [lib.get_num_threads() for lib in controllers]
    for lib in controllers:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, count in zip(controllers, previous, strict=True):
            if count is not None:
                lib.set_num_threads(count)


def pin_this_thread():
    """Pool threads: an OpenMP-layer BLAS keeps one limit per thread, so set it here
    once (a pthreads-layer BLAS shares the limit set by the calling thread)."""
    if getattr(_local, "pinned", False):
        return
    _local.pinned = True
    libs = _blas_libraries()
    for lib in libs.lib_controllers if libs else ():
        if getattr(lib, "threading_layer", None) == "openmp":
            lib.set_num_threads(1)


def _cpu_name() -> str:
    """The CPU model as the OS reports it (Linux ``/proc/cpuinfo``), else ``platform``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_identity: dict | None = None


def machine_identity() -> dict:
    """What a measured plan depends on besides the problem: the CPU model, and the BLAS
    (library, version, kernel). ``"id"`` is a short digest of the rest, for cache keys."""
    global _identity
    if _identity is None:
        libs = [{"api": str(lib.get("internal_api", "")), "version": str(lib.get("version", "")),
                 "kernel": str(lib.get("architecture", "")),
                 "file": os.path.basename(str(lib.get("filepath", "")))}
                for lib in blas_info()]
        ident = {"cpu": _cpu_name(), "machine": platform.machine(), "blas": libs}
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
        _identity = dict(ident, id=digest)
    return dict(_identity)
