"""A job attempt as one object (``attempt.py``), its heartbeat, hooks, output layout and
error codes. See ``attempt.py`` for the phases and how every attempt's ending is recorded.

Names are loaded on first use: ``core/commit.py`` needs ``layout`` and ``errors`` while
``attempt`` needs ``core/commit.py``, so this package imports nothing eagerly.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "JobAttempt": "attempt", "JobResult": "spec", "JobSpec": "spec", "Phase": "attempt",
    "clear_output": "publish", "default_job_id": "spec", "run_attempt": "attempt", "run_job": "attempt",
    "JobFailed": "errors", "JobRejected": "errors", "JobSuperseded": "errors",
    "JobHooks": "hooks", "OutputLayout": "layout",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
