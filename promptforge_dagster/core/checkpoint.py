"""The bitset checkpoint: which prompts are durably done, and where to resume reading.

One bit per prompt ordinal (a roaring bitmap: 10M prompts serialise to well under 2 MB)
plus what a resumed attempt needs to start at once: the read position below which every
prompt is done, the parts the bitset covers, the rate controllers' learned state and the
counters. A bit is set only once the part holding that prompt's result is written, so
the checkpoint never claims more than storage holds.

Serialised as one object: a magic line, a JSON header line, then the roaring bytes.

>>> ck = BitsetCheckpoint(job_id="j", epoch=3)
>>> ck.done.update(range(10)); ck.covered["a-1"] = 2
>>> again = BitsetCheckpoint.decode(ck.encode())
>>> len(again.done), again.epoch, again.covered, again.position
(10, 3, {'a-1': 2}, ReadPosition(offset=0, ordinal=0, line_no=1))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
from pyroaring import BitMap

from promptforge_dagster.core.reader import ReadPosition

MAGIC = b"PFCHECKPOINT 1\n"
PART_SUFFIX = ".part.jsonl"


class CorruptCheckpoint(Exception):
    """The checkpoint object cannot be read (wrong format or truncated)."""


@dataclass
class BitsetCheckpoint:
    """The committed state of one job.

    ``covered`` maps an attempt's part prefix to the highest part sequence number whose
    ordinals are in ``done`` (an attempt writes its parts in sequence, one at a time, so
    every part of that attempt up to that number is covered). Parts not covered were
    written after the checkpoint and are reconciled on resume.
    """

    job_id: str
    epoch: int = 0
    done: BitMap = field(default_factory=BitMap)
    covered: dict[str, int] = field(default_factory=dict)
    position: ReadPosition = ReadPosition()
    input_generation: int | None = None
    rate_state: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    status: str = "running"  # "running", or "publishing" once the last part is in
    committed_at: float | None = None

    def is_covered(self, part: "PartName") -> bool:
        return part.seq <= self.covered.get(part.attempt, 0)

    def encode(self) -> bytes:
        self.done.run_optimize()
        header = {
            "job_id": self.job_id, "epoch": self.epoch, "covered": self.covered,
            "position": [self.position.offset, self.position.ordinal, self.position.line_no],
            "input_generation": self.input_generation, "rate_state": self.rate_state,
            "counters": self.counters, "status": self.status, "committed_at": self.committed_at,
            "done_count": len(self.done),
        }
        return MAGIC + msgspec.json.encode(header) + b"\n" + self.done.serialize()

    @classmethod
    def decode(cls, data: bytes) -> "BitsetCheckpoint":
        if not data.startswith(MAGIC):
            raise CorruptCheckpoint("not a PromptForge checkpoint (bad magic)")
        end = data.find(b"\n", len(MAGIC))
        if end < 0:
            raise CorruptCheckpoint("truncated checkpoint header")
        try:
            h = msgspec.json.decode(data[len(MAGIC):end])
            done = BitMap.deserialize(data[end + 1:])
        except (msgspec.DecodeError, ValueError) as exc:
            raise CorruptCheckpoint(f"unreadable checkpoint: {exc}") from exc
        if len(done) != h.get("done_count", len(done)):
            raise CorruptCheckpoint("checkpoint bitset does not match its header")
        off, ordinal, line_no = h["position"]
        return cls(job_id=h["job_id"], epoch=h["epoch"], done=done, covered=dict(h["covered"]),
                   position=ReadPosition(off, ordinal, line_no), input_generation=h.get("input_generation"),
                   rate_state=h.get("rate_state") or {}, counters=h.get("counters") or {},
                   status=h.get("status", "running"), committed_at=h.get("committed_at"))


@dataclass(frozen=True, order=True)
class PartName:
    """``<attempt>-<seq>.part.jsonl``: attempt is ``e<epoch>-<ms>-<pid>``, seq counts from 1.
    The ``.part.jsonl`` suffix lets a bucket lifecycle rule expire parts (not results).

    >>> PartName.parse("e000002-1700000000000-42-000007.part.jsonl")
    PartName(attempt='e000002-1700000000000-42', seq=7)
    >>> PartName.parse("e000002-1700000000000-42-000007.jsonl").seq  # written before the suffix existed
    7
    >>> PartName.parse("notes.txt") is None
    True
    """

    attempt: str
    seq: int

    @classmethod
    def parse(cls, name: str) -> "PartName | None":
        base = name.rsplit("/", 1)[-1]
        if not base.endswith(".jsonl"):
            return None
        stem = base[: -len(".jsonl")]
        stem = stem[: -len(".part")] if stem.endswith(".part") else stem
        attempt, _, seq = stem.rpartition("-")
        if not attempt or not seq.isdigit():
            return None
        return cls(attempt, int(seq))

    def filename(self) -> str:
        return f"{self.attempt}-{self.seq:06d}{PART_SUFFIX}"
