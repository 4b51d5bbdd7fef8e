"""How an attempt ended, as the registry records it: the status, the one-line message,
and the counters reported with it."""

from __future__ import annotations

from promptforge_dagster.core.job.errors import JobFailed, JobRejected  # noqa: F401 - JobRejected: the doctest
from promptforge_dagster.core.job_registry import LeaseLost
from promptforge_dagster.core.pipeline_config import JobStats

# Messages recorded in the registry are cut to this length (one line in a UI table).
MESSAGE_CHARS = 500


# Counters summed over a job's attempts (each attempt starts from what its checkpoint says).
EARLIER_COUNTERS = ("sent", "rate_limited", "retries", "attempts")


def counters_of(stats: JobStats) -> dict[str, int]:
    """The job's counters as a checkpoint and the registry keep them: this attempt's outcome
    counts, and sends, refusals, retries and attempts over every attempt so far.

    >>> s = JobStats(sent=10, rate_limited=2); s.earlier = {"sent": 5, "attempts": 1}
    >>> c = counters_of(s); c["sent"], c["rate_limited"], c["attempts"]
    (15, 2, 2)
    """
    e = stats.earlier
    return {"total": stats.total or 0, "succeeded": stats.succeeded, "failed": stats.failed,
            "input_errors": stats.input_errors, "skipped": stats.skipped, "sent": stats.sent + e.get("sent", 0),
            "rate_limited": stats.rate_limited + e.get("rate_limited", 0),
            "retries": stats.retries + e.get("retries", 0), "attempts": e.get("attempts", 0) + 1}


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
