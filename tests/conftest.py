"""Hypothesis profiles: 'ci' (deterministic, selected when CI=true), 'dev' (default) and
'thorough' (long local runs: HYPOTHESIS_PROFILE=thorough pytest)."""

import os

from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=25, derandomize=True, print_blob=True, **_common)
settings.register_profile("dev", max_examples=40, **_common)
settings.register_profile("thorough", max_examples=1000, **_common)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") == "true" else "dev")
)

# The suite runs convolutions in the planner's deterministic mode, so runs in separate
# processes (CLI tests) pick the same algorithms; tests/test_planner.py covers "measure".
os.environ.setdefault("IM2COL_NET_PLAN", "estimate")
# ... and never writes a plan cache file (the tests that do use tmp_path).
os.environ.pop("IM2COL_NET_PLAN_CACHE", None)
