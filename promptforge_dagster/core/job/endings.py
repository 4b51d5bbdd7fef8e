"""How an attempt ended, as the registry records it: the status, the one-line message,
and the counters reported with it."""

from __future__ import annotations

from promptforge_dagster.core.job.errors import JobFailed, JobRejected  # noqa: F401 - JobRejected: the doctest
from promptforge_dagster.core.job_registry import LeaseLost
from promptforge_dagster.core.pipeline_config import JobStats

# Messages recorded in the registry are cut to this length (one line in a UI table).
MESSAGE_CHARS = 500


def counters_of(stats: JobStats) -> dict[str, int]:
    return {"total": stats.total or 0, "succeeded": stats.succeeded, "failed": stats.failed,
            "input_errors": stats.input_errors, "skipped": stats.skipped, "sent": stats.sent,
            "rate_limited": stats.rate_limited}


def outcome_of(error: BaseException | None, stats: JobStats) -> tuple[str, str | None]:
    """The status to record for how an attempt ended, and its one-line message.
    An empty status: record nothing (a newer attempt owns the job).

    >>> outcome_of(None, JobStats())
    ('succeeded', None)
    >>> outcome_of(JobRejected("in.pdf is not JSONL"), JobStats())
    ('rejected', 'in.pdf is not JSONL')
    >>> outcome_of(ZeroDivisionError("boom"), JobStats())
    ('failed', 'ZeroDivisionError: boom')
    >>> outcome_of(KeyboardInterrupt(), JobStats(total=9, succeeded=3))[0]
    'cancelled'
    """
    if error is None:
        return "succeeded", None
    if isinstance(error, LeaseLost):
        return "", None
    if isinstance(error, JobFailed):
        return error.status, str(error)[:MESSAGE_CHARS]
    if isinstance(error, Exception):
        return "failed", f"{type(error).__name__}: {error}"[:MESSAGE_CHARS]
    done = stats.succeeded + stats.failed + stats.skipped
    return "cancelled", f"cancelled ({done} of {stats.total or '?'} prompts done and kept)"
