"""One batch job from input to ``results.jsonl`` and ``summary.json``.

:func:`run_job` pins the input's generation, rejects non-JSONL files at once, scans
for duplicates, streams the prompts through the :class:`Pipeline`, and publishes the
results. An earlier attempt's progress (its checkpoint, and parts written after it) is
picked up first: those prompts are skipped, never sent twice (``core/commit.py``).

Output layout::

    OUTPUT/parts/g<input generation>/<attempt>-<seq>.part.jsonl   immutable parts, per input version
    OUTPUT/checkpoint.pfck                    the bitset checkpoint (core/checkpoint.py)
    OUTPUT/scan.json                          the input's duplicate scan, kept for resumes
    OUTPUT/results.jsonl                      one line per input line, OpenAI Batch format
    OUTPUT/summary.json                       counts, tokens, cost, wall time, achieved RPM
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import msgspec
from pyroaring import BitMap
from promptforge_dagster.core.commit import CHECKPOINT_NAME, JobCommitter, ResumeInfo, parts_prefix
from promptforge_dagster.core.formats import JobDefaults, LineParser, NotJsonlError
from promptforge_dagster.core.gzip_source import GZIP_MAGIC, GzipSource, TruncatedGzip, is_gzip
from promptforge_dagster.core.input_scan import SNIFF_BYTES, InputIndex, scan_input, sniff
from promptforge_dagster.core.errors import RETRYABLE_ERROR_CODES
from promptforge_dagster.core.job_registry import JobRegistry, LeaseHeld, LeaseLost
from promptforge_dagster.core.pipeline import JobStats, Pipeline, PipelineConfig, Provider
from promptforge_dagster.core.rate_controller import RateController
from promptforge_dagster.core.rate_history import RateHistory
from promptforge_dagster.core.rate_lanes import RateLanes
from promptforge_dagster.core.shared_lanes import LaneSync
from promptforge_dagster.core.request_policy import RequestPolicy
from promptforge_dagster.core.reader import DEFAULT_CHUNK_BYTES, PromptReader, ReadPosition
from promptforge_dagster.core.results import IncompleteResults, assemble
from promptforge_dagster.core.storage import PreconditionFailed, Storage, join

SCAN_NAME = "scan.json"
PLOT_NAME = "rate.png"


class JobFailed(Exception):
    """The job could not complete; the message is one line naming the reason.

    Everything already written stays: a rerun with the same output resumes.
    """


@dataclass
class JobSpec:
    """What to run: input, output and the job-level defaults.

    >>> JobSpec("in.jsonl", "out", JobDefaults(model="openai/gpt-4o-mini")).max_line_bytes
    2097152
    """

    input_uri: str
    output_uri: str
    defaults: JobDefaults
    job_id: str | None = None
    max_line_bytes: int = 2 * 1024 * 1024
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    checkpoint_interval_s: float = 30.0
    lease_ttl_s: float = 120.0
    heartbeat_s: float = 10.0
    policy: RequestPolicy | None = None  # what a line may ask for (default: the job model's provider only)
    input_generation: int | None = None  # the input version this job is for (a Dagster job's, from its record)


@dataclass
class JobResult:
    """Where the results are and what the job did."""

    results_uri: str
    summary_uri: str
    summary: dict[str, Any]
    stats: JobStats


def clear_output(storage: Storage, output_uri: str) -> None:
    """Discard earlier progress (``--restart``): parts, checkpoint, scan and results."""
    for path in storage.list(parts_prefix(output_uri)):
        storage.delete(path)
    for name in ("results.jsonl", "summary.json", CHECKPOINT_NAME, SCAN_NAME, PLOT_NAME):
        storage.delete(join(output_uri, name))


def load_or_scan(storage: Storage, output_uri: str, generation: int, scan: Callable[[], InputIndex]) -> InputIndex:
    """The duplicate scan of this input generation, from the output if an earlier attempt
    saved it: a resumed job does not re-read the whole input before its first request."""
    path = join(output_uri, SCAN_NAME)
    try:
        doc = msgspec.json.decode(storage.read_bytes(path)) if storage.stat(path) else None
    except msgspec.DecodeError:
        doc = None
    if doc and doc.get("input_generation") == generation:
        return InputIndex(doc["prompt_lines"], {int(k): v for k, v in doc["duplicates"].items()})
    index = scan()
    storage.write_bytes(path, msgspec.json.encode({
        "input_generation": generation, "prompt_lines": index.prompt_lines,
        "duplicates": {str(k): v for k, v in index.duplicates.items()}}))
    return index


def counters_of(stats: JobStats) -> dict[str, int]:
    return {"total": stats.total or 0, "succeeded": stats.succeeded, "failed": stats.failed,
            "input_errors": stats.input_errors, "skipped": stats.skipped, "sent": stats.sent,
            "rate_limited": stats.rate_limited}


async def run_job(
    spec: JobSpec,
    *,
    input_storage: Storage,
    output_storage: Storage,
    provider: Provider,
    controller: RateController | RateLanes,
    registry: JobRegistry,
    owner: str | None = None,
    stats: JobStats | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    on_pipeline: Callable[[Pipeline], None] | None = None,
    on_resume: Callable[[ResumeInfo], None] | None = None,
    log: Callable[[str], None] = lambda message: None,
    rerun_codes: tuple[str, ...] = (),
    share_lanes: bool = False,
    plot: Callable[[RateHistory], bytes] | None = None,
    on_success: Callable[[float, float | None], None] | None = None,
    on_commit: Callable[[], None] | None = None,
) -> JobResult:
    """Run (or resume) one job to completion; raises :class:`JobFailed` with a reason.

    The attempt takes the job's lease from ``registry`` (a newer attempt always takes
    over: the older one's next commit fails and it stops), resumes from the checkpoint in
    the output, and publishes ``results.jsonl`` only while it still holds the lease.
    """
    stats = stats or JobStats()
    started = clock()
    info = input_storage.stat(spec.input_uri)
    if info is None:
        raise JobFailed(f"input {spec.input_uri} does not exist")
    generation = info.generation
    if spec.input_generation is not None and generation != spec.input_generation:
        raise JobFailed(f"input {spec.input_uri} was replaced: this job is for generation {spec.input_generation}, "
                        f"the object is now generation {generation} (the new upload is a job of its own)")

    def read_range(start: int, length: int) -> bytes:
        try:
            return input_storage.read_range(spec.input_uri, start, length, generation)
        except PreconditionFailed as exc:
            raise JobFailed(
                f"input {spec.input_uri} was replaced while the job ran (it started on generation {generation}); "
                "a re-upload is a new job"
            ) from exc

    compressed = info.size >= len(GZIP_MAGIC) and is_gzip(read_range(0, len(GZIP_MAGIC)))

    def open_source() -> tuple[Callable[[int, int], bytes], int | None]:
        """The input's bytes (decompressed, for gzip: a stream of unknown length)."""
        if not compressed:
            return read_range, info.size
        gz = GzipSource(read_range, info.size)

        def read_plain(start: int, length: int) -> bytes:
            try:
                return gz.read_range(start, length)
            except TruncatedGzip as exc:
                raise JobFailed(f"input {spec.input_uri}: {exc}") from exc

        return read_plain, None

    try:
        head_read, head_size = open_source()
        sniff(head_read(0, SNIFF_BYTES if head_size is None else min(SNIFF_BYTES, head_size)), spec.input_uri)
    except NotJsonlError as exc:
        raise JobFailed(str(exc)) from exc

    def lines(position: ReadPosition = ReadPosition()):
        source, size = open_source()
        return PromptReader(source, size, start=position, chunk_bytes=spec.chunk_bytes,
                            max_line_bytes=spec.max_line_bytes)

    job_id = spec.job_id or f"{spec.input_uri}#{generation}"
    committer = JobCommitter(job_id, spec.output_uri, output_storage, registry,
                             owner=owner or f"{socket.gethostname()}:{os.getpid()}",
                             attempt_tag=f"{int(wall_clock() * 1000):013d}-{os.getpid()}",
                             lease_ttl_s=spec.lease_ttl_s, input_generation=generation)
    try:
        resume = committer.open(wall_clock())
    except LeaseHeld as exc:
        raise JobFailed(str(exc)) from exc
    if on_resume is not None:
        on_resume(resume)
    if rerun_codes:
        rerun = committer.reopen_failed(tuple(rerun_codes))
        log(f"re-running {len(rerun)} prompts whose results were failures ({', '.join(rerun_codes)})")
        resume = ResumeInfo(resume.checkpoint, BitMap(committer.done), ReadPosition(), resume.reconciled_parts)
    elif resume.checkpoint is not None and resume.checkpoint.status == "published":
        done_before = _already_published(spec, committer, stats)
        if done_before is not None:
            _finish(registry, committer, wall_clock(), "succeeded", stats, None, done_before.summary)
            return done_before
    lanes = controller if isinstance(controller, RateLanes) else RateLanes.single(controller)
    if resume.checkpoint is not None:
        lanes.warm_start(resume.checkpoint.rate_state)
    index = load_or_scan(output_storage, spec.output_uri, generation, lambda: scan_input(lines, spec.max_line_bytes))
    stats.total = index.prompt_lines
    if resume.position.ordinal > 0:
        stats.skipped = resume.done.rank(resume.position.ordinal - 1)  # done lines the reader jumps over

    lane_sync = None
    if share_lanes and not lanes.one_lane:
        lane_sync = LaneSync(registry, job_id, lanes, ttl_s=spec.lease_ttl_s, clock=wall_clock)

    def heartbeat():
        committer.heartbeat(wall_clock())
        return lane_sync.sync() if lane_sync is not None else None

    history = RateHistory(stats, lanes.snapshot, start=clock())
    plot_uri = join(spec.output_uri, PLOT_NAME)

    def write_plot() -> None:
        if plot is not None:
            try:
                output_storage.write_bytes(plot_uri, plot(history))
            except Exception as exc:  # noqa: BLE001 - a plot never fails a job
                log(f"could not write {plot_uri}: {type(exc).__name__}: {exc}")

    def commit(position: ReadPosition) -> None:
        committer.commit(wall_clock(), position, lanes.export_state(), counters_of(stats))
        if on_commit is not None:
            on_commit()
        write_plot()

    def make_pipeline(start: ReadPosition, done: BitMap) -> Pipeline:
        return Pipeline(
            job_id=job_id,
            lines=lines,
            parser=LineParser(spec.defaults, spec.max_line_bytes, source=spec.input_uri, policy=spec.policy),
            provider=provider,
            controller=lanes,
            write_part=committer.write_part,
            config=spec.pipeline,
            start=start,
            done=done,
            duplicates=index.duplicates,
            stats=stats,
            clock=clock,
            wall_clock=wall_clock,
            checkpoint=commit,
            checkpoint_interval_s=spec.checkpoint_interval_s,
            heartbeat=heartbeat,
            heartbeat_s=spec.heartbeat_s,
            on_success=on_success,
            on_tick=history.sample,
        )

    pipeline = make_pipeline(resume.position, resume.done)
    if on_pipeline is not None:
        on_pipeline(pipeline)
    try:
        await pipeline.run()
        missing = index.prompt_lines - len(committer.done)
        if not stats.fatal and missing > 0:
            # Safety net: a pass that ends with prompts unwritten (none should) re-reads the
            # input from the start, skipping what is done, rather than fail the publish.
            log(f"{missing} prompts not written after the main pass; re-reading {spec.input_uri} from the start")
            pipeline = make_pipeline(ReadPosition(), BitMap(committer.done))
            stats.skipped = 0
            await pipeline.run()
        if stats.fatal:
            raise JobFailed(
                f"stopped: {stats.fatal} ({stats.done + stats.skipped} of {stats.total} prompts are done and kept; "
                f"rerun with the same --output to resume)"
            )
        try:
            # the fence: only the attempt whose "publishing" commit lands writes results.jsonl
            committer.commit(wall_clock(), pipeline.resume_position(), lanes.export_state(), counters_of(stats),
                             status="publishing")
        except LeaseLost as exc:
            raise JobFailed(f"stopped: {exc}") from exc
        result = _publish(spec, committer, index.prompt_lines, generation, stats, lanes, clock() - started)
        history.sample(clock(), force=True)  # the last interval, whatever its length
        write_plot()
        if plot is not None:
            result.summary["rate_plot"] = plot_uri
        try:
            committer.commit(wall_clock(), pipeline.resume_position(), lanes.export_state(), counters_of(stats),
                             status="published")
        except LeaseLost:
            pass  # published already; a newer attempt will find results.jsonl and stop there
    except JobFailed as exc:
        if committer.lost is None:
            _finish(registry, committer, wall_clock(), "failed", stats, str(exc))
        raise
    finally:
        if lane_sync is not None:
            try:
                lane_sync.sync()  # the latest learned state, for the next job on the lane
            except Exception:  # noqa: BLE001 - sharing is best effort; the job's outcome stands
                pass
            lane_sync.leave()
    _finish(registry, committer, wall_clock(), "succeeded", stats, None, result.summary)
    return result


