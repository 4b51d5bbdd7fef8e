"""How an attempt ended, as the registry records it: the status, the one-line message,
and the counters reported with it (:func:`record_outcome` writes them)."""

from __future__ import annotations

from typing import Any, Callable

from promptforge_dagster.core.job.errors import (  # noqa: F401 - JobRejected: the doctest
    RETRYABLE_ERROR_CODES, JobFailed, JobRejected,
)
from promptforge_dagster.core.job_registry import JobRegistry, LeaseLost
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


def record_outcome(registry: JobRegistry, committer: Any, job_id: str, status: str, message: str | None,
                   stats: JobStats, summary: dict[str, Any] | None, *, now: float,
                   log: Callable[[str], None]) -> None:
    """Record how the job ended, under the attempt's lease (``committer``: its
    :class:`~promptforge_dagster.core.commit.JobCommitter`, or None before it took one).
    ``summary``: the published summary, whose figures are the whole job's, not this attempt's."""
    if not status:
        return
    if committer is not None and committer.lost is not None:
        return  # a newer attempt owns the record
    lease = committer.lease if committer is not None else None
    if lease is None:
        if status != "succeeded" and job_id:
            registry.settle(job_id, now, status, message)  # never took the lease
        return
    counters = counters_of(stats)
    if summary is not None:
        errors = summary.get("errors_by_code") or {}
        counters.update(total=summary.get("prompts") or 0, succeeded=summary.get("succeeded") or 0,
                        failed=summary.get("failed") or 0,
                        retryable_failed=sum(errors.get(c, 0) for c in RETRYABLE_ERROR_CODES))
    try:
        registry.finish(lease, now, status, counters, message)
    except LeaseLost:
        pass  # a newer attempt owns the record now; its outcome is the one that counts
    except Exception as exc:  # noqa: BLE001 - the outcome stands; the registry catches up
        # A failed run is settled by the run-end sensor; a published job whose record
        # still says running is relaunched once its lease expires, finds its results
        # already published and records success.
        log(f"could not record the job's outcome ({status}): {type(exc).__name__}: {exc}")
