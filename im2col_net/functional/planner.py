"""The planner: which convolution algorithm (and block size) runs a given problem, and
which GEMM orientation runs a Linear layer's forward.

A plan is chosen once per key — (operation, input shape with the batch rounded up to a
power of two, weight shape, geometry, groups, dtype, padding mode, bias, whether ``dx``
is needed, thread count) — and kept for the process. Modes:

``"estimate"``
    Rank the algorithms by the cost model in :mod:`.conv_algorithms` (no timing): the
    same plan for the same key on every machine, run after run.
``"measure"``
    Time the applicable algorithms (those the cost model puts within 5 times its
    cheapest) on random data of the real shape, drawn from a private generator, never
    the caller's arrays: each once, cold (in the model's order, until the key's
    planning time passes 0.5 s), then the three fastest (those within 2 times the
    fastest cold time, and the cost model's choice) warm, once and then once more while
    the key's planning time stays under 0.5 s; only warm times decide: the fastest warm
    minimum wins, but replaces the cost model's choice only when at least 10 % faster,
    so that timing noise does not overturn a near tie; then, when the batch allows it,
    the winner cut into fewer blocks (at least 4 instead of 8), kept by the same margin
    (like ``FFTW_MEASURE`` or ``torch.backends.cudnn.benchmark``). The plan then stays
    fixed for the process.
an algorithm name
    That algorithm (``"im2col"``, ``"rows"``, ``"im2col_t"``, ``"strided"``, ``"fft"``),
    no planning.

The mode for ``strategy="auto"`` comes from :func:`planning` / :func:`set_mode`, else
the ``IM2COL_NET_PLAN`` environment variable, else ``"estimate"``; training runs use
``"measure"`` unless one of those says otherwise (:func:`training_planning`). Plans
installed from a checkpoint (:func:`install`) win over every mode, so a resumed run
repeats the original run's arithmetic.

The Linear layer's forward GEMM has a plan of its own, keyed by (batch rounded up to a
power of two, features in and out, dtype, bias, thread count): ``"xw"`` computes ``y = x
@ Wᵀ`` (the batch is the GEMM's row dimension; a C-ordered ``y``), ``"wx"`` computes
``yᵀ = W @ xᵀ`` (the output features are; ``y`` comes back as the transposed view, in
Fortran order). Which is faster depends on the batch and the BLAS: a small batch makes
a GEMM with few rows, which some BLAS kernels run far below their peak. ``"estimate"``
always gives ``"xw"``; ``"measure"`` times both forwards (:func:`measure_linear`, with
the same cold and warm rounds and the same margin as the convolutions).

Measured plans can also be kept in a JSON file (opt-in: ``IM2COL_NET_PLAN_CACHE`` set to
a file, a directory, or ``1`` for ``$XDG_CACHE_HOME/im2col_net/plans.json``; or
:func:`use_plan_cache`). The file records the CPU, the BLAS and the format version; a
file that is damaged or from another machine is ignored with a warning.
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..runtime import BALANCE, MIN_BLOCKS, machine_identity, worker_count
from ..safeio import atomic_file
from . import conv_algorithms as algos

__all__ = ["MODES", "ALGORITHM_NAMES", "LINEAR_ALGORITHMS", "ALIASES", "Plan",
           "PlanCacheWarning", "planning", "set_mode", "current_mode", "training_planning",
           "resolve", "choose", "measure", "estimate", "plan_key", "linear_key",
           "choose_linear", "measure_linear", "export_plans", "install", "validate_entries",
           "reset", "use_plan_cache", "plan_cache_path"]

MODES = ("measure", "estimate")
ALGORITHM_NAMES = tuple(algos.ALGORITHMS)
# The Linear forward's two GEMM orientations (see the module docstring); the first is
# the estimate.
LINEAR_ALGORITHMS = ("xw", "wx")
# Which algorithms the plans of each operation (a key's first field) may name.
OP_ALGORITHMS = {"conv2d": ALGORITHM_NAMES, "linear": LINEAR_ALGORITHMS}
# Earlier spellings of strategy=: "auto" means "whatever the planner's mode picks".
ALIASES = {"auto": None}
ENV_MODE = "IM2COL_NET_PLAN"
ENV_CACHE = "IM2COL_NET_PLAN_CACHE"
FILE_FORMAT = "im2col_net.plans"
# 2: im2col_t joined the candidates, which plans of version 1 never timed.
FILE_VERSION = 2
SOURCES = ("estimate", "measure", "fixed", "checkpoint", "file")
# Warm timings of the candidates that survive the cold first round (the minimum is
# kept), and the factor over the fastest cold time beyond which a candidate is dropped:
# wide, because a cold run also pays for first-touch scratch pages and FFT set-up.
REPEATS = 2
SURVIVOR_FACTOR = 2.0
MAX_SURVIVORS = 3
# A measured candidate replaces the cost model's choice only when at least this much
# faster (times[winner] <= MARGIN * times[model's choice]).
MARGIN = 0.9
# Candidates the cost model puts beyond this factor over its cheapest are not timed (a
# wide margin: the model's ratios were off by up to ~1.5x on the machine measured).
PRUNE_FACTOR = 5.0
# A measurement starts no new cold timing, nor a warm round after the first, once this
# many seconds went into one key; every survivor is timed warm at least once.
MAX_PLAN_SECONDS = 0.5
# The measured alternative to the runtime's MIN_BLOCKS blocks per call (block counts are
# multiples of BALANCE, so this is the next smaller one).
FEWER_BLOCKS = BALANCE
MAX_EXPORTED = 256


class PlanCacheWarning(UserWarning):
    """A plan cache file was ignored (damaged, foreign, or of another version)."""


@dataclass
class Plan:
    """``algorithm`` with a ``block_bytes`` budget and at least ``min_blocks`` blocks
    (when the batch has that many images); ``source`` says how it was chosen, ``timings``
    (measure) the candidates' best seconds for one forward + backward."""

    algorithm: str
    block_bytes: int
    source: str = "estimate"
    timings: dict = field(default_factory=dict)
    seconds: float = 0.0          # time spent choosing it
    min_blocks: int = MIN_BLOCKS

    def to_dict(self) -> dict:
        return {"algorithm": self.algorithm, "block_bytes": int(self.block_bytes),
                "min_blocks": int(self.min_blocks), "source": self.source,
                "timings": dict(self.timings), "seconds": float(self.seconds)}

    @classmethod
    def from_dict(cls, d, op: str = "conv2d") -> Plan:
        """Parse :meth:`to_dict` output for a plan of operation ``op`` (a key's first
        field); ``ValueError`` naming the first bad field."""
        if not isinstance(d, dict):
            raise ValueError(f"a plan must be an object, got {type(d).__name__}")
        names = OP_ALGORITHMS[op]
        algorithm, block = d.get("algorithm"), d.get("block_bytes")
        if algorithm not in names:
            raise ValueError(f"plan algorithm must be one of {names}, got {algorithm!r}")
        # The Linear plans cut nothing into blocks: their budget is 0.
        least = 1 if op == "conv2d" else 0
        if (not isinstance(block, int) or isinstance(block, bool)
                or not least <= block <= 1 << 40):
            raise ValueError(f"plan block_bytes must be an int of at least {least}, "
                             f"got {block!r}")
        source = d.get("source", "checkpoint")
        if source not in SOURCES:
            raise ValueError(f"plan source must be one of {SOURCES}, got {source!r}")
        timings = d.get("timings", {})
        if not isinstance(timings, dict) or not all(
                k in names and isinstance(v, (int, float)) and not isinstance(v, bool)
                for k, v in timings.items()):
            raise ValueError(f"plan timings must map algorithm names to seconds, got "
                             f"{timings!r}")
        seconds = d.get("seconds", 0.0)
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
            raise ValueError(f"plan seconds must be a number, got {seconds!r}")
        # Plans written before min_blocks existed ran the runtime's default.
        least = d.get("min_blocks", MIN_BLOCKS)
        if not isinstance(least, int) or isinstance(least, bool) or not 1 <= least <= 1024:
            raise ValueError(f"plan min_blocks must be an int from 1 to 1024, got {least!r}")
        return cls(algorithm, block, source, {k: float(v) for k, v in timings.items()},
                   float(seconds), least)


