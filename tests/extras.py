"""Optional extras in tests: skipped where an extra is not installed, never under CI.

`.ci/run` installs every extra the tests use (`test`, `cluster`), so under ``CI=true`` a missing or
broken one is an error, not a quiet skip that turns a broken install into a green run.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require(name: str, reason: str | None = None) -> ModuleType:
    """The module ``name``: imported (an ImportError fails the test) under ``CI=true``, else the
    test is skipped when it cannot be imported."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip(reason or f"{name} is not installed: {err}")
