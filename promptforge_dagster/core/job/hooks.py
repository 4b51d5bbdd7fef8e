"""What the CLI and the Dagster asset plug into an attempt: one object, every field optional.

>>> JobHooks().log("nothing happens")
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from promptforge_dagster.core.commit import ResumeInfo
    from promptforge_dagster.core.pipeline import Pipeline
    from promptforge_dagster.core.rate_history import RateHistory


def _quiet(message: str) -> None:
    pass


@dataclass
class JobHooks:
    """Observers of one attempt. None of them may change what the attempt does; a hook
    that raises fails the attempt like any other error (so hooks stay small)."""

    log: Callable[[str], None] = _quiet  # one-line notices (a re-read pass, a plot that failed)
    on_resume: Callable[["ResumeInfo"], None] | None = None  # what an earlier attempt left
    on_pipeline: Callable[["Pipeline"], None] | None = None  # the pipeline, once built (tests, tools)
    on_commit: Callable[[], None] | None = None  # after each checkpoint commit (metrics)
    on_success: Callable[[float, float | None], None] | None = None  # (latency s, cost) per success
    plot: Callable[["RateHistory"], bytes] | None = None  # renders rate.png; None: no plot
    # gives freed heap back to the OS once the duplicate scan (its memory grows with the
    # input's lines) is over, so the scan's peak never adds to the sending phase's
    release_memory: Callable[[], None] | None = None

    def with_metrics(self, metric_hooks: dict[str, Any]) -> "JobHooks":
        """These hooks plus telemetry's (``on_success``, ``on_commit``)."""
        return replace(self, on_commit=metric_hooks.get("on_commit", self.on_commit),
                       on_success=metric_hooks.get("on_success", self.on_success))
