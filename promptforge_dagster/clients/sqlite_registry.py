"""The job registry on SQLite: the embedded default (one file, shared by local processes).

Every lease operation runs in a ``BEGIN IMMEDIATE`` transaction, so two processes taking
the same job serialise on the database lock and see each other's epochs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from typing import Iterator

from dataclasses import asdict

from promptforge_dagster.core.job_registry import (
    JobRecord, LaneRecord, Lease, check_owned, finish_record, join_lane, renew_record, settle_record, take_lease,
    validate_status,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


# Ids per batched read (SQLite's default cap on bound parameters is 999 in older builds).
_BATCH = 500


class SQLiteRegistry:
    """:class:`~promptforge_dagster.core.job_registry.JobRegistry` in a SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._local = threading.local()
        with self._tx() as db:
            db.execute(_SCHEMA)
            db.execute("CREATE TABLE IF NOT EXISTS lanes (lane TEXT PRIMARY KEY, doc TEXT NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_at)")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @staticmethod
    def _load(db: sqlite3.Connection, job_id: str) -> JobRecord | None:
        row = db.execute("SELECT doc FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return JobRecord.from_dict(json.loads(row[0])) if row else None

    @staticmethod
    def _save(db: sqlite3.Connection, rec: JobRecord) -> None:
        db.execute(
            "INSERT INTO jobs (job_id, doc, status, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(job_id) DO UPDATE SET doc = excluded.doc, status = excluded.status",
            (rec.job_id, json.dumps(rec.as_dict()), rec.status, rec.created_at),
        )

    def create(self, record: JobRecord) -> bool:
        validate_status(record.status)
        with self._tx() as db:
            if self._load(db, record.job_id) is not None:
                return False
            self._save(db, record)
            return True

    def get(self, job_id: str) -> JobRecord | None:
        return self._load(self._db(), job_id)

    def get_many(self, job_ids: list[str]) -> dict[str, JobRecord]:
        out: dict[str, JobRecord] = {}
        for i in range(0, len(job_ids), _BATCH):
            chunk = job_ids[i:i + _BATCH]
            rows = self._db().execute(
                f"SELECT doc FROM jobs WHERE job_id IN ({','.join('?' * len(chunk))})", chunk)
            for (doc,) in rows:
                rec = JobRecord.from_dict(json.loads(doc))
                out[rec.job_id] = rec
        return out

    def list(self, status: str | None = None, limit: int = 100, *, newest_first: bool = False,
             before: tuple[float, str] | None = None) -> list[JobRecord]:
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(validate_status(status))
        if newest_first and before is not None:
            where.append("(created_at < ? OR (created_at = ? AND job_id < ?))")
            args.extend([before[0], before[0], before[1]])
        order = "created_at DESC, job_id DESC" if newest_first else "created_at, job_id"
        sql = ("SELECT doc FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else "")
               + f" ORDER BY {order} LIMIT ?")
        rows = self._db().execute(sql, (*args, limit))
        return [JobRecord.from_dict(json.loads(r[0])) for r in rows]

    def acquire(self, job_id: str, owner: str, now: float, ttl_s: float, *, steal: bool = False) -> Lease:
        with self._tx() as db:
            rec = self._load(db, job_id) or JobRecord(job_id, "", "", created_at=now)
            lease = take_lease(rec, owner, now, ttl_s, steal)
            self._save(db, rec)
            return lease

    def _owned(self, db: sqlite3.Connection, lease: Lease) -> JobRecord:
        return check_owned(self._load(db, lease.job_id), lease)

    def renew(self, lease: Lease, now: float, ttl_s: float, counters: dict[str, int] | None = None) -> Lease:
        with self._tx() as db:
            rec = self._owned(db, lease)
            renew_record(rec, now, ttl_s, counters)
            self._save(db, rec)
            return Lease(lease.job_id, lease.owner, lease.epoch, rec.lease_expires_at)

    def finish(self, lease: Lease, now: float, status: str, counters: dict[str, int] | None = None,
               message: str | None = None) -> None:
        validate_status(status)
        with self._tx() as db:
            rec = self._owned(db, lease)
            finish_record(rec, now, status, counters, message)
            self._save(db, rec)

    def settle(self, job_id: str, now: float, status: str, message: str | None = None, *,
               run_id: str | None = None) -> bool:
        validate_status(status)
        with self._tx() as db:
            rec = self._load(db, job_id)
            if rec is None or not settle_record(rec, now, status, message, run_id):
                return False
            self._save(db, rec)
            return True

    # -- shared lanes ---------------------------------------------------------------
    @staticmethod
    def _load_lane(db: sqlite3.Connection, lane: str) -> LaneRecord | None:
        row = db.execute("SELECT doc FROM lanes WHERE lane = ?", (lane,)).fetchone()
        return LaneRecord(**json.loads(row[0])) if row else None

    def lane(self, lane: str) -> LaneRecord | None:
        return self._load_lane(self._db(), lane)

    def publish_lane(self, lane: str, job_id: str, now: float, ttl_s: float,
                     state: dict | None = None) -> LaneRecord:
        with self._tx() as db:
            rec = self._load_lane(db, lane) or LaneRecord(lane)
            join_lane(rec, job_id, now, ttl_s, state)
            db.execute("INSERT INTO lanes (lane, doc) VALUES (?, ?) ON CONFLICT(lane) DO UPDATE SET doc = excluded.doc",
                       (lane, json.dumps(asdict(rec))))
            return rec

    def leave_lane(self, lane: str, job_id: str) -> None:
        with self._tx() as db:
            rec = self._load_lane(db, lane)
            if rec is not None and job_id in rec.members:
                del rec.members[job_id]
                db.execute("UPDATE lanes SET doc = ? WHERE lane = ?", (json.dumps(asdict(rec)), lane))