_lock = threading.RLock()
_mode: str | None = None          # set by planning() / set_mode()
_plans: dict[str, Plan] = {}      # measured, installed and file plans
_estimates: dict[str, Plan] = {}
_used: dict[str, Plan] = {}       # what this process ran, for checkpoints
_cache_path: Path | None | bool = False   # False: not looked up yet
_file_loaded = False


def _check_mode(mode, owner="planner"):
    if mode not in MODES and mode not in ALGORITHM_NAMES:
        raise ValueError(f"{owner}: plan mode must be one of {MODES + ALGORITHM_NAMES}, "
                         f"got {mode!r}")
    return mode


def set_mode(mode: str | None) -> None:
    """Set the mode ``strategy="auto"`` plans in (None: back to the environment/default)."""
    global _mode
    _mode = None if mode is None else _check_mode(mode)


def current_mode() -> str:
    if _mode is not None:
        return _mode
    env = os.environ.get(ENV_MODE)
    if env:
        return _check_mode(env, f"environment variable {ENV_MODE}")
    return "estimate"


@contextmanager
def planning(mode: str):
    """Within the block, ``strategy="auto"`` plans in ``mode``."""
    global _mode
    previous, _mode = _mode, _check_mode(mode)
    try:
        yield
    finally:
        _mode = previous