def _already_published(spec: JobSpec, committer: JobCommitter, stats: JobStats) -> JobResult | None:
    """A job whose results were published by an earlier attempt is not run again."""
    storage = committer.storage
    results_uri, summary_uri = join(spec.output_uri, "results.jsonl"), join(spec.output_uri, "summary.json")
    if storage.stat(results_uri) is None or storage.stat(summary_uri) is None:
        return None
    summary = msgspec.json.decode(storage.read_bytes(summary_uri))
    summary = {**summary, "skipped_as_done": summary.get("prompts") or 0, "already_published": True}
    stats.total = summary.get("prompts")
    stats.skipped = summary.get("prompts") or 0
    return JobResult(results_uri, summary_uri, summary, stats)


def _finish(registry: JobRegistry, committer: JobCommitter, now: float, status: str, stats: JobStats,
            message: str | None, summary: dict[str, Any] | None = None) -> None:
    counters = counters_of(stats)
    if summary is not None:  # the whole job's figures, not just this attempt's
        errors = summary.get("errors_by_code") or {}
        counters.update(total=summary.get("prompts") or 0, succeeded=summary.get("succeeded") or 0,
                        failed=summary.get("failed") or 0,
                        retryable_failed=sum(errors.get(c, 0) for c in RETRYABLE_ERROR_CODES))
    try:
        registry.finish(committer.lease, now, status, counters, message)
    except LeaseLost:
        pass  # a newer attempt owns the record now; its outcome is the one that counts


