"""The streaming batch asset (one dynamic partition per job) and its summary.

``batch_results`` reads the job's input (the partition's registry record names it) and
writes ``results.jsonl`` and ``summary.json`` to the job's output folder, streaming the
prompts through the core engine with the rate-limiter and checkpoint resources; a retried
run resumes where the last stopped. ``batch_summary`` reads ``results.jsonl`` with polars.
"""


import multiprocessing
import os
import socket
import time

import dagster as dg

from promptforge_dagster import runner
from promptforge_dagster.core.formats import JobDefaults
from promptforge_dagster.core.job import JobFailed, JobHooks, JobRejected, JobSpec, JobSuperseded
from promptforge_dagster.core.job.errors import DUPLICATE_ID, RETRYABLE_ERROR_CODES
from promptforge_dagster.core.pipeline import JobStats, PipelineConfig
from promptforge_dagster.core.result_checks import check_results
from promptforge_dagster.core.storage import join
from promptforge_dagster.resources import (
    CheckpointResource, JobRegistryResource, LLMResource, RateLimiterResource, StorageResource,
)

jobs_partitions = dg.DynamicPartitionsDefinition(name="promptforge_jobs")

# A results line longer than this is cut when summarised (none is: answers are far smaller).
RESULT_LINE_CAP_BYTES = 64 * 1024 * 1024
CHECK_ONE_LINE_PER_INPUT = "one_result_line_per_input_line"
CHECK_UNIQUE_IDS = "custom_ids_unique"
CHECK_FAILURE_RATE = "failure_rate_under_threshold"


class BatchConfig(dg.Config):
    """Per-run settings (the Launchpad shows them)."""

    max_failure_rate: float = 0.05  # the failure-rate check warns above this share
    rerun_failed: bool = False  # send again only the prompts whose results are retryable failures


# Run tag Dagster's run retries read: "false" means a failed step is not retried.
NO_RETRY_TAG = "dagster/retry_on_asset_or_op_failure"


def owner_id(run_id: str) -> str:
    """``host/boot:run_worker_pid@start:step_pid:run_id``. The watchdog checks the run
    worker: a host is known by its name *and* its boot id (a rebooted node, or a new pod
    with a recycled name, is another host), a pid by its start time (a recycled pid is
    another process). Under the multiprocess executor the step runs in a child of the run worker."""
    from promptforge_dagster.core.job_planning import format_owner
    from promptforge_dagster.procinfo import boot_id, process_start_ticks

    parent = multiprocessing.parent_process()
    worker = parent.pid if parent is not None else os.getpid()
    return format_owner(socket.gethostname(), boot_id(), worker, process_start_ticks(worker), os.getpid(), run_id)


def without_nulls(metadata: dict) -> dict:
    """Metadata with no value left out (the UI would show a literal ``null``).

    >>> without_nulls({"cost_usd": None, "succeeded": 3})
    {'succeeded': 3}
    """
    return {k: v for k, v in metadata.items() if v is not None}


def plot_links(summary: dict) -> dict:
    """The rate plot in the UI: as text in a code block (Dagster's markdown empties ``data:``
    image URLs, so a PNG cannot be shown inline), the PNG's path, and for a plot in GCS a
    link that opens it in the browser of anyone who may read the bucket.

    >>> sorted(plot_links({"rate_chart": "x", "rate_plot": "gs://b/out/rate.png"}))
    ['rate_chart', 'rate_plot', 'rate_plot_url']
    >>> plot_links({"rate_plot": "gs://b/out/rate.png"})["rate_plot_url"].value
    'https://storage.cloud.google.com/b/out/rate.png'
    """
    links = {}
    if summary.get("rate_chart"):
        links["rate_chart"] = dg.MetadataValue.md(f"```text\n{summary['rate_chart']}\n```")
    if plot := summary.get("rate_plot"):
        links["rate_plot"] = dg.MetadataValue.path(plot)
        if plot.startswith("gs://"):
            links["rate_plot_url"] = dg.MetadataValue.url("https://storage.cloud.google.com/" + plot[len("gs://"):])
    return links


class _LogStream:
    """Progress lines into the Dagster run log."""

    def __init__(self, log) -> None:
        self._log = log

    def write(self, text: str) -> None:
        text = text.strip("\r\n ")
        if text:
            self._log.info(text)

    def flush(self) -> None:
        pass


# The uploaded files, as the external asset upstream of every job: PromptForge never writes
# them; the upload sensor reports each new one as an observation.
UPLOADS = dg.AssetSpec("uploads", description="JSONL files dropped into the input bucket (or the local inputs "
                       "folder); each new object generation becomes one job", kinds={"jsonl"},
                       owners=["team:ml-platform"], group_name="promptforge")