@contextmanager
def training_planning():
    """``"measure"`` within the block unless :func:`planning`, :func:`set_mode` or
    ``IM2COL_NET_PLAN`` already chose a mode (training's default)."""
    if _mode is not None or os.environ.get(ENV_MODE):
        yield
        return
    with planning("measure"):
        yield


def resolve(strategy: str, owner: str = "conv2d") -> str | None:
    """A ``strategy=`` value as an algorithm name, or None for "ask the planner"."""
    if strategy in ALIASES:
        return ALIASES[strategy]
    if strategy in MODES:
        return None
    if strategy in ALGORITHM_NAMES:
        return strategy
    choices = ALGORITHM_NAMES + ("auto",) + MODES
    raise ValueError(f"{owner}: strategy must be one of {choices}, got {strategy!r}")


def _batch_bucket(n: int) -> int:
    """The batch rounded up to a power of two: nearby batch sizes share a plan."""
    return 1 << max(0, int(n) - 1).bit_length()


def plan_key(problem: algos.Problem, input_grad: bool = True, threads: int | None = None,
             op: str = "conv2d") -> str:
    """The text key of a plan (JSON-friendly; see the module docstring)."""
    p = problem
    g = p.geometry
    threads = worker_count() if threads is None else threads
    # Checkpoints and plan caches written before the torch names spell replicate "edge".
    mode = "edge" if p.padding_mode == "replicate" else p.padding_mode
    return (f"{op}|x=n{_batch_bucket(p.n)}x{p.c}x{p.h}x{p.w}|w={p.cout}x{p.cg}x"
            f"{g.kernel[0]}x{g.kernel[1]}|s={g.stride[0]},{g.stride[1]}|p="
            f"{','.join(map(str, g.padding))}|d={g.dilation[0]},{g.dilation[1]}|g={p.groups}"
            f"|{p.dtype.name}|{mode}|bias={int(p.has_bias)}|dx={int(input_grad)}"
            f"|t={threads}")


def _candidates(problem):
    return [name for name in ALGORITHM_NAMES if algos.supported(name, problem) is None]


def estimate(problem: algos.Problem, input_grad: bool = True) -> Plan:
    """The cost model's plan (deterministic)."""
    def cost(name):
        block = algos.DEFAULT_BLOCK_BYTES[name]
        return algos.estimated_cost(name, problem, algos.block_count_for(name, problem, block),
                                    input_grad)

    best = min(_candidates(problem), key=cost)   # ties: the first in ALGORITHM_NAMES
    return Plan(best, algos.DEFAULT_BLOCK_BYTES[best], "estimate")


