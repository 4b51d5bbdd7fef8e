"""One attempt at one job: open -> prepare -> run -> publish -> close.

:class:`JobAttempt` is the whole life of an attempt as one object. Its phases are an
explicit state machine (:class:`Phase`, :data:`NEXT`); :func:`run_attempt` drives it and
records how the job ended, whatever ends it:

==================================  =========================================================
what ends the attempt               the job's recorded status
==================================  =========================================================
success                             ``succeeded`` (with the whole job's counters)
input missing/replaced/not JSONL    ``rejected`` (before the lease is taken)
:class:`JobFailed`, any exception   ``failed``, with the cause in one line
cancellation (Ctrl-C, run cancel)   ``cancelled``
a newer attempt took the lease      nothing: the newer attempt's outcome is the job's
==================================  =========================================================

One :class:`~promptforge_dagster.core.job.heartbeat.Heartbeat` renews the lease from
``open`` to ``close``: the scan, the re-read of failed prompts and the publish beat it as
they go, the pipeline on its flush loop. The publish is fenced three times: the
``publishing`` checkpoint commit (compare-and-swap), a forced lease check right before
``results.jsonl`` is finalized, and a conditional write of ``summary.json`` that names
the epoch and the generation of the ``results.jsonl`` it describes.

Beside it: ``source.py`` (the input pinned at its generation), ``publish.py`` (what the
publish writes and reads back) and ``endings.py`` (how an ending is recorded).
"""

from __future__ import annotations

import enum
import os
import socket
import time
from typing import Any, Callable

import msgspec
from pyroaring import BitMap

from promptforge_dagster.core.commit import JobCommitter, ResumeInfo
from promptforge_dagster.core.formats import LineParser, NotJsonlError
from promptforge_dagster.core.input_scan import SNIFF_BYTES, InputIndex, scan_input, sniff
from promptforge_dagster.core.job.errors import JobFailed, JobRejected, JobSuperseded
from promptforge_dagster.core.job.heartbeat import Heartbeat, LeaseUnrenewable
from promptforge_dagster.core.job.endings import EARLIER_COUNTERS, counters_of, outcome_of, record_outcome
from promptforge_dagster.core.job.hooks import JobHooks
from promptforge_dagster.core.job.spec import JobResult, JobSpec, default_job_id
from promptforge_dagster.core.job.source import InputSource
from promptforge_dagster.core.job.publish import commit_retrying, published_earlier, summary_document
from promptforge_dagster.core.job_registry import JobRegistry, LeaseHeld, LeaseLost
from promptforge_dagster.core.pipeline import JobStats, Pipeline, Provider
from promptforge_dagster.core.rate_controller import RateController
from promptforge_dagster.core.rate_history import RateHistory
from promptforge_dagster.core.rate_lanes import RateLanes
from promptforge_dagster.core.reader import PromptReader, ReadPosition
from promptforge_dagster.core.results import IncompleteResults, assemble
from promptforge_dagster.core.shared_lanes import LaneSync
from promptforge_dagster.core.storage import PreconditionFailed, Storage

# The scan beats the heartbeat every this many lines (a beat renews only when due).
SCAN_BEAT_LINES = 4096


class Phase(enum.Enum):
    NEW = "new"
    OPEN = "open"  # input pinned and sniffed, lease taken, checkpoint claimed
    PREPARED = "prepared"  # scan done, resume set decided
    RAN = "ran"  # every prompt has a written record
    PUBLISHED = "published"  # results.jsonl and summary.json written under this attempt's epoch
    CLOSED = "closed"  # outcome recorded, lane left


NEXT = {  # the one order an attempt moves in; close may follow any phase
    Phase.NEW: Phase.OPEN,
    Phase.OPEN: Phase.PREPARED,
    Phase.PREPARED: Phase.RAN,
    Phase.RAN: Phase.PUBLISHED,
}


