"""One batch job from input to ``results.jsonl`` and ``summary.json``.

:func:`run_job` pins the input's generation, rejects non-JSONL files at once, scans
for duplicates, streams the prompts through the :class:`Pipeline`, and publishes the
results. Parts already in the output (an earlier attempt's) are reconciled first: their
prompts are skipped, never sent twice.

Output layout::

    OUTPUT/parts/<attempt>-<seq>.jsonl   immutable parts, written as results complete
    OUTPUT/results.jsonl                 one line per input line, OpenAI Batch format
    OUTPUT/summary.json                  counts, tokens, cost, wall time, achieved RPM
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import msgspec
from pyroaring import BitMap

from promptforge_dagster.core.formats import JobDefaults, LineParser, NotJsonlError
from promptforge_dagster.core.input_scan import SNIFF_BYTES, scan_input, sniff
from promptforge_dagster.core.pipeline import JobStats, Pipeline, PipelineConfig, Provider
from promptforge_dagster.core.rate_controller import RateController
from promptforge_dagster.core.rate_lanes import RateLanes
from promptforge_dagster.core.reader import DEFAULT_CHUNK_BYTES, PromptReader, ReadPosition
from promptforge_dagster.core.results import Envelope, IncompleteResults, assemble, decode_part, encode_part
from promptforge_dagster.core.storage import PreconditionFailed, Storage, join


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


@dataclass
class JobResult:
    """Where the results are and what the job did."""

    results_uri: str
    summary_uri: str
    summary: dict[str, Any]
    stats: JobStats


def parts_prefix(output_uri: str) -> str:
    return join(output_uri, "parts") + "/"


def reconcile_parts(storage: Storage, output_uri: str) -> BitMap:
    """Ordinals already written by earlier attempts (every part in the output)."""
    done = BitMap()
    for path in storage.list(parts_prefix(output_uri)):
        if path.endswith(".jsonl"):
            done.update(env.ordinal for env in decode_part(storage.read_bytes(path)))
    return done


def clear_output(storage: Storage, output_uri: str) -> None:
    """Discard earlier progress (``--restart``)."""
    for path in storage.list(parts_prefix(output_uri)):
        storage.delete(path)
    for name in ("results.jsonl", "summary.json"):
        storage.delete(join(output_uri, name))


async def run_job(
    spec: JobSpec,
    *,
    input_storage: Storage,
    output_storage: Storage,
    provider: Provider,
    controller: RateController | RateLanes,
    stats: JobStats | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    on_pipeline: Callable[[Pipeline], None] | None = None,
) -> JobResult:
    """Run (or resume) one job to completion; raises :class:`JobFailed` with a reason."""
    stats = stats or JobStats()
    started = clock()
    info = input_storage.stat(spec.input_uri)
    if info is None:
        raise JobFailed(f"input {spec.input_uri} does not exist")
    generation = info.generation

    def read_range(start: int, length: int) -> bytes:
        try:
            return input_storage.read_range(spec.input_uri, start, length, generation)
        except PreconditionFailed as exc:
            raise JobFailed(
                f"input {spec.input_uri} was replaced while the job ran (it started on generation {generation}); "
                "a re-upload is a new job"
            ) from exc

    try:
        sniff(read_range(0, min(SNIFF_BYTES, info.size)), spec.input_uri)
    except NotJsonlError as exc:
        raise JobFailed(str(exc)) from exc

    def lines(position: ReadPosition = ReadPosition()):
        return PromptReader(read_range, info.size, start=position, chunk_bytes=spec.chunk_bytes,
                            max_line_bytes=spec.max_line_bytes)

    index = scan_input(lines, spec.max_line_bytes)
    stats.total = index.prompt_lines
    done = reconcile_parts(output_storage, spec.output_uri)
    job_id = spec.job_id or f"{spec.input_uri}#{generation}"
    attempt = f"{int(wall_clock() * 1000):013d}-{os.getpid()}"
    seq = 0

    def write_part(envelopes: list[Envelope]) -> None:
        nonlocal seq
        seq += 1
        output_storage.write_bytes(join(spec.output_uri, "parts", f"{attempt}-{seq:06d}.jsonl"), encode_part(envelopes))

    pipeline = Pipeline(
        job_id=job_id,
        lines=lines,
        parser=LineParser(spec.defaults, spec.max_line_bytes, source=spec.input_uri),
        provider=provider,
        controller=controller,
        write_part=write_part,
        config=spec.pipeline,
        done=done,
        duplicates=index.duplicates,
        stats=stats,
        clock=clock,
        wall_clock=wall_clock,
    )
    if on_pipeline is not None:
        on_pipeline(pipeline)
    await pipeline.run()
    if stats.fatal:
        raise JobFailed(
            f"stopped: {stats.fatal} ({stats.done + stats.skipped} of {stats.total} prompts are done and kept; "
            f"rerun with the same --output to resume)"
        )
    return _publish(spec, output_storage, index.prompt_lines, generation, stats, pipeline.lanes, clock() - started)


def _publish(
    spec: JobSpec, storage: Storage, expected: int, generation: int, stats: JobStats,
    lanes: RateLanes, wall_s: float,
) -> JobResult:
    results_uri = join(spec.output_uri, "results.jsonl")
    summary_uri = join(spec.output_uri, "summary.json")
    fd, tmp = tempfile.mkstemp(prefix="promptforge-results-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb", buffering=1024 * 1024) as out:
            paths = [p for p in storage.list(parts_prefix(spec.output_uri)) if p.endswith(".jsonl")]
            try:
                summary = assemble((storage.read_bytes(p) for p in paths), expected, out.write)
            except IncompleteResults as exc:
                raise JobFailed(f"cannot publish {results_uri}: {exc}") from exc
        storage.upload_file(results_uri, tmp)
    finally:
        os.unlink(tmp)
    completed = stats.done - stats.input_errors  # requests the provider answered for good
    doc = {
        "input": spec.input_uri,
        "input_generation": generation,
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