def measure(problem: algos.Problem, input_grad: bool, runner) -> Plan:
    """Time the candidates with ``runner(problem, plan, input_grad) -> seconds`` (the
    executor's; tests inject timings) and return the fastest as a plan."""
    start = time.perf_counter()
    # The cost model prunes the hopeless candidates (a wide margin: it is only a model).
    costs = {name: algos.estimated_cost(
                 name, problem,
                 algos.block_count_for(name, problem, algos.DEFAULT_BLOCK_BYTES[name]),
                 input_grad)
             for name in _candidates(problem)}
    cheapest = min(costs.values())
    modelled = min(costs, key=costs.get)      # what "estimate" would pick
    plans = {name: Plan(name, algos.DEFAULT_BLOCK_BYTES[name], "measure")
             for name in costs if costs[name] <= PRUNE_FACTOR * cheapest}
    # First round: each candidate once, cold (its scratch buffers are new), which is
    # enough to drop the clear losers; a smaller batch would not do, since it would
    # inflate the share of fixed per-call costs (the FFT's kernel spectrum).
    # In the model's order, so that a slow machine that exhausts the time budget has
    # timed the likeliest candidates; untimed ones are not chosen.
    times = {}
    for name in sorted(plans, key=costs.get):
        if times and time.perf_counter() - start > MAX_PLAN_SECONDS:
            break
        times[name] = runner(problem, plans[name], input_grad)
    plans = {name: plans[name] for name in times}
    best = min(times.values())
    survivors = sorted((name for name in plans if times[name] <= SURVIVOR_FACTOR * best),
                       key=times.get)[:MAX_SURVIVORS]
    # The cost model's choice is timed first, so its cold run also carries the process's
    # first-call costs (fresh pages for the arrays every candidate uses): it is always
    # timed warm, never dropped on its cold time.
    if modelled not in survivors:
        survivors.append(modelled)
    if len(survivors) > 1:
        # Only warm times decide: the cold one is inflated by a different amount for
        # each algorithm (the FFT's plans and its larger scratch most of all).
        warm = {}
        for round_ in range(REPEATS):
            if round_ and time.perf_counter() - start > MAX_PLAN_SECONDS:
                break
            for name in survivors:
                t = runner(problem, plans[name], input_grad)
                warm[name] = min(warm.get(name, t), t)
        times.update(warm)
    winner = min(survivors, key=lambda name: times[name])
    # Timing noise (another process taking a core) must not overturn the cost model
    # for a near tie: another algorithm wins only by a clear margin.
    if modelled in survivors and times[winner] > MARGIN * times[modelled]:
        winner = modelled
    plan = plans[winner]
    _measure_blocking(problem, input_grad, runner, plan, times[winner], start)
    plan.timings = {name: float(t) for name, t in times.items()}
    plan.seconds = time.perf_counter() - start
    return plan


def _measure_blocking(problem, input_grad, runner, plan, seconds, start) -> None:
    """Fewer blocks for the winner: at least :data:`FEWER_BLOCKS` instead of the
    runtime's :data:`MIN_BLOCKS` (a small batch cut into many blocks of one or two
    images spends its time in calls and in hand-overs between threads). Timed warm, in
    alternation with the default (a second round while the key's planning time stays
    under :data:`MAX_PLAN_SECONDS`), and kept only when faster by the same clear margin."""
    default = algos.block_count_for(plan.algorithm, problem, plan.block_bytes)
    fewer = algos.block_count_for(plan.algorithm, problem, plan.block_bytes, FEWER_BLOCKS)
    if fewer == default:
        return
    variant = Plan(plan.algorithm, plan.block_bytes, "measure", min_blocks=FEWER_BLOCKS)
    best = {"default": seconds, "fewer": float("inf")}
    for round_ in range(REPEATS):
        if round_ and time.perf_counter() - start > MAX_PLAN_SECONDS:
            break
        best["fewer"] = min(best["fewer"], runner(problem, variant, input_grad))
        best["default"] = min(best["default"], runner(problem, plan, input_grad))
    if best["fewer"] <= MARGIN * best["default"]:
        plan.min_blocks = FEWER_BLOCKS