class JobAttempt:
    """One attempt, phase by phase. Use :func:`run_attempt` to drive it."""

    def __init__(self, spec: JobSpec, *, input_storage: Storage, output_storage: Storage, provider: Provider,
                 lanes: RateController | RateLanes, registry: JobRegistry, owner: str | None = None,
                 stats: JobStats | None = None, hooks: JobHooks | None = None,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.spec = spec
        self.sleep = sleep  # between tries of a publish commit that failed for a transient reason
        self.layout = spec.layout
        self.input_storage, self.output_storage = input_storage, output_storage
        self.provider, self.registry = provider, registry
        self.lanes = lanes if isinstance(lanes, RateLanes) else RateLanes.single(lanes)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.stats = stats or JobStats()
        self.hooks = hooks or JobHooks()
        self.clock, self.wall_clock = clock, wall_clock
        self.phase = Phase.NEW
        self.started = clock()
        self.generation = 0
        self.job_id = spec.job_id or ""
        self.committer: JobCommitter | None = None
        self.heartbeat: Heartbeat | None = None
        self.lane_sync: LaneSync | None = None
        self.resume: ResumeInfo | None = None
        self.index: InputIndex | None = None
        self.history = RateHistory(self.stats, self.lanes.snapshot, start=clock())
        self.pipeline: Pipeline | None = None
        self.result: JobResult | None = None
        self.source: InputSource | None = None  # the input pinned at its generation, set by open()

    def _enter(self, phase: Phase) -> None:
        if NEXT.get(self.phase) is not phase:
            raise RuntimeError(f"attempt is {self.phase.value}; cannot go to {phase.value}")
        self.phase = phase

    # -- open ---------------------------------------------------------------------
    def open(self) -> ResumeInfo:
        """Pin the input's generation, check it is JSONL, take the lease, claim the
        checkpoint (reconciling parts written after it). :class:`JobRejected` before the
        lease when the input cannot be a job."""
        spec = self.spec
        info = self.input_storage.stat(spec.input_uri)
        if info is None:
            raise JobRejected(f"input {spec.input_uri} does not exist")
        self.generation = info.generation
        if spec.input_generation is not None and info.generation != spec.input_generation:
            raise JobRejected(
                f"input {spec.input_uri} was replaced: this job is for generation {spec.input_generation}, "
                f"the object is now generation {info.generation} (the new upload is a job of its own)")
        try:
            self.source = InputSource(self.input_storage, spec.input_uri, info.generation, info.size,
                                      chunk_bytes=spec.chunk_bytes, max_line_bytes=spec.max_line_bytes)
            read, size = self.source.plain()
            sniff(read(0, SNIFF_BYTES if size is None else min(SNIFF_BYTES, size)), spec.input_uri)
        except NotJsonlError as exc:
            raise JobRejected(str(exc)) from exc
        except JobFailed as exc:
            raise JobRejected(str(exc)) from exc
        self.job_id = spec.job_id or default_job_id(spec.input_uri, self.generation, spec.output_uri)
        self.committer = JobCommitter(
            self.job_id, spec.output_uri, self.output_storage, self.registry, owner=self.owner,
            attempt_tag=f"{int(self.wall_clock() * 1000):013d}-{os.getpid()}", lease_ttl_s=spec.lease_ttl_s,
            input_generation=self.generation, beat=self._beat)
        try:
            self.resume = self.committer.open(self.wall_clock())
        except LeaseHeld as exc:
            raise JobFailed(str(exc)) from exc
        if spec.share_lanes and not self.lanes.one_lane:
            self.lane_sync = LaneSync(self.registry, self.job_id, self.lanes, ttl_s=spec.lease_ttl_s,
                                      clock=self.wall_clock)
        self.heartbeat = Heartbeat(self.committer.heartbeat, interval_s=spec.heartbeat_s,
                                   lease_ttl_s=spec.lease_ttl_s, clock=self.wall_clock,
                                   side=self.lane_sync.sync if self.lane_sync else None)
        self._enter(Phase.OPEN)
        if self.hooks.on_resume is not None:
            self.hooks.on_resume(self.resume)
        return self.resume

    def _beat(self, *, force: bool = False) -> Any:
        return self.heartbeat.beat(force=force) if self.heartbeat is not None else None

    def lines(self, position: ReadPosition = ReadPosition()) -> PromptReader:
        assert self.source is not None, "open() pins the input first"
        return self.source.lines(position)

    # -- prepare --------------------------------------------------------------------
    def prepare(self) -> JobResult | None:
        """Decide what to send: the re-run set (``rerun_codes``), or everything not done.
        Returns the earlier result when an earlier attempt already published this version."""
        assert self.committer is not None and self.resume is not None
        resume, spec = self.resume, self.spec
        if spec.rerun_codes:
            rerun = self.committer.reopen_failed(tuple(spec.rerun_codes))
            self.hooks.log(f"re-running {len(rerun)} prompts whose results were failures "
                           f"({', '.join(spec.rerun_codes)})")
            self.resume = ResumeInfo(resume.checkpoint, BitMap(self.committer.done), ReadPosition(),
                                     resume.reconciled_parts)
        elif resume.checkpoint is not None and resume.checkpoint.status == "published":
            self.result = self._already_published()
            if self.result is not None:
                self._enter(Phase.PREPARED)
                self._enter(Phase.RAN)
                self._enter(Phase.PUBLISHED)
                return self.result
        if resume.checkpoint is not None:
            self.lanes.warm_start(resume.checkpoint.rate_state)
            # what earlier attempts sent and were refused: the job's counters cover every attempt
            self.stats.earlier = {k: int(resume.checkpoint.counters.get(k) or 0) for k in EARLIER_COUNTERS}
        self.index = self._load_or_scan()
        if self.hooks.release_memory is not None:
            self.hooks.release_memory()
        self.stats.total = self.index.prompt_lines
        if self.resume.position.ordinal > 0:
            self.stats.skipped = self.resume.done.rank(self.resume.position.ordinal - 1)
        self._enter(Phase.PREPARED)
        return None

    def _load_or_scan(self) -> InputIndex:
        """The duplicate scan of this input version, from the output if an earlier attempt
        saved it: a resumed job does not re-read the whole input before its first request."""
        path, storage = self.layout.scan, self.output_storage
        try:
            saved = InputIndex.decode(storage.read_bytes(path)) if storage.stat(path) else None
        except (msgspec.DecodeError, ValueError, KeyError, TypeError):
            saved = None
        if saved is not None and saved.input_generation == self.generation:
            return saved
        index = scan_input(self.lines, self.spec.max_line_bytes, input_generation=self.generation,
                           beat=lambda: self._beat(), beat_every=SCAN_BEAT_LINES)
        storage.write_bytes(path, index.encode())
        return index

    # -- run ------------------------------------------------------------------------
    async def run(self) -> None:
        """Send every prompt not yet done; a pass that leaves prompts unwritten (none
        should) is followed by one re-read from the start. :class:`JobFailed` if stopped."""
        assert self.committer is not None and self.index is not None and self.resume is not None
        self.pipeline = self._make_pipeline(self.resume.position, self.resume.done)
        if self.hooks.on_pipeline is not None:
            self.hooks.on_pipeline(self.pipeline)
        await self.pipeline.run()
        self._raise_if_lost()
        missing = self.index.prompt_lines - len(self.committer.done)
        if not self.stats.fatal and missing > 0:
            self.hooks.log(f"{missing} prompts not written after the main pass; re-reading "
                           f"{self.spec.input_uri} from the start")
            self.pipeline = self._make_pipeline(ReadPosition(), BitMap(self.committer.done))
            self.stats.skipped = 0
            await self.pipeline.run()
            self._raise_if_lost()
        if self.stats.fatal:
            raise JobFailed(
                f"stopped: {self.stats.fatal} ({self.stats.done + self.stats.skipped} of {self.stats.total} "
                "prompts are done and kept; a rerun of this job resumes from there)")
        self._enter(Phase.RAN)

    def _raise_if_lost(self) -> None:
        """A pipeline stopped by a lost lease ends the attempt as superseded, not failed."""
        if self.committer is not None and self.committer.lost is not None:
            raise LeaseLost(self.committer.lost)
        if self.heartbeat is not None and self.heartbeat.lost is not None:
            self.heartbeat.beat()  # raises LeaseLost or LeaseUnrenewable, as it was

    def _make_pipeline(self, start: ReadPosition, done: BitMap) -> Pipeline:
        spec = self.spec
        return Pipeline(
            job_id=self.job_id, lines=self.lines,
            parser=LineParser(spec.defaults, spec.max_line_bytes, source=spec.input_uri, policy=spec.policy),
            provider=self.provider, controller=self.lanes, write_part=self.committer.write_part,
            config=spec.pipeline, start=start, done=done, duplicates=self.index.duplicates, stats=self.stats,
            clock=self.clock, wall_clock=self.wall_clock, checkpoint=self._commit,
            checkpoint_interval_s=spec.checkpoint_interval_s, after_checkpoint=self._after_commit,
            heartbeat=self._beat,
            heartbeat_s=min(spec.heartbeat_s, 1.0),  # the heartbeat itself decides when a renewal is due
            on_success=self.hooks.on_success, on_tick=self.history.sample, log=self.hooks.log)

    def _commit(self, position: ReadPosition) -> None:
        self.committer.commit(self.wall_clock(), position, self.lanes.export_state(), counters_of(self.stats))

    def _after_commit(self) -> None:
        """Outside the pipeline's flush lock: metrics and the rate plot (about a second to draw)."""
        if self.hooks.on_commit is not None:
            self.hooks.on_commit()
        self._write_plot()

    def _write_plot(self) -> None:
        if self.hooks.plot is None:
            return
        try:
            self.output_storage.write_bytes(self.layout.plot, self.hooks.plot(self.history))
        except Exception as exc:  # noqa: BLE001 - a plot never fails a job
            self.hooks.log(f"could not write {self.layout.plot}: {type(exc).__name__}: {exc}")

    # -- publish ----------------------------------------------------------------------
    def publish(self) -> JobResult:
        """Fence (``publishing`` commit), stream ``results.jsonl`` (lease checked right before
        it becomes visible), write ``summary.json`` conditionally, commit ``published``."""
        committer, layout, storage = self.committer, self.layout, self.output_storage
        position = self.pipeline.resume_position() if self.pipeline else ReadPosition()
        self._commit_retrying(position, "publishing")
        before_results = storage.stat(layout.results)
        before_summary = storage.stat(layout.summary)
        expected = self.index.prompt_lines
        summary_box: list = []

        def fill(write: Callable[[bytes], None]) -> None:
            summary_box.clear()

            def parts():
                for data in committer.read_parts(reversed(committer.part_paths())):  # newest first
                    self._beat()
                    yield data

            try:
                summary_box.append(assemble(parts(), expected, write))
            except IncompleteResults as exc:
                raise JobFailed(f"cannot publish {layout.results}: {exc}") from exc
            self._beat(force=True)  # still the owner, right before the object becomes visible

        try:
            results_generation = storage.write_stream(
                layout.results, fill, if_generation_match=before_results.generation if before_results else 0)
        except PreconditionFailed as exc:
            raise LeaseLost(f"job {self.job_id}: another attempt published {layout.results} first") from exc
        self.history.sample(self.clock(), force=True)  # the last interval, whatever its length
        self._write_plot()
        doc = summary_document(
            spec=self.spec, generation=self.generation, job_id=self.job_id,
            epoch=committer.lease.epoch if committer.lease else None, layout=layout,
            results_generation=results_generation, assembled=summary_box[0].as_dict(), stats=self.stats,
            wall_s=self.clock() - self.started, lanes=self.lanes, plot=self.hooks.plot is not None,
            points=self.history.points)
        self._beat(force=True)
        try:
            storage.write_bytes(layout.summary, msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n",
                                if_generation_match=before_summary.generation if before_summary else 0)
        except PreconditionFailed as exc:
            raise LeaseLost(f"job {self.job_id}: another attempt wrote {layout.summary} first") from exc
        try:
            self._commit_retrying(position, "published")
        except LeaseLost:
            pass  # published already; a newer attempt will find both files and stop there
        except Exception as exc:  # noqa: BLE001 - both files are written; a retry finds them and re-publishes
            self.hooks.log(f"published, but the final checkpoint failed: {type(exc).__name__}: {exc}")
        try:  # the working state may now age out (lifecycle rules count from this stamp; never before it)
            storage.mark_finished(committer.part_paths() + [layout.checkpoint, layout.scan], self.wall_clock())
        except Exception as exc:  # noqa: BLE001 - unstamped state is only kept longer
            self.hooks.log(f"could not mark the working state finished: {type(exc).__name__}: {exc}")
        self.result = JobResult(layout.results, layout.summary, doc, self.stats)
        self._enter(Phase.PUBLISHED)
        return self.result

    def _commit_retrying(self, position: ReadPosition, status: str) -> None:
        def commit() -> None:
            self.committer.commit(self.wall_clock(), position, self.lanes.export_state(), counters_of(self.stats),
                                  status=status)

        commit_retrying(commit, self.heartbeat, wall_clock=self.wall_clock, sleep=self.sleep)

    def _already_published(self) -> JobResult | None:
        summary = published_earlier(self.output_storage, self.layout, self.generation)
        if summary is None:
            return None
        self.stats.total = summary.get("prompts")
        self.stats.skipped = summary.get("prompts") or 0
        return JobResult(self.layout.results, self.layout.summary, summary, self.stats)

    # -- close ------------------------------------------------------------------------
    def close(self, error: BaseException | None) -> None:
        """Record how the job ended (see the module's table) and leave the shared lane."""
        status, message = outcome_of(error, self.stats)
        try:
            self._record(status, message)
        finally:
            if self.lane_sync is not None:
                self.lane_sync.finish()
            self.phase = Phase.CLOSED

    def _record(self, status: str, message: str | None) -> None:
        summary = self.result.summary if self.result is not None and status == "succeeded" else None
        record_outcome(self.registry, self.committer, self.job_id, status, message, self.stats, summary,
                       now=self.wall_clock(), log=self.hooks.log)

async def run_attempt(attempt: JobAttempt) -> JobResult:
    """Drive one attempt through its phases; record its outcome however it ends. Raises
    :class:`JobFailed` (or a subclass) with a one-line reason when the job did not succeed."""
    try:
        attempt.open()
        if attempt.prepare() is None:
            await attempt.run()
            attempt.publish()
    except BaseException as exc:  # every ending is recorded, cancellation included
        attempt.close(exc)
        if isinstance(exc, LeaseLost):
            raise JobSuperseded(f"stopped: {exc}") from exc
        if isinstance(exc, LeaseUnrenewable):
            raise JobFailed(f"stopped: {exc} ({attempt.stats.done + attempt.stats.skipped} prompts are done "
                            "and kept; a retry resumes)") from exc
        if isinstance(exc, Exception) and not isinstance(exc, JobFailed):
            raise JobFailed(outcome_of(exc, attempt.stats)[1]) from exc
        raise
    attempt.close(None)
    assert attempt.result is not None
    return attempt.result


async def run_job(spec: JobSpec, *, input_storage: Storage, output_storage: Storage, provider: Provider,
                  controller: RateController | RateLanes, registry: JobRegistry, owner: str | None = None,
                  stats: JobStats | None = None, hooks: JobHooks | None = None,
                  clock: Callable[[], float] = time.monotonic,
                  wall_clock: Callable[[], float] = time.time) -> JobResult:
    """Run (or resume) one job to completion: one :class:`JobAttempt`, driven to its end."""
    attempt = JobAttempt(spec, input_storage=input_storage, output_storage=output_storage, provider=provider,
                         lanes=controller, registry=registry, owner=owner, stats=stats, hooks=hooks,
                         clock=clock, wall_clock=wall_clock)
    return await run_attempt(attempt)


__all__ = ["JobAttempt", "JobResult", "JobSpec", "Phase", "default_job_id", "run_attempt", "run_job"]
