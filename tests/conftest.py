"""Shared pytest configuration for floxide's tests (trio mode is set in pyproject)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "floxide",
    deadline=None,
    max_examples=int(os.environ.get("FLOXIDE_HYPOTHESIS_EXAMPLES", "60")),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("floxide")