def choose(problem: algos.Problem, requested: str | None, input_grad: bool, runner) -> Plan:
    """The plan for one call: ``requested`` names an algorithm, or None for the mode in
    effect. Installed (checkpoint) plans win; measured plans are kept per key."""
    if requested is not None:
        return Plan(requested, algos.DEFAULT_BLOCK_BYTES[requested], "fixed")
    mode = current_mode()
    if mode in ALGORITHM_NAMES:
        if algos.supported(mode, problem) is None:
            return Plan(mode, algos.DEFAULT_BLOCK_BYTES[mode], "fixed")
        mode = "estimate"
    return _planned(plan_key(problem, input_grad), mode,
                    lambda: estimate(problem, input_grad),
                    lambda: measure(problem, input_grad, runner))


def _planned(key, mode, estimated, measured) -> Plan:
    """The plan kept for ``key`` in ``mode``: a checkpoint's first, then (measure) one
    measured before or kept in the plan cache file, else ``measured()`` (kept and saved);
    in estimate mode ``estimated()``, kept apart from the measured plans."""
    with _lock:
        plan = _plans.get(key)
        if plan is not None and (plan.source == "checkpoint" or mode == "measure"):
            return _record(key, plan)
        if mode == "estimate":
            plan = _estimates.get(key)
            if plan is None:
                plan = _estimates[key] = estimated()
            return _record(key, plan)
        _load_file()
        plan = _plans.get(key)
        if plan is None:
            plan = _plans[key] = measured()
            _save_file()
        return _record(key, plan)


def linear_key(n: int, in_features: int, out_features: int, dtype, has_bias: bool,
               threads: int | None = None) -> str:
    """The text key of a Linear forward's plan (see the module docstring)."""
    threads = worker_count() if threads is None else threads
    return (f"linear|x=n{_batch_bucket(n)}x{in_features}|w={out_features}x{in_features}"
            f"|{np.dtype(dtype).name}|bias={int(has_bias)}|t={threads}")


def measure_linear(runner) -> Plan:
    """Time both orientations with ``runner(algorithm) -> seconds`` (one forward on
    random data of the real shape; tests inject timings): each once cold, then warm
    rounds while the time budget lasts; the faster warm minimum wins, but replaces
    ``"xw"`` only when at least 10 % faster (:data:`MARGIN`)."""
    start = time.perf_counter()
    for name in LINEAR_ALGORITHMS:
        runner(name)                  # cold: first-touch pages, BLAS buffers
    times = {}
    for round_ in range(REPEATS):
        if round_ and time.perf_counter() - start > MAX_PLAN_SECONDS:
            break
        for name in LINEAR_ALGORITHMS:
            t = runner(name)
            times[name] = min(times.get(name, t), t)
    default = LINEAR_ALGORITHMS[0]
    winner = min(LINEAR_ALGORITHMS, key=times.get)
    if times[winner] > MARGIN * times[default]:
        winner = default
    return Plan(winner, 0, "measure", {name: float(t) for name, t in times.items()},
                time.perf_counter() - start)


def choose_linear(n: int, in_features: int, out_features: int, dtype, has_bias: bool,
                  requested: str | None, runner) -> Plan:
    """The plan for one Linear forward of ``n`` rows: ``requested`` names an orientation
    (:data:`LINEAR_ALGORITHMS`), or None for the mode in effect (a mode naming a
    convolution algorithm means "estimate" here)."""
    if requested is not None:
        return Plan(requested, 0, "fixed")
    mode = current_mode()
    if mode not in MODES:
        mode = "estimate"
    return _planned(linear_key(n, in_features, out_features, dtype, has_bias), mode,
                    lambda: Plan(LINEAR_ALGORITHMS[0], 0, "estimate"),
                    lambda: measure_linear(runner))


