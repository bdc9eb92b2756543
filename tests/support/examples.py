"""Hypothesis profiles: property tests replay the same examples on every run (CI must be
reproducible); a run with HYPOTHESIS_PROFILE=explore draws new ones, 20 times as many (a bug hunt,
not a CI job)."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, print_blob=True)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def examples(n: int) -> settings:
    """``@examples(n)``: n examples in CI, more when exploring."""
    return settings(max_examples=n * (20 if PROFILE == "explore" else 1))
