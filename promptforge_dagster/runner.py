"""The one run scaffold, used by the CLI (``promptforge run``) and the Dagster asset.

It wraps a :class:`~promptforge_dagster.core.job.JobAttempt` in what both need around
it: the progress reporter (a terminal line or the run log), OpenTelemetry metrics when
configured, the rate plot, and ``asyncio.run``. What differs between the two callers is
passed in: where progress goes, the hooks, the owner string.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TextIO

from promptforge_dagster.core.job import JobAttempt, JobHooks, JobResult, JobSpec, run_attempt
from promptforge_dagster.core.job_registry import JobRegistry
from promptforge_dagster.core.pipeline import JobStats, Provider
from promptforge_dagster.core.rate_lanes import RateLanes
from promptforge_dagster.core.storage import Storage


@dataclass
class Progress:
    """Where the progress line goes: a terminal (redrawn) or a log (one line every ``every_s``)."""

    stream: TextIO
    enabled: bool = True
    every_s: float = 5.0


def run(spec: JobSpec, *, input_storage: Storage, output_storage: Storage, provider: Provider, lanes: RateLanes,
        registry: JobRegistry, progress: Progress, hooks: JobHooks | None = None, owner: str | None = None,
        stats: JobStats | None = None, plot: bool = True) -> JobResult:
    """Run one attempt to its end with progress, metrics and the rate plot; raises
    :class:`~promptforge_dagster.core.job.JobFailed` (or a subclass) when it did not succeed."""
    from promptforge_dagster.progress import ProgressReporter
    from promptforge_dagster.telemetry import job_metrics

    stats = stats or JobStats()
    hooks = hooks or JobHooks()
    if hooks.release_memory is None:
        from promptforge_dagster.procinfo import trim_heap

        hooks.release_memory = trim_heap
    plotter = None
    if plot and hooks.plot is None:
        from promptforge_dagster.rate_plot import PlotProcess

        hooks.plot = plotter = PlotProcess()  # matplotlib stays out of this process
    reporter = ProgressReporter(stats, lanes, stream=progress.stream, enabled=progress.enabled,
                                log_every_s=progress.every_s)

    async def go(metric_hooks) -> JobResult:
        attempt = JobAttempt(spec, input_storage=input_storage, output_storage=output_storage, provider=provider,
                             lanes=lanes, registry=registry, owner=owner, stats=stats,
                             hooks=hooks.with_metrics(metric_hooks))
        task = asyncio.create_task(reporter.run())
        try:
            return await run_attempt(attempt)
        finally:
            task.cancel()
            reporter.final()
            close = getattr(provider, "close", None)  # the lean transport's connection pool
            if close is not None:
                await close()
            if plotter is not None:
                plotter.close()

    with job_metrics(spec.job_id or spec.input_uri, stats, lanes) as metric_hooks:  # OTLP when configured
        return asyncio.run(go(metric_hooks))