def _record(key, plan):
    _used.pop(key, None)
    _used[key] = plan
    while len(_used) > MAX_EXPORTED:
        _used.pop(next(iter(_used)))
    return plan


def export_plans() -> list[dict]:
    """The plans this process ran (most recent last), as JSON-ready entries."""
    with _lock:
        return [{"key": key, "plan": plan.to_dict()} for key, plan in _used.items()]


def validate_entries(entries) -> list[tuple[str, Plan]]:
    """Parse exported entries; ``ValueError`` naming the first bad one."""
    if not isinstance(entries, list):
        raise ValueError(f"plans must be a list, got {type(entries).__name__}")
    parsed = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise ValueError(f"plan entry {i} must be an object with a text 'key'")
        op = entry["key"].split("|", 1)[0]
        if op not in OP_ALGORITHMS or "|" not in entry["key"]:
            raise ValueError(f"plan entry {i} has an unknown key {entry['key'][:60]!r}")
        try:
            parsed.append((entry["key"], Plan.from_dict(entry.get("plan"), op)))
        except ValueError as exc:
            raise ValueError(f"plan entry {i}: {exc}") from None
    return parsed


def install(entries, source: str = "checkpoint") -> int:
    """Install exported plans (a checkpoint's): they win over every mode. Returns the
    count; ``ValueError`` for a malformed list (nothing is installed then)."""
    parsed = validate_entries(entries)
    with _lock:
        for key, plan in parsed:
            plan.source = source
            _plans[key] = plan
    return len(parsed)


def reset() -> None:
    """Forget every plan and the cache-file setting (tests)."""
    global _cache_path, _file_loaded
    with _lock:
        _plans.clear()
        _estimates.clear()
        _used.clear()
        _cache_path, _file_loaded = False, False


def use_plan_cache(path) -> None:
    """Keep measured plans in the JSON file ``path`` (None: no file)."""
    global _cache_path, _file_loaded
    with _lock:
        _cache_path = None if path is None else Path(path)
        _file_loaded = False


def plan_cache_path() -> Path | None:
    """The plan cache file in effect (None: off, the default)."""
    global _cache_path
    if _cache_path is False:
        value = os.environ.get(ENV_CACHE, "").strip()
        if not value or value == "0":
            _cache_path = None
        else:
            if value == "1":
                base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
                    os.path.expanduser("~"), ".cache")
                path = Path(base) / "im2col_net"
            else:
                path = Path(value)
            _cache_path = path / "plans.json" if path.is_dir() or value == "1" else path
    return _cache_path


def _machine():
    ident = machine_identity()
    return {"id": ident["id"], "cpu": ident["cpu"]}


def _load_file():
    global _file_loaded
    path = plan_cache_path()
    if _file_loaded or path is None:
        return
    _file_loaded = True
    if not path.exists():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise ValueError("not a plan cache file")
        if data.get("version") != FILE_VERSION:
            raise ValueError(f"format version {data.get('version')!r}, expected {FILE_VERSION}")
        machine = data.get("machine")
        if not isinstance(machine, dict) or machine.get("id") != _machine()["id"]:
            raise ValueError("written on another machine or BLAS "
                             f"({machine.get('cpu') if isinstance(machine, dict) else machine!r})")
        parsed = validate_entries(data.get("plans"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        warnings.warn(f"im2col_net: ignoring the plan cache {path}: {exc}", PlanCacheWarning,
                      stacklevel=4)
        return
    for key, plan in parsed:
        if key not in _plans:
            plan.source = "file"
            _plans[key] = plan


def _save_file():
    path = plan_cache_path()
    if path is None:
        return
    entries = [{"key": k, "plan": p.to_dict()} for k, p in _plans.items()
               if p.source in ("measure", "file")]
    data = {"format": FILE_FORMAT, "version": FILE_VERSION, "machine": _machine(),
            "plans": entries}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as handle:
            handle.write(json.dumps(data, indent=1).encode("utf-8"))
    except OSError as exc:
        warnings.warn(f"im2col_net: could not write the plan cache {path}: {exc}",
                      PlanCacheWarning, stacklevel=4)
