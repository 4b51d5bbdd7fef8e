"""The commit protocol: result parts, bitset checkpoints, the lease, and resume.

Invariants (``docs/CHECKPOINTS.md`` explains why each holds):

1. A part is written create-only and never changed; its name says which attempt wrote
   it and in what order (``e<epoch>-<ms>-<pid>-<seq>.part.jsonl``).
2. An ordinal enters the checkpoint's bitset only after the part holding it is written.
3. The checkpoint is replaced only by a compare-and-swap on its generation, by the lease
   holder, after renewing the lease. An attempt whose CAS or renewal fails has lost the
   job: it raises :class:`LeaseLost` and stops.
4. Resume = the checkpoint's bitset plus every part it does not cover (written after
   it, by any attempt): nothing written is lost, and the final assembly keeps one line
   per ordinal, so nothing is duplicated.
5. Only the lease holder that commits the ``publishing`` checkpoint writes
   ``results.jsonl``.

>>> from promptforge_dagster.core.results import Envelope
>>> class Mem(dict):
...     def stat(self, p):
...         from promptforge_dagster.core.storage import ObjectInfo
...         return ObjectInfo(len(self[p][0]), self[p][1]) if p in self else None
...     def read_bytes(self, p): return self[p][0]
...     def write_bytes(self, p, data, *, if_generation_match=None):
...         if if_generation_match is not None and (self[p][1] if p in self else 0) != if_generation_match:
...             raise PreconditionFailed(p)
...         self[p] = (data, (self[p][1] if p in self else 0) + 1); return self[p][1]
...     def list(self, prefix): return sorted(k for k in self if k.startswith(prefix))
>>> class Reg:
...     def acquire(self, job_id, owner, now, ttl_s, steal=False): return Lease(job_id, owner, 1, now + ttl_s)
...     def renew(self, lease, now, ttl_s, counters=None): return lease
>>> c = JobCommitter("j", "out", Mem(), Reg(), owner="me", attempt_tag="t")
>>> len(c.open(now=0.0).done)
0
>>> c.write_part([Envelope(0, {"custom_id": "a"})])
>>> c.commit(now=1.0).done.to_array().tolist()
[0]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from pyroaring import BitMap

from promptforge_dagster.core.checkpoint import BitsetCheckpoint, CorruptCheckpoint, PartName
from promptforge_dagster.core.job.layout import OutputLayout
from promptforge_dagster.core.job_registry import JobRegistry, Lease, LeaseLost
from promptforge_dagster.core.reader import ReadPosition
from promptforge_dagster.core.results import Envelope, decode_part, encode_part
from promptforge_dagster.core.storage import PreconditionFailed, Storage



@dataclass
class ResumeInfo:
    """What an opened attempt starts from."""

    checkpoint: BitsetCheckpoint | None  # the last committed one (None: a fresh job)
    done: BitMap  # checkpoint bits plus every ordinal in parts it did not cover
    position: ReadPosition  # every ordinal before it is in ``done``
    reconciled_parts: int  # parts written after the checkpoint, read back on resume


class JobCommitter:
    """Owns one attempt's writes to a job's output: parts, checkpoints, the final publish.

    ``storage`` is the output's; ``registry`` holds the lease; ``beat`` is the attempt's
    heartbeat, called while reading parts back (a job with many parts keeps its lease).
    Not thread-safe: the pipeline writes parts one at a time (its flush lock) and commits
    between them.
    """

    def __init__(self, job_id: str, output_uri: str, storage: Storage, registry: JobRegistry, *,
                 owner: str, attempt_tag: str | None = None, lease_ttl_s: float = 120.0,
                 input_generation: int | None = None, beat: Callable[[], Any] | None = None) -> None:
        self.job_id = job_id
        self.layout = OutputLayout(output_uri)
        self._beat = beat or (lambda: None)
        self.output_uri = output_uri
        self.storage = storage
        self.registry = registry
        self.owner = owner
        self.lease_ttl_s = lease_ttl_s
        self.input_generation = input_generation
        self._tag = attempt_tag or f"{os.getpid()}"
        self.lease: Lease | None = None
        self.attempt = ""
        self.done = BitMap()
        self.covered: dict[str, int] = {}
        self._seq = 0
        self._generation = 0  # of the checkpoint object as this attempt last wrote or read it
        self.lost: str | None = None

    @property
    def checkpoint_uri(self) -> str:
        return self.layout.checkpoint

    @property
    def parts_prefix(self) -> str:
        return self.layout.parts(self.input_generation)

    # -- attempt start ----------------------------------------------------------
    def open(self, now: float, *, steal: bool = True) -> ResumeInfo:
        """Take the lease (a new epoch), claim the checkpoint, reconcile later parts."""
        self.lease = self.registry.acquire(self.job_id, self.owner, now, self.lease_ttl_s, steal=steal)
        self.attempt = f"e{self.lease.epoch:06d}-{self._tag}"
        for _ in range(5):
            try:
                return self._claim(now)
            except LeaseLost:
                # The older owner's last commit, already past its lease check, landed
                # between our read and our claim: read again, unless we lost the lease.
                self.lease = self.registry.renew(self.lease, now, self.lease_ttl_s)
                self.lost = None
        return self._claim(now)

    def _claim(self, now: float) -> ResumeInfo:
        assert self.lease is not None
        ck = self._read_checkpoint()
        if ck is not None and self.input_generation is not None and ck.input_generation not in (
                None, self.input_generation):
            ck = None  # progress on another version of the input means nothing for this one
        if ck is not None and ck.epoch > self.lease.epoch:
            raise LeaseLost(f"job {self.job_id}: checkpoint epoch {ck.epoch} is newer than this "
                            f"attempt's lease ({self.lease.epoch})")
        self.done = BitMap(ck.done) if ck else BitMap()
        self.covered = dict(ck.covered) if ck else {}
        reconciled = self._reconcile(ck)
        position = ck.position if ck else ReadPosition()
        # Claim: the CAS bumps the checkpoint's generation, so an older attempt's next commit fails.
        status = "published" if ck is not None and ck.status == "published" else "running"
        self._write_checkpoint(self._snapshot(position, ck.rate_state if ck else {},
                                              ck.counters if ck else {}, now, status))
        return ResumeInfo(ck, BitMap(self.done), position, reconciled)

    def _read_checkpoint(self) -> BitsetCheckpoint | None:
        info = self.storage.stat(self.checkpoint_uri)
        if info is None:
            self._generation = 0
            return None
        data = self.storage.read_bytes(self.checkpoint_uri)
        self._generation = info.generation
        try:
            return BitsetCheckpoint.decode(data)
        except CorruptCheckpoint:
            return None  # start from the parts alone: they hold everything that was written

    def _reconcile(self, ck: BitsetCheckpoint | None) -> int:
        """Read back every part the checkpoint does not cover; afterwards all parts that
        exist now are covered."""
        count = 0
        for path in self.storage.list(self.parts_prefix):
            name = PartName.parse(path)
            if name is None:
                continue
            if ck is None or not ck.is_covered(name):
                self._beat()
                self.done.update(env.ordinal for env in decode_part(self.storage.read_bytes(path)))
                count += 1
            self.covered[name.attempt] = max(self.covered.get(name.attempt, 0), name.seq)
        return count

    # -- while running ------------------------------------------------------------
    def write_part(self, envelopes: list[Envelope]) -> None:
        """Write one immutable part; its ordinals count as done from now on."""
        if not envelopes:
            return
        self._seq += 1
        name = PartName(self.attempt, self._seq)
        path = self.parts_prefix + name.filename()
        data = encode_part(envelopes)
        try:
            self.storage.write_bytes(path, data, if_generation_match=0)
        except PreconditionFailed:
            if self.storage.read_bytes(path) != data:  # a retried write that had landed is ours
                raise
        self.done.update(env.ordinal for env in envelopes)
        self.covered[self.attempt] = self._seq

    def commit(self, now: float, position: ReadPosition | None = None, rate_state: dict[str, Any] | None = None,
               counters: dict[str, int] | None = None, status: str = "running") -> BitsetCheckpoint:
        """Renew the lease and replace the checkpoint by CAS; :class:`LeaseLost` if either fails."""
        self._renew(now, counters)
        ck = self._snapshot(position or ReadPosition(), rate_state or {}, counters or {}, now, status)
        self._write_checkpoint(ck)
        return ck

    def heartbeat(self, now: float) -> None:
        """Renew the lease between commits (so a live owner is never taken for dead);
        :class:`LeaseLost` if a newer attempt owns the job."""
        self._renew(now, None)

    def _renew(self, now: float, counters: dict[str, int] | None) -> None:
        if self.lease is None:
            raise RuntimeError("open() the committer first")
        try:
            self.lease = self.registry.renew(self.lease, now, self.lease_ttl_s, counters)
        except LeaseLost as exc:
            self.lost = str(exc)
            raise

    def _snapshot(self, position: ReadPosition, rate_state: dict[str, Any], counters: dict[str, int],
                  now: float, status: str) -> BitsetCheckpoint:
        assert self.lease is not None
        return BitsetCheckpoint(job_id=self.job_id, epoch=self.lease.epoch, done=BitMap(self.done),
                                covered=dict(self.covered), position=position,
                                input_generation=self.input_generation, rate_state=rate_state,
                                counters=dict(counters), status=status, committed_at=now)

    def _write_checkpoint(self, ck: BitsetCheckpoint) -> None:
        data = ck.encode()
        try:
            self._generation = self.storage.write_bytes(self.checkpoint_uri, data,
                                                        if_generation_match=self._generation)
        except PreconditionFailed as exc:
            info = self.storage.stat(self.checkpoint_uri)
            if info is not None and self.storage.read_bytes(self.checkpoint_uri) == data:
                self._generation = info.generation  # our own write landed; its reply was lost
                return
            self.lost = (f"job {self.job_id}: the checkpoint was replaced by another attempt; "
                         f"this one (epoch {ck.epoch}) stops")
            raise LeaseLost(self.lost) from exc

    def reopen_failed(self, codes: tuple[str, ...]) -> BitMap:
        """Take the ordinals whose latest record is a failure with one of ``codes`` out of
        the done set (a re-run sends them again; assembly keeps the newest record)."""
        seen, failed = BitMap(), BitMap()
        for data in self.read_parts(reversed(self.part_paths())):  # newest part first
            self._beat()
            for env in decode_part(data):
                if env.ordinal in seen:
                    continue
                seen.add(env.ordinal)
                error = env.record.get("error") or {}
                if error.get("code") in codes:
                    failed.add(env.ordinal)
        self.done -= failed
        return failed

    # -- helpers for assembly ------------------------------------------------------
    def part_paths(self) -> list[str]:
        return [p for p in self.storage.list(self.parts_prefix) if PartName.parse(p) is not None]

    def read_parts(self, paths: Iterable[str]) -> Iterable[bytes]:
        return (self.storage.read_bytes(p) for p in paths)


def low_water(pending: dict[int, ReadPosition], next_position: ReadPosition) -> ReadPosition:
    """The resume position: the earliest line not yet durably written.

    >>> low_water({5: ReadPosition(50, 5, 6), 3: ReadPosition(30, 3, 4)}, ReadPosition(90, 9, 10)).ordinal
    3
    >>> low_water({}, ReadPosition(90, 9, 10)).ordinal
    9
    """
    if not pending:
        return next_position
    first = min(pending.values(), key=lambda p: p.ordinal)
    return first if first.ordinal < next_position.ordinal else next_position

