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
from promptforge_dagster.core.gzip_source import GZIP_MAGIC, GzipSource, TruncatedGzip, is_gzip
from promptforge_dagster.core.input_scan import SNIFF_BYTES, InputIndex, scan_input, sniff
from promptforge_dagster.core.job.errors import (
    RETRYABLE_ERROR_CODES, JobFailed, JobRejected, JobSuperseded,
)
from promptforge_dagster.core.job.heartbeat import EXPIRY_MARGIN_S, Heartbeat, LeaseUnrenewable
from promptforge_dagster.core.job.endings import EARLIER_COUNTERS, counters_of, outcome_of
from promptforge_dagster.core.job.hooks import JobHooks
from promptforge_dagster.core.job.spec import JobResult, JobSpec, default_job_id
from promptforge_dagster.core.job.layout import OutputLayout
from promptforge_dagster.core.job_registry import JobRegistry, LeaseHeld, LeaseLost
from promptforge_dagster.core.pipeline import JobStats, Pipeline, Provider
from promptforge_dagster.core.rate_chart import rate_chart
from promptforge_dagster.core.rate_controller import RateController
from promptforge_dagster.core.rate_history import RateHistory
from promptforge_dagster.core.rate_lanes import RateLanes
from promptforge_dagster.core.reader import PromptReader, ReadPosition
from promptforge_dagster.core.results import IncompleteResults, assemble
from promptforge_dagster.core.shared_lanes import LaneSync
from promptforge_dagster.core.storage import PreconditionFailed, Storage

