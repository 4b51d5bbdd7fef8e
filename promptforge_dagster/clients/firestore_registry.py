"""The job registry on Firestore: production (and its emulator in tests).

One document per job in a collection (default ``promptforge_jobs``); every lease
operation is a Firestore transaction, so concurrent attempts see each other's epochs.
Job ids may contain ``/`` (they are often ``gs://`` paths): the document id is a hash of
the id, and the id itself is a field.
"""

from __future__ import annotations

import hashlib
import os

from google.cloud import firestore

from dataclasses import asdict

from promptforge_dagster.core.job_registry import (
    JobRecord, LaneRecord, Lease, LeaseHeld, LeaseLost, validate_status,
)


def doc_id(job_id: str) -> str:
    return hashlib.sha256(job_id.encode()).hexdigest()[:40]


def firestore_client(project: str, database: str | None = None) -> firestore.Client:
    """A client; against the emulator (``FIRESTORE_EMULATOR_HOST``) with anonymous
    credentials, so no cloud credentials are looked for."""
    kwargs = {"project": project}
    if database:
        kwargs["database"] = database
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        kwargs["credentials"] = AnonymousCredentials()
    return firestore.Client(**kwargs)


class FirestoreRegistry:
    """:class:`~promptforge_dagster.core.job_registry.JobRegistry` in a Firestore collection."""

    def __init__(self, client: firestore.Client, collection: str = "promptforge_jobs",
                 lanes_collection: str = "promptforge_lanes") -> None:
        self.client = client
        self.collection = client.collection(collection)
        self.lanes = client.collection(lanes_collection)

    def _ref(self, job_id: str):
        return self.collection.document(doc_id(job_id))

    def create(self, record: JobRecord) -> bool:
        validate_status(record.status)
        try:
            self._ref(record.job_id).create(record.as_dict())
            return True
        except Exception as exc:  # google.api_core.exceptions.AlreadyExists (Conflict)
            if type(exc).__name__ in ("AlreadyExists", "Conflict"):
                return False
            raise

    def get(self, job_id: str) -> JobRecord | None:
        snap = self._ref(job_id).get()
        return JobRecord.from_dict(snap.to_dict()) if snap.exists else None

    def list(self, status: str | None = None, limit: int = 100) -> list[JobRecord]:
        query = self.collection
        if status is not None:
            query = query.where(filter=firestore.FieldFilter("status", "==", validate_status(status)))
        docs = [JobRecord.from_dict(s.to_dict()) for s in query.stream()]
        return sorted(docs, key=lambda r: (r.created_at, r.job_id))[:limit]

    def acquire(self, job_id: str, owner: str, now: float, ttl_s: float, *, steal: bool = False) -> Lease:
        ref = self._ref(job_id)

        @firestore.transactional
        def take(tx):
            snap = ref.get(transaction=tx)
            rec = JobRecord.from_dict(snap.to_dict()) if snap.exists else JobRecord(job_id, "", "", created_at=now)
            if (not steal and rec.owner not in (None, owner) and rec.lease_expires_at > now
                    and rec.status == "running"):
                raise LeaseHeld(f"job {job_id} is held by {rec.owner} until {rec.lease_expires_at:.0f}")
            rec.epoch += 1
            rec.owner, rec.lease_expires_at = owner, now + ttl_s
            rec.status, rec.updated_at = "running", now
            tx.set(ref, rec.as_dict())
            return Lease(job_id, owner, rec.epoch, rec.lease_expires_at)

        return take(self.client.transaction())

    def _update_owned(self, lease: Lease, change) -> JobRecord:
        ref = self._ref(lease.job_id)

        @firestore.transactional
        def update(tx):
            snap = ref.get(transaction=tx)
            rec = JobRecord.from_dict(snap.to_dict()) if snap.exists else None
            if rec is None or rec.epoch != lease.epoch:
                newer = rec.epoch if rec else "none"
                raise LeaseLost(f"job {lease.job_id}: lease epoch {lease.epoch} was superseded (now {newer})")
            change(rec)
            tx.set(ref, rec.as_dict())
            return rec

        return update(self.client.transaction())

    def renew(self, lease: Lease, now: float, ttl_s: float, counters: dict[str, int] | None = None) -> Lease:
        def change(rec: JobRecord) -> None:
            rec.lease_expires_at, rec.updated_at = now + ttl_s, now
            if counters is not None:
                rec.counters = dict(counters)

        rec = self._update_owned(lease, change)
        return Lease(lease.job_id, lease.owner, lease.epoch, rec.lease_expires_at)

    def finish(self, lease: Lease, now: float, status: str, counters: dict[str, int] | None = None,
               message: str | None = None) -> None:
        validate_status(status)

        def change(rec: JobRecord) -> None:
            rec.status, rec.message, rec.updated_at = status, message, now
            rec.owner, rec.lease_expires_at = None, 0.0
            if counters is not None:
                rec.counters = dict(counters)

        self._update_owned(lease, change)

    # -- shared lanes ---------------------------------------------------------------
    def lane(self, lane: str) -> LaneRecord | None:
        snap = self.lanes.document(doc_id(lane)).get()
        return LaneRecord(**snap.to_dict()) if snap.exists else None

    def publish_lane(self, lane: str, job_id: str, now: float, ttl_s: float,
                     state: dict | None = None) -> LaneRecord:
        ref = self.lanes.document(doc_id(lane))

        @firestore.transactional
        def update(tx):
            snap = ref.get(transaction=tx)
            rec = LaneRecord(**snap.to_dict()) if snap.exists else LaneRecord(lane)
            rec.members = {**rec.active(now), job_id: now + ttl_s}
            if state is not None:
                rec.state, rec.updated_at = state, now
            tx.set(ref, asdict(rec))
            return rec

        return update(self.client.transaction())

    def leave_lane(self, lane: str, job_id: str) -> None:
        ref = self.lanes.document(doc_id(lane))

        @firestore.transactional
        def update(tx):
            snap = ref.get(transaction=tx)
            if not snap.exists:
                return
            rec = LaneRecord(**snap.to_dict())
            if job_id in rec.members:
                del rec.members[job_id]
                tx.set(ref, asdict(rec))

        update(self.client.transaction())
