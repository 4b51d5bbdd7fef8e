"""The job registry on Firestore: production (and its emulator in tests).

One document per job in a collection (default ``promptforge_jobs``); every lease
operation is a Firestore transaction, so concurrent attempts see each other's epochs.
Job ids may contain ``/`` (they are often ``gs://`` paths): the document id is a hash of
the id, and the id itself is a field.
"""

from __future__ import annotations

import hashlib
import os
import random
import time

from google.api_core import exceptions as gexc
from google.cloud import firestore

from dataclasses import asdict

from promptforge_dagster.core.job_registry import (
    JobRecord, LaneRecord, Lease, check_owned, finish_record, join_lane, renew_record, settle_record, take_lease,
    validate_status,
)


GET_ALL_BATCH = 300  # documents per batched read (get_all); the sensor reads thousands per tick this way
MAX_ATTEMPTS = 5  # per transaction; contended ones are retried again with backoff (_in_transaction)


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

    def _in_transaction(self, fn):
        """Run a @transactional function; when it keeps losing to concurrent writers (attempts
        racing for one job's lease), back off with jitter and try again."""
        for attempt in range(10):
            try:
                return fn(self.client.transaction(max_attempts=MAX_ATTEMPTS))
            except (ValueError, gexc.Aborted) as exc:
                if "Failed to commit transaction" not in str(exc) and not isinstance(exc, gexc.Aborted):
                    raise
                if attempt == 9:
                    raise
                time.sleep(random.uniform(0.5, 1.0) * min(2.0, 0.05 * 2 ** attempt))
        raise AssertionError("unreachable")

    def _ref(self, job_id: str):
        return self.collection.document(doc_id(job_id))

    def create(self, record: JobRecord) -> bool:
        validate_status(record.status)
        try:
            self._ref(record.job_id).create(record.as_dict())
            return True
        except gexc.AlreadyExists:  # Conflict (409) is its parent: the document exists
            return False

    def get(self, job_id: str) -> JobRecord | None:
        snap = self._ref(job_id).get()
        return JobRecord.from_dict(snap.to_dict()) if snap.exists else None

    def get_many(self, job_ids: list[str]) -> dict[str, JobRecord]:
        out: dict[str, JobRecord] = {}
        for i in range(0, len(job_ids), GET_ALL_BATCH):
            refs = [self._ref(j) for j in job_ids[i:i + GET_ALL_BATCH]]
            for snap in self.client.get_all(refs):
                if snap.exists:
                    rec = JobRecord.from_dict(snap.to_dict())
                    out[rec.job_id] = rec
        return out

    def list(self, status: str | None = None, limit: int = 100, *, newest_first: bool = False,
             before: tuple[float, str] | None = None) -> list[JobRecord]:
        query = self.collection
        if status is not None:  # served by the (status, created_at) index the infra creates
            query = query.where(filter=firestore.FieldFilter("status", "==", validate_status(status)))
        if newest_first:
            direction = firestore.Query.DESCENDING
            query = query.order_by("created_at", direction=direction).order_by("job_id", direction=direction)
            if before is not None:
                query = query.start_after({"created_at": before[0], "job_id": before[1]})
        else:
            query = query.order_by("created_at").order_by("job_id")
        return [JobRecord.from_dict(s.to_dict()) for s in query.limit(limit).stream()]

    def acquire(self, job_id: str, owner: str, now: float, ttl_s: float, *, steal: bool = False) -> Lease:
        ref = self._ref(job_id)

        @firestore.transactional
        def take(tx):
            snap = ref.get(transaction=tx)
            rec = JobRecord.from_dict(snap.to_dict()) if snap.exists else JobRecord(job_id, "", "", created_at=now)
            lease = take_lease(rec, owner, now, ttl_s, steal)
            tx.set(ref, rec.as_dict())
            return lease

        return self._in_transaction(take)

    def _update_owned(self, lease: Lease, change) -> JobRecord:
        ref = self._ref(lease.job_id)

        @firestore.transactional
        def update(tx):
            snap = ref.get(transaction=tx)
            rec = check_owned(JobRecord.from_dict(snap.to_dict()) if snap.exists else None, lease)
            change(rec)
            tx.set(ref, rec.as_dict())
            return rec

        return self._in_transaction(update)

    def renew(self, lease: Lease, now: float, ttl_s: float, counters: dict[str, int] | None = None) -> Lease:
        def change(rec: JobRecord) -> None:
            renew_record(rec, now, ttl_s, counters)

        rec = self._update_owned(lease, change)
        return Lease(lease.job_id, lease.owner, lease.epoch, rec.lease_expires_at)

    def finish(self, lease: Lease, now: float, status: str, counters: dict[str, int] | None = None,
               message: str | None = None) -> None:
        validate_status(status)

        def change(rec: JobRecord) -> None:
            finish_record(rec, now, status, counters, message)

        self._update_owned(lease, change)

    def settle(self, job_id: str, now: float, status: str, message: str | None = None, *,
               run_id: str | None = None) -> bool:
        validate_status(status)
        ref = self._ref(job_id)

        @firestore.transactional
        def update(tx):
            snap = ref.get(transaction=tx)
            if not snap.exists:
                return False
            rec = JobRecord.from_dict(snap.to_dict())
            if not settle_record(rec, now, status, message, run_id):
                return False
            tx.set(ref, rec.as_dict())
            return True

        return self._in_transaction(update)

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
            join_lane(rec, job_id, now, ttl_s, state)
            tx.set(ref, asdict(rec))
            return rec

        return self._in_transaction(update)

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

        self._in_transaction(update)