# The scan beats the heartbeat every this many lines (a beat renews only when due).
SCAN_BEAT_LINES = 4096
# A publish commit that failed for a transient reason is tried again after this long,
# doubling up to the cap, while the lease has time left.
PUBLISH_COMMIT_FIRST_DELAY_S = 0.5
PUBLISH_COMMIT_MAX_DELAY_S = 8.0


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
        self._size: int | None = None
        self._compressed = False

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
        self.generation, self._size = info.generation, info.size
        if spec.input_generation is not None and info.generation != spec.input_generation:
            raise JobRejected(
                f"input {spec.input_uri} was replaced: this job is for generation {spec.input_generation}, "
                f"the object is now generation {info.generation} (the new upload is a job of its own)")
        try:
            self._compressed = info.size >= len(GZIP_MAGIC) and is_gzip(self._read_range(0, len(GZIP_MAGIC)))
            read, size = self._source()
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

    def _read_range(self, start: int, length: int) -> bytes:
        try:
            return self.input_storage.read_range(self.spec.input_uri, start, length, self.generation)
        except PreconditionFailed as exc:
            raise JobFailed(
                f"input {self.spec.input_uri} was replaced while the job ran (it started on generation "
                f"{self.generation}); a re-upload is a new job") from exc

    def _source(self) -> tuple[Callable[[int, int], bytes], int | None]:
        """The input's bytes (decompressed, for gzip: a stream of unknown length)."""
        if not self._compressed:
            return self._read_range, self._size
        gz = GzipSource(self._read_range, self._size)

        def read_plain(start: int, length: int) -> bytes:
            try:
                return gz.read_range(start, length)
            except TruncatedGzip as exc:
                raise JobFailed(f"input {self.spec.input_uri}: {exc}") from exc

        return read_plain, None

    def lines(self, position: ReadPosition = ReadPosition()) -> PromptReader:
        source, size = self._source()
        return PromptReader(source, size, start=position, chunk_bytes=self.spec.chunk_bytes,
                            max_line_bytes=self.spec.max_line_bytes)

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

        def heartbeat() -> Any:
            return self._beat()

        return Pipeline(
            job_id=self.job_id, lines=self.lines,
            parser=LineParser(spec.defaults, spec.max_line_bytes, source=spec.input_uri, policy=spec.policy),
            provider=self.provider, controller=self.lanes, write_part=self.committer.write_part,
            config=spec.pipeline, start=start, done=done, duplicates=self.index.duplicates, stats=self.stats,
            clock=self.clock, wall_clock=self.wall_clock, checkpoint=self._commit,
            checkpoint_interval_s=spec.checkpoint_interval_s, after_checkpoint=self._after_commit,
            heartbeat=heartbeat,
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
        wall_s = self.clock() - self.started
        completed = self.stats.done - self.stats.input_errors  # requests the provider answered for good
        doc = {
            "input": self.spec.input_uri,
            "input_generation": self.generation,
            "job_id": self.job_id,
            "epoch": committer.lease.epoch if committer.lease else None,
            "output": layout.results,
            "results_generation": results_generation,
            "model": self.spec.defaults.model,
            **summary_box[0].as_dict(),
            "skipped_as_done": self.stats.skipped,
            "input_errors": self.stats.input_errors,
            "rate_limited_429": self.stats.rate_limited + self.stats.earlier.get("rate_limited", 0),
            "retries": self.stats.retries + self.stats.earlier.get("retries", 0),
            "attempts": self.stats.earlier.get("attempts", 0) + 1,  # that reached a checkpoint, this one included
            "wall_time_s": round(wall_s, 3),
            "achieved_rpm": round(completed * 60.0 / wall_s, 1) if wall_s > 0 else None,
            "rate_lanes": self.lanes.snapshot(),
        }
        if self.lanes.groups:  # which deployment served each group, and which were dropped and why
            doc["deployments"] = {name: {"deployments": [d.id for d in g.deployments], "dropped": dict(g.dropped)}
                                  for name, g in self.lanes.groups.items()}
        if self.hooks.plot is not None:
            doc["rate_plot"] = layout.plot
        doc["rate_chart"] = rate_chart(self.history.points)  # this attempt's, as text any viewer shows
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
        """A publish commit, tried again after transient failures while the lease has time
        left (the heartbeat's budget); :class:`LeaseLost` at once."""
        delay = PUBLISH_COMMIT_FIRST_DELAY_S
        while True:
            try:
                self.committer.commit(self.wall_clock(), position, self.lanes.export_state(),
                                      counters_of(self.stats), status=status)
                return
            except LeaseLost:
                raise
            except Exception:
                hb = self.heartbeat
                spent = self.wall_clock() - hb.last_renewed if hb is not None else float("inf")
                if hb is None or spent + delay >= hb.lease_ttl_s - EXPIRY_MARGIN_S:
                    raise
                self.sleep(delay)
                delay = min(delay * 2, PUBLISH_COMMIT_MAX_DELAY_S)

    def _already_published(self) -> JobResult | None:
        """An earlier attempt's publish of this input version, if both files are there and
        belong together (the summary names this generation and the results' generation)."""
        storage, layout = self.output_storage, self.layout
        results = storage.stat(layout.results)
        if results is None or storage.stat(layout.summary) is None:
            return None
        try:
            summary = msgspec.json.decode(storage.read_bytes(layout.summary))
        except msgspec.DecodeError:
            return None
        if (summary.get("input_generation") != self.generation
                or summary.get("results_generation") not in (None, results.generation)):
            return None
        summary = {**summary, "skipped_as_done": summary.get("prompts") or 0, "already_published": True}
        self.stats.total = summary.get("prompts")
        self.stats.skipped = summary.get("prompts") or 0
        return JobResult(layout.results, layout.summary, summary, self.stats)

    # -- close ------------------------------------------------------------------------
    def close(self, error: BaseException | None) -> None:
        """Record how the job ended (see the module's table) and leave the shared lane."""
        status, message = outcome_of(error, self.stats)
        try:
            self._record(status, message)
        finally:
            self._leave_lane()
            self.phase = Phase.CLOSED

    def _record(self, status: str, message: str | None) -> None:
        if not status:
            return
        now = self.wall_clock()
        if self.committer is not None and self.committer.lost is not None:
            return  # a newer attempt owns the record
        lease = self.committer.lease if self.committer is not None else None
        if lease is None:
            if status != "succeeded" and self.job_id:
                self.registry.settle(self.job_id, now, status, message)  # never took the lease
            return
        counters = counters_of(self.stats)
        summary = self.result.summary if self.result is not None and status == "succeeded" else None
        if summary is not None:  # the whole job's figures, not just this attempt's
            errors = summary.get("errors_by_code") or {}
            counters.update(total=summary.get("prompts") or 0, succeeded=summary.get("succeeded") or 0,
                            failed=summary.get("failed") or 0,
                            retryable_failed=sum(errors.get(c, 0) for c in RETRYABLE_ERROR_CODES))
        try:
            self.registry.finish(lease, now, status, counters, message)
        except LeaseLost:
            pass  # a newer attempt owns the record now; its outcome is the one that counts
        except Exception as exc:  # noqa: BLE001 - the outcome stands; the registry catches up
            # A failed run is settled by the run-end sensor; a published job whose record
            # still says running is relaunched once its lease expires, finds its results
            # already published and records success.
            self.hooks.log(f"could not record the job's outcome ({status}): {type(exc).__name__}: {exc}")

    def _leave_lane(self) -> None:
        if self.lane_sync is None:
            return
        try:
            self.lane_sync.sync()  # the latest learned state, for the next job on the lane
        except Exception:  # noqa: BLE001 - sharing is best effort; the job's outcome stands
            pass
        try:
            self.lane_sync.leave()
        except Exception:  # noqa: BLE001
            pass


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


def clear_output(storage: Storage, output_uri: str) -> None:
    """Discard earlier progress (``--restart``): parts of every input version, checkpoint,
    scan, results, summary and plot."""
    layout = OutputLayout(output_uri)
    for path in storage.list(layout.parts()):
        storage.delete(path)
    for path in layout.single_objects():
        storage.delete(path)


__all__ = ["JobAttempt", "JobResult", "JobSpec", "Phase", "clear_output", "default_job_id", "run_attempt",
           "run_job"]
