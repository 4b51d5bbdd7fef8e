"""The streaming batch asset (one dynamic partition per job) and its summary.

``batch_results`` reads the job's input (the partition's registry record names it) and
writes ``results.jsonl`` and ``summary.json`` to the job's output folder, streaming the
prompts through the core engine with the rate-limiter and checkpoint resources; a retried
run resumes where the last stopped. ``batch_summary`` reads ``results.jsonl`` with polars.
"""


import asyncio
import multiprocessing
import os
import socket
import tempfile

import dagster as dg

from promptforge_dagster.core.formats import JobDefaults
from promptforge_dagster.core.job import JobFailed, JobSpec, run_job
from promptforge_dagster.core.errors import DUPLICATE_ID, RETRYABLE_ERROR_CODES
from promptforge_dagster.core.pipeline import JobStats, PipelineConfig
from promptforge_dagster.core.result_checks import check_results
from promptforge_dagster.core.storage import join
from promptforge_dagster.resources import (
    CheckpointResource, JobRegistryResource, LLMResource, RateLimiterResource, StorageResource,
)

jobs_partitions = dg.DynamicPartitionsDefinition(name="promptforge_jobs")

CHECK_ONE_LINE_PER_INPUT = "one_result_line_per_input_line"
CHECK_UNIQUE_IDS = "custom_ids_unique"
CHECK_FAILURE_RATE = "failure_rate_under_threshold"


class BatchConfig(dg.Config):
    """Per-run settings (the Launchpad shows them)."""

    max_failure_rate: float = 0.05  # the failure-rate check warns above this share
    rerun_failed: bool = False  # send again only the prompts whose results are retryable failures


def owner_id(run_id: str) -> str:
    """``host:run_worker_pid:step_pid:run_id``: the watchdog checks the run worker's pid.
    Under the multiprocess executor the step runs in a child of the run worker."""
    parent = multiprocessing.parent_process()
    worker = parent.pid if parent is not None else os.getpid()
    return f"{socket.gethostname()}:{worker}:{os.getpid()}:{run_id}"


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


@dg.asset(
    partitions_def=jobs_partitions,
    check_specs=[
        dg.AssetCheckSpec(CHECK_ONE_LINE_PER_INPUT, asset="batch_results",
                          description="results.jsonl holds exactly one line per input line"),
        dg.AssetCheckSpec(CHECK_UNIQUE_IDS, asset="batch_results", description="custom_id values are unique"),
        dg.AssetCheckSpec(CHECK_FAILURE_RATE, asset="batch_results",
                          description="the share of failed prompts is under the configured threshold (warning)"),
    ],
    kinds={"python", "gcs"},
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
    )
    lanes = rate_limiter.lanes(llm.key_hash(), llm.default_provider(), llm.max_in_flight)
    stats = JobStats()
    store = storage.storage()

    from promptforge_dagster.rate_plot import render_png
    from promptforge_dagster.telemetry import job_metrics

    async def go(metric_hooks):
        from promptforge_dagster.progress import ProgressReporter

        reporter = ProgressReporter(stats, lanes, stream=_LogStream(context.log), enabled=True, log_every_s=10.0)
        task = asyncio.create_task(reporter.run())
        try:
            return await run_job(
                spec, input_storage=store, output_storage=store, provider=llm.provider(), controller=lanes,
                registry=registry, owner=owner_id(context.run_id), stats=stats,
                on_resume=lambda r: context.log.info(
                    f"resuming: {len(r.done)} prompts already done, {r.reconciled_parts} parts written after the "
                    f"last checkpoint reconciled; reading from line {r.position.line_no}"),
                log=context.log.warning,
                rerun_codes=RETRYABLE_ERROR_CODES if config.rerun_failed else (),
                share_lanes=rate_limiter.share_lanes, plot=render_png, **metric_hooks)
        finally:
            task.cancel()

    try:
        with job_metrics(key, stats, lanes) as metric_hooks:  # OTLP/HTTP when OTEL_EXPORTER_OTLP_* are set
            result = asyncio.run(go(metric_hooks))
    except JobFailed as exc:
        raise dg.Failure(description=str(exc), metadata={"input": record.input_uri, "output": record.output_uri,
                                                         "done_and_kept": stats.done + stats.skipped}) from exc
    s = result.summary
    lanes_state = s.get("rate_lanes") or {}
    learned_rpm = [v.get("learned_rpm_ceiling") for v in lanes_state.values() if v.get("learned_rpm_ceiling")]
    learned_tpm = [v.get("learned_tpm_ceiling") for v in lanes_state.values() if v.get("learned_tpm_ceiling")]
    failed_share = (s["failed"] / s["prompts"]) if s.get("prompts") else 0.0
    errors = s.get("errors_by_code") or {}
    info = store.stat(result.results_uri)
    checks = check_results(lambda start, n: store.read_range(result.results_uri, start, n, info.generation),
                           info.size, expected=int(s.get("prompts") or 0),
                           flagged_duplicates=int(errors.get(DUPLICATE_ID, 0)))
    return dg.MaterializeResult(
        metadata={
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
            "rate_limited_429": s.get("rate_limited_429"),
            "errors_by_code": dg.MetadataValue.json(s.get("errors_by_code") or {}),
            "epoch": s.get("epoch"),
            **({"rate_plot": dg.MetadataValue.path(s["rate_plot"])} if s.get("rate_plot") else {}),
        },
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


@dg.asset(partitions_def=jobs_partitions, deps=[batch_results], kinds={"polars"}, group_name="promptforge")
def batch_summary(context: dg.AssetExecutionContext, storage: StorageResource,
                  job_registry: JobRegistryResource) -> dg.MaterializeResult:
    """Reads the job's ``results.jsonl`` with polars; reports counts by error type and
    token percentiles (latency percentiles come from ``summary.json``)."""
    import polars as pl

    from promptforge_dagster.core.summary_frame import summarize_results

    record = job_registry.registry().get(context.partition_key)
    if record is None:
        raise dg.Failure(f"job {context.partition_key} is not in the job registry")
    store = storage.storage()
    results_uri = join(record.output_uri, "results.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "results.jsonl")
        with open(local, "wb") as f:  # polars never touches GCS credentials: it reads a local copy
            f.write(store.read_bytes(results_uri))
        frame = summarize_results(pl, local)
    import msgspec

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