def _publish(
    spec: JobSpec, committer: JobCommitter, expected: int, generation: int, stats: JobStats,
    lanes: RateLanes, wall_s: float,
) -> JobResult:
    storage = committer.storage
    results_uri = join(spec.output_uri, "results.jsonl")
    summary_uri = join(spec.output_uri, "summary.json")
    fd, tmp = tempfile.mkstemp(prefix="promptforge-results-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb", buffering=1024 * 1024) as out:
            try:
                # newest part first: a re-run's new record replaces the failure it retried
                summary = assemble(committer.read_parts(reversed(committer.part_paths())), expected, out.write)
            except IncompleteResults as exc:
                raise JobFailed(f"cannot publish {results_uri}: {exc}") from exc
        storage.upload_file(results_uri, tmp)
    finally:
        os.unlink(tmp)
    completed = stats.done - stats.input_errors  # requests the provider answered for good
    doc = {
        "input": spec.input_uri,
        "input_generation": generation,
        "job_id": committer.job_id,
        "epoch": committer.lease.epoch if committer.lease else None,
        "output": results_uri,
        "model": spec.defaults.model,
        **summary.as_dict(),
        "skipped_as_done": stats.skipped,
        "input_errors": stats.input_errors,
        "rate_limited_429": stats.rate_limited,
        "retries": stats.retries,
        "wall_time_s": round(wall_s, 3),
        "achieved_rpm": round(completed * 60.0 / wall_s, 1) if wall_s > 0 else None,
        "rate_lanes": lanes.snapshot(),
    }
    storage.write_bytes(summary_uri, msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n")
    return JobResult(results_uri, summary_uri, doc, stats)
