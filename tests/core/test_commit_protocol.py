"""The checkpoint and commit protocol against a plain model, with crashes between every
step and zombie attempts beside their successors:

* a resumed attempt's done set is exactly what was durably written before it opened
  (nothing lost, nothing invented), and every ordinal before its read position is done;
* it never re-sends a prompt whose result was durable when it opened, so re-sent
  prompts are at most those in flight or buffered at the crash;
* an attempt that lost its lease cannot commit, and its heartbeat says so;
* the input may be replaced at any step (a new version is a new job on the same OUTPUT):
  a resumed attempt's done set is exactly what was written *for its version*, and the
  published results hold every ordinal exactly once, every record from that version;
* the published results hold every ordinal exactly once.
"""

import json

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.core.checkpoint import BitsetCheckpoint
from promptforge_dagster.core.commit import JobCommitter, low_water
from promptforge_dagster.core.job_registry import LeaseLost
from promptforge_dagster.core.reader import ReadPosition
from promptforge_dagster.core.results import Envelope, assemble
from tests.memory_storage import MemoryStorage

N = 40
OUT = "mem://out"


def pos(o: int) -> ReadPosition:
    return ReadPosition(o * 10, o, o + 1)


class Attempt:
    """One worker: the committer plus the pipeline's moving parts, as the model sees them."""

    def __init__(self, committer, resume):
        self.c = committer
        self.done = set(resume.done)
        self.cursor = resume.position.ordinal
        self.in_flight: set[int] = set()
        self.buffer: list[int] = []
        self.pending: dict[int, ReadPosition] = {}
        self.dead = False

    def next_ordinal(self):
        o = self.cursor
        while o < N and o in self.done:
            o += 1
        return o if o < N else None


class CommitProtocol(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        self.storage = MemoryStorage()
        self.registry = SQLiteRegistry(":memory:")
        self.gen = 1  # the input's current version
        self.durable_by_gen: dict[int, set[int]] = {1: set()}  # the model: ordinals in written parts
        self.attempts: list[Attempt] = []
        self.clock = 0.0
        self.n = 0
        self.published = False

    def _now(self):
        self.clock += 1.0
        return self.clock

    @property
    def durable(self) -> set[int]:
        return self.durable_by_gen.setdefault(self.gen, set())

    @property
    def live(self):
        return [a for a in self.attempts if not a.dead]

    @property
    def owner(self):
        """The newest attempt holds the lease; if it crashed, nobody does."""
        return self.attempts[-1] if self.attempts and not self.attempts[-1].dead else None

    @rule()
    def start_attempt(self):
        """A new attempt: after a crash, or beside a zombie that is still running."""
        self.n += 1
        # a new input version is a new job (its own lease) on the same OUTPUT
        c = JobCommitter(f"job-g{self.gen}", OUT, self.storage, self.registry, owner=f"w{self.n}",
                         attempt_tag=f"{self.n}", input_generation=self.gen)
        durable_before = set(self.durable)
        resume = c.open(self._now())
        assert set(resume.done) == durable_before  # nothing lost, nothing invented
        assert all(o in resume.done for o in range(resume.position.ordinal))
        a = Attempt(c, resume)
        a.gen = self.gen
        a.durable_at_open = durable_before
        self.attempts.append(a)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def dispatch(self, data):
        a = data.draw(st.sampled_from(self.live))
        o = a.next_ordinal()
        if o is None:
            return
        assert o not in a.durable_at_open  # never re-send what was durable at resume
        a.cursor = o + 1
        a.in_flight.add(o)
        a.pending[o] = pos(o)

    @precondition(lambda self: any(a.in_flight for a in self.live))
    @rule(data=st.data())
    def complete(self, data):
        a = data.draw(st.sampled_from([a for a in self.live if a.in_flight]))
        o = data.draw(st.sampled_from(sorted(a.in_flight)))
        a.in_flight.discard(o)
        a.buffer.append(o)

    @precondition(lambda self: any(a.buffer for a in self.live))
    @rule(data=st.data())
    def flush(self, data):
        a = data.draw(st.sampled_from([a for a in self.live if a.buffer]))
        batch, a.buffer = a.buffer, []
        a.c.write_part([Envelope(o, {"custom_id": f"id-{o}", "attempt": a.c.attempt, "gen": a.gen})
                        for o in batch])
        self.durable_by_gen.setdefault(a.gen, set()).update(batch)  # a zombie's parts count too: kept, once
        a.done.update(batch)
        for o in batch:
            a.pending.pop(o, None)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def commit(self, data):
        a = data.draw(st.sampled_from(self.live))
        position = low_water(a.pending, pos(a.cursor))
        if a is not self.owner:
            try:
                a.c.commit(self._now(), position)
            except LeaseLost:
                a.dead = True  # it notices and stops
                return
            raise AssertionError("an attempt that lost its lease committed a checkpoint")
        ck = a.c.commit(self._now(), position)
        assert set(ck.done) <= self.durable_by_gen[a.gen]
        assert all(o in ck.done for o in range(ck.position.ordinal))

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def heartbeat(self, data):
        """Any phase of an attempt (scan, sending, publish) renews the lease the same way."""
        a = data.draw(st.sampled_from(self.live))
        same_job_newer = any(b.gen == a.gen for b in self.attempts[self.attempts.index(a) + 1:])
        try:
            a.c.heartbeat(self._now())
        except LeaseLost:
            assert same_job_newer, "the owner's heartbeat failed"
            a.dead = True
            return
        assert not same_job_newer, "a superseded attempt renewed its lease"

    @rule()
    def replace_input(self):
        """The input object is overwritten: attempts started from now on are of the new version."""
        self.gen += 1
        self.published = False

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def crash(self, data):
        """SIGKILL: in-flight requests and the unwritten buffer are gone."""
        data.draw(st.sampled_from(self.live)).dead = True

    @precondition(lambda self: self.owner is not None and not self.published and self.owner.gen == self.gen)
    @rule()
    def finish_and_publish(self):
        a = self.owner
        for o in sorted(a.in_flight):
            a.buffer.append(o)
        a.in_flight.clear()
        while (o := a.next_ordinal()) is not None:
            assert o not in a.durable_at_open
            a.cursor = o + 1
            a.buffer.append(o)
        if a.buffer:
            a.c.write_part([Envelope(o, {"custom_id": f"id-{o}", "gen": a.gen}) for o in a.buffer])
            self.durable.update(a.buffer)
            a.buffer = []
        a.c.commit(self._now(), pos(N), status="publishing")
        lines = []
        parts = a.c.read_parts(a.c.part_paths())
        summary = assemble(parts, N, lines.append)
        assert summary.total == N and len(lines) == N
        assert len(set(lines)) == N
        assert all(json.loads(line)["gen"] == a.gen for line in lines)  # never another version's record
        self.published = True
        a.dead = True  # done: the attempt exits

    @invariant()
    def checkpoint_never_claims_more_than_storage_holds(self):
        if not hasattr(self, "storage"):
            return
        path = f"{OUT}/checkpoint.pfck"
        if path in self.storage.objects:
            ck = BitsetCheckpoint.decode(self.storage.read_bytes(path))
            assert set(ck.done) <= self.durable_by_gen.get(ck.input_generation, set())


CommitProtocol.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestCommitProtocol = CommitProtocol.TestCase