@dg.asset(
    partitions_def=jobs_partitions,
    check_specs=[
        # partition-scoped: each job's checks are its own, not whichever job ran last
        dg.AssetCheckSpec(CHECK_ONE_LINE_PER_INPUT, asset="batch_results", partitions_def=jobs_partitions,
                          description="results.jsonl holds exactly one line per input line"),
        dg.AssetCheckSpec(CHECK_UNIQUE_IDS, asset="batch_results", partitions_def=jobs_partitions,
                          description="custom_id values are unique"),
        dg.AssetCheckSpec(CHECK_FAILURE_RATE, asset="batch_results", partitions_def=jobs_partitions,
                          description="the share of failed prompts is under the configured threshold (warning)"),
    ],
    kinds={"python", "litellm"},  # and where it runs, per deployment (definitions.py)
    owners=["team:ml-platform"],
    tags={"promptforge/stage": "batch"},
    deps=[UPLOADS],
    group_name="promptforge",
)
def batch_results(
    context: dg.AssetExecutionContext,
    config: BatchConfig,
    llm: LLMResource,
    rate_limiter: RateLimiterResource,
    checkpoints: CheckpointResource,
    storage: StorageResource,
    job_registry: JobRegistryResource,
) -> dg.MaterializeResult:
    """Reads the job's JSONL input; writes ``results.jsonl`` (OpenAI Batch output format)
    and ``summary.json`` under the job's output folder, with parts and a bitset checkpoint
    beside them so a retried run resumes instead of restarting."""
    key = context.partition_key
    registry = job_registry.registry()
    record = registry.get(key)
    if record is None:
        raise dg.Failure(f"job {key} is not in the job registry (the sensor records jobs before starting runs)")
    spec = JobSpec(
        record.input_uri, record.output_uri, JobDefaults(record.extra.get("model") or llm.model),
        job_id=key, pipeline=PipelineConfig(max_in_flight=llm.max_in_flight),
        checkpoint_interval_s=checkpoints.interval_s, lease_ttl_s=checkpoints.lease_ttl_s,
        heartbeat_s=checkpoints.heartbeat_s, policy=llm.policy(),
        input_generation=int(record.extra["generation"]) if record.extra.get("generation") else None,
        rerun_codes=RETRYABLE_ERROR_CODES if config.rerun_failed else (),
        share_lanes=rate_limiter.share_lanes,
    )
    lanes = rate_limiter.lanes(llm.key_hash(), llm.default_provider(), llm.max_in_flight, llm.effective_api_base)
    try:
        lanes.groups = llm.groups()
        provider = llm.provider()
    except ValueError as exc:  # a deployments document that cannot be used, or a transport that does not fit
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    stats = JobStats()
    store = storage.storage()
    def said_resumed(r) -> None:
        if len(r.done) or r.reconciled_parts:  # a fresh start says nothing
            context.log.info(f"resuming: {len(r.done)} prompts already done, {r.reconciled_parts} parts written "
                             f"after the last checkpoint reconciled; reading from line {r.position.line_no}")

    hooks = JobHooks(log=context.log.warning, on_resume=said_resumed)
    failure_metadata = {"input": record.input_uri, "output": record.output_uri}
    try:
        result = runner.run(spec, input_storage=store, output_storage=store, provider=provider, lanes=lanes,
                            registry=registry, owner=owner_id(context.run_id), stats=stats, hooks=hooks,
                            progress=runner.Progress(_LogStream(context.log), enabled=True, every_s=10.0))
    except (JobRejected, JobSuperseded) as exc:
        # retrying cannot help: the input cannot be a job, or a newer attempt owns it
        context.instance.add_run_tags(context.run_id, {NO_RETRY_TAG: "false"})
        raise dg.Failure(description=str(exc), allow_retries=False,
                         metadata={**failure_metadata, "done_and_kept": stats.done + stats.skipped}) from exc
    except JobFailed as exc:
        raise dg.Failure(description=str(exc),
                         metadata={**failure_metadata, "done_and_kept": stats.done + stats.skipped}) from exc
    except dg.DagsterExecutionInterruptedError:
        # the run was cancelled; the attempt records it too, this covers an interrupt before it started
        registry.settle(key, time.time(), "cancelled", "the run was cancelled", run_id=context.run_id)
        raise
    s = result.summary
    lanes_state = s.get("rate_lanes") or {}
    learned_rpm = [v.get("learned_rpm_ceiling") for v in lanes_state.values() if v.get("learned_rpm_ceiling")]
    learned_tpm = [v.get("learned_tpm_ceiling") for v in lanes_state.values() if v.get("learned_tpm_ceiling")]
    pool = [v.get("background_refused_share") for v in lanes_state.values() if v.get("background_refused_share")]
    failed_share = (s["failed"] / s["prompts"]) if s.get("prompts") else 0.0
    errors = s.get("errors_by_code") or {}
    info = store.stat(result.results_uri)
    checks = check_results(lambda start, n: store.read_range(result.results_uri, start, n, info.generation),
                           info.size, expected=int(s.get("prompts") or 0),
                           flagged_duplicates=int(errors.get(DUPLICATE_ID, 0)))
    return dg.MaterializeResult(
        metadata=without_nulls({
            "input_uri": record.input_uri,
            "input_generation": s.get("input_generation"),
            "output_uri": dg.MetadataValue.path(result.results_uri),
            "prompts_total": s.get("prompts"),
            "succeeded": s.get("succeeded"),
            "failed": s.get("failed"),
            "skipped_as_done": s.get("skipped_as_done"),
            "tokens_in": s.get("tokens_in"),
            "tokens_out": s.get("tokens_out"),
            "cost_usd": s.get("cost_usd"),
            "wall_time_s": s.get("wall_time_s"),
            "achieved_rpm": s.get("achieved_rpm"),
            "learned_rpm_ceiling": max(learned_rpm) if learned_rpm else None,
            "learned_tpm_ceiling": max(learned_tpm) if learned_tpm else None,
            "rate_limited_429": s.get("rate_limited_429"),  # over every attempt of the job
            "busy_pool_refused_share": max(pool) if pool else None,  # 429s of a shared pool, not of a limit
            "retries": s.get("retries"),
            "attempts": s.get("attempts"),
            "errors_by_code": dg.MetadataValue.json(s.get("errors_by_code") or {}),
            "epoch": s.get("epoch"),
            **plot_links(s),
        }),
        check_results=[
            dg.AssetCheckResult(check_name=CHECK_ONE_LINE_PER_INPUT, passed=checks.one_line_per_input,
                                metadata={"result_lines": checks.lines, "input_lines": checks.expected}),
            dg.AssetCheckResult(check_name=CHECK_UNIQUE_IDS, passed=checks.ids_unique,
                                metadata={"repeated_ids": checks.duplicate_ids,
                                          "duplicates_in_input": checks.flagged_duplicates}),
            dg.AssetCheckResult(check_name=CHECK_FAILURE_RATE, passed=failed_share <= config.max_failure_rate,
                                severity=dg.AssetCheckSeverity.WARN,
                                metadata={"failed_share": round(failed_share, 4),
                                          "threshold": config.max_failure_rate}),
        ],
    )


