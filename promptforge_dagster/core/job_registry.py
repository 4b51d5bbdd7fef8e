"""The job registry interface: job records with status and counters, and the lease.

A job has one owner at a time. Taking the lease bumps the job's epoch; every write an
owner makes afterwards names its epoch and is refused once a newer epoch exists, so an
attempt that lost its lease (a zombie step process beside its retry) cannot commit.
Implementations (SQLite for the embedded default, Firestore in production) live outside
``core`` and pass one contract suite.

>>> JobRecord(job_id="j", input_uri="in.jsonl", output_uri="out").status
'queued'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

STATUSES = ("queued", "running", "succeeded", "failed", "rejected", "cancelled")
# Where a job rests once its run has ended: nothing stays queued or running after that.
TERMINAL = ("succeeded", "failed", "rejected", "cancelled")


class LeaseLost(Exception):
    """This attempt no longer owns the job: a newer attempt took it over."""


class LeaseHeld(Exception):
    """Another attempt holds an unexpired lease and stealing was not asked for."""


@dataclass
class JobRecord:
    """One job as the registry knows it. Counters are the last an owner reported."""

    job_id: str
    input_uri: str
    output_uri: str
    status: str = "queued"
    epoch: int = 0
    owner: str | None = None
    lease_expires_at: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    message: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "JobRecord":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Lease:
    """Proof of ownership: the epoch this attempt holds."""

    job_id: str
    owner: str
    epoch: int
    expires_at: float


class JobRegistry(Protocol):
    """Jobs and their leases. ``now`` is passed in: the registry holds no clock."""

    def create(self, record: JobRecord) -> bool:
        """Record a new job; False (and no change) if one with that id exists."""

    def get(self, job_id: str) -> JobRecord | None: ...

    def get_many(self, job_ids: list[str]) -> dict[str, JobRecord]:
        """The records that exist among ``job_ids``, in batched reads (the sensor's listing)."""

    def list(self, status: str | None = None, limit: int = 100, *, newest_first: bool = False,
             before: tuple[float, str] | None = None) -> list[JobRecord]:
        """Jobs, oldest first (or newest first, and then only those that sort after
        ``before``, the ``(created_at, job_id)`` of the previous page's last record: the
        next page), optionally of one status."""

    def acquire(self, job_id: str, owner: str, now: float, ttl_s: float, *, steal: bool = False) -> Lease:
        """Own the job under a new epoch. Raises :class:`LeaseHeld` if another owner's
        lease is unexpired and ``steal`` is false. Creates the record if absent."""

    def renew(self, lease: Lease, now: float, ttl_s: float, counters: dict[str, int] | None = None) -> Lease:
        """Extend the lease (and report counters); :class:`LeaseLost` if the epoch moved on."""

    def finish(self, lease: Lease, now: float, status: str, counters: dict[str, int] | None = None,
               message: str | None = None) -> None:
        """Record the outcome and release the lease; :class:`LeaseLost` if it was lost."""

    def settle(self, job_id: str, now: float, status: str, message: str | None = None, *,
               run_id: str | None = None) -> bool:
        """End a job no live attempt holds (see :func:`settle_record`); True if it changed."""

    def lane(self, lane: str) -> LaneRecord | None:
        """The shared record of a lane, if any job has published one."""

    def publish_lane(self, lane: str, job_id: str, now: float, ttl_s: float,
                     state: dict[str, Any] | None = None) -> LaneRecord:
        """In one transaction: renew this job's membership (until ``now + ttl_s``), drop
        expired members, store ``state`` (the account-level learned state) if given."""

    def leave_lane(self, lane: str, job_id: str) -> None:
        """This job stops pacing on the lane: its share goes back to the others."""


@dataclass
class LaneRecord:
    """What jobs share about one lane (provider, model, key hash): the account-level
    learned state, when it was learned, and which jobs are pacing on it now."""

    lane: str
    state: dict[str, Any] = field(default_factory=dict)
    updated_at: float = 0.0
    members: dict[str, float] = field(default_factory=dict)  # job id -> membership expiry

    def active(self, now: float) -> dict[str, float]:
        return {j: t for j, t in self.members.items() if t > now}


# -- the state transitions every registry applies inside its transaction ----------------
def take_lease(rec: JobRecord, owner: str, now: float, ttl_s: float, steal: bool) -> Lease:
    """A new epoch for ``owner`` (in place); :class:`LeaseHeld` if another owner's lease
    is live and ``steal`` is false.

    >>> rec = JobRecord("j", "in", "out")
    >>> take_lease(rec, "a", now=0.0, ttl_s=10, steal=False).epoch, rec.status
    (1, 'running')
    """
    if (not steal and rec.owner not in (None, owner) and rec.lease_expires_at > now
            and rec.status == "running"):
        raise LeaseHeld(f"job {rec.job_id} is held by {rec.owner} until {rec.lease_expires_at:.0f}")
    rec.epoch += 1
    rec.owner, rec.lease_expires_at = owner, now + ttl_s
    rec.status, rec.updated_at = "running", now
    return Lease(rec.job_id, owner, rec.epoch, rec.lease_expires_at)


def check_owned(rec: JobRecord | None, lease: Lease) -> JobRecord:
    """The record, if ``lease`` still owns it; :class:`LeaseLost` otherwise."""
    if rec is None or rec.epoch != lease.epoch:
        newer = rec.epoch if rec else "none"
        raise LeaseLost(f"job {lease.job_id}: lease epoch {lease.epoch} was superseded (now {newer})")
    return rec


def renew_record(rec: JobRecord, now: float, ttl_s: float, counters: dict[str, int] | None) -> None:
    rec.lease_expires_at, rec.updated_at = now + ttl_s, now
    if counters is not None:
        rec.counters = dict(counters)


def finish_record(rec: JobRecord, now: float, status: str, counters: dict[str, int] | None,
                  message: str | None) -> None:
    rec.status, rec.message, rec.updated_at = validate_status(status), message, now
    rec.owner, rec.lease_expires_at = None, 0.0
    if counters is not None:
        rec.counters = dict(counters)


def page_key(rec: JobRecord) -> tuple[float, str]:
    """Where the next newest-first page starts: after this record (ties on time broken by id)."""
    return rec.created_at, rec.job_id


def settle_record(rec: JobRecord, now: float, status: str, message: str | None, run_id: str | None) -> bool:
    """Record a terminal ``status`` for a job that no live attempt holds: one still queued
    (it failed before taking its lease), one whose lease expired, or, given ``run_id``,
    one held by that run (which has ended). Never overrides a terminal status or a live
    lease of another run. True if the record changed.

    >>> rec = JobRecord("j", "in", "out")
    >>> settle_record(rec, 5.0, "rejected", "not JSONL", None), rec.status
    (True, 'rejected')
    >>> settle_record(rec, 6.0, "failed", "x", None)
    False
    >>> live = JobRecord("k", "in", "out", status="running", owner="h:1:2:run-b", lease_expires_at=100.0)
    >>> settle_record(live, 50.0, "cancelled", None, run_id="run-a"), settle_record(live, 50.0, "cancelled", None, "run-b")
    (False, True)
    """
    if status not in TERMINAL or rec.status in TERMINAL:
        return False
    held = rec.status == "running" and rec.owner is not None and rec.lease_expires_at > now
    if held and not (run_id and rec.owner.endswith(f":{run_id}")):
        return False
    finish_record(rec, now, status, None, message)
    return True


def join_lane(rec: LaneRecord, job_id: str, now: float, ttl_s: float, state: dict[str, Any] | None) -> None:
    """Renew ``job_id``'s membership, drop expired members, store ``state`` if given."""
    rec.members = {**rec.active(now), job_id: now + ttl_s}
    if state is not None:
        rec.state, rec.updated_at = state, now


def validate_status(status: str) -> str:
    """
    >>> validate_status("paused")
    Traceback (most recent call last):
    ...
    ValueError: unknown job status 'paused' (one of queued, running, succeeded, failed, rejected, cancelled)
    """
    if status not in STATUSES:
        raise ValueError(f"unknown job status {status!r} (one of {', '.join(STATUSES)})")
    return status