@dg.asset(partitions_def=jobs_partitions, deps=[batch_results], kinds={"polars"}, owners=["team:ml-platform"],
          tags={"promptforge/stage": "summary"}, group_name="promptforge")
def batch_summary(context: dg.AssetExecutionContext, storage: StorageResource,
                  job_registry: JobRegistryResource) -> dg.MaterializeResult:
    """Reads the job's ``results.jsonl`` with polars, streamed in blocks (memory stays one
    block whatever the job's size); reports counts by error type and token percentiles
    (latency percentiles come from ``summary.json``)."""
    import msgspec
    import polars as pl

    from promptforge_dagster.core.reader import PromptReader
    from promptforge_dagster.core.summary_frame import blocks_of_lines, summarize_blocks

    record = job_registry.registry().get(context.partition_key)
    if record is None:
        raise dg.Failure(f"job {context.partition_key} is not in the job registry")
    store = storage.storage()
    results_uri = join(record.output_uri, "results.jsonl")
    info = store.stat(results_uri)
    if info is None:
        raise dg.Failure(f"{results_uri} does not exist: materialize batch_results for this job first")
    reader = PromptReader(lambda start, n: store.read_range(results_uri, start, n, info.generation), info.size,
                          max_line_bytes=RESULT_LINE_CAP_BYTES)
    frame = summarize_blocks(pl, blocks_of_lines(line.data for line in reader))
    summary = msgspec.json.decode(store.read_bytes(join(record.output_uri, "summary.json")))
    return dg.MaterializeResult(metadata={
        "lines": frame["lines"],
        "errors_by_type": dg.MetadataValue.json(frame["errors_by_type"]),
        "prompt_tokens_p50": frame["prompt_tokens_p50"],
        "prompt_tokens_p95": frame["prompt_tokens_p95"],
        "completion_tokens_p50": frame["completion_tokens_p50"],
        "completion_tokens_p95": frame["completion_tokens_p95"],
        "latency_ms": dg.MetadataValue.json(summary.get("latency_ms") or {}),
    })


