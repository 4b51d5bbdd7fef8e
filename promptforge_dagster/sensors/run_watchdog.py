"""Two sensors that keep the job registry truthful about runs that ended badly.

``run_watchdog``: a run whose worker died (SIGKILL, OOM, node loss) is marked failed, so
Dagster's run retries start a new run that resumes from the checkpoint. On GKE,
Dagster's own run monitoring sees dead run-worker pods; the local default launcher
cannot, so this sensor checks the job registry: a job marked running whose lease expired
(by more than the clock skew allowed), or whose run worker on this host (name and boot
id) is gone (no such pid, or the pid now belongs to a process that started later).

``run_end_recorder``: every run that ended failed or cancelled leaves its job in a
recorded end state (``failed``/``cancelled``), never ``queued`` or ``running``: the
attempt records its own ending when it can; this covers the runs that could not (killed,
failed before the step started). A retry that follows takes the job back to ``running``.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time

import dagster as dg

from promptforge_dagster.core.job_planning import find_stale_jobs
from promptforge_dagster.core.job_registry import page_key
from promptforge_dagster.procinfo import boot_id, pid_alive, process_start_ticks
from promptforge_dagster.resources import JobRegistryResource

ACTIVE = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING]
ENDED_BADLY = {dg.DagsterRunStatus.FAILURE: "failed", dg.DagsterRunStatus.CANCELED: "cancelled"}
# Running jobs read per registry page (all pages are read each tick).
PAGE = 500
# Ended runs handled per tick (the cursor carries on from the last one next tick).
RUNS_PER_TICK = 200
PARTITION_TAG = "dagster/partition"


def live_process_start(pid: int) -> int | None:
    return process_start_ticks(pid) if pid_alive(pid) else None


def running_jobs(registry) -> list:
    """Every job marked running, newest first, page by page."""
    out, before = [], None
    while True:
        page = registry.list(status="running", limit=PAGE, newest_first=True, before=before)
        out.extend(page)
        if len(page) < PAGE:
            return out
        before = page_key(page[-1])


def build_run_watchdog(minimum_interval_seconds: int = 5) -> dg.SensorDefinition:
    @dg.sensor(name="run_watchdog", minimum_interval_seconds=minimum_interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Fails runs whose run worker is gone, so run retries resume them.")
    def run_watchdog(context: dg.SensorEvaluationContext, job_registry: JobRegistryResource) -> dg.SkipReason:
        registry = job_registry.registry()
        stale = find_stale_jobs(running_jobs(registry), time.time(), this_host=socket.gethostname(),
                                this_boot=boot_id(), process_start=live_process_start)
        failed = 0
        for job in stale:
            runs = context.instance.get_runs(filters=dg.RunsFilter(tags={PARTITION_TAG: job.job_id}, statuses=ACTIVE))
            for run in runs:
                if job.run_id and run.run_id != job.run_id:
                    continue  # a newer run (a retry) already took over, or is about to
                context.log.warning(f"run {run.run_id} of job {job.job_id}: {job.reason}; marking it failed "
                                    "so a retry resumes it")
                context.instance.report_run_failed(run, message=f"PromptForge watchdog: {job.reason}")
                failed += 1
        return dg.SkipReason(f"{len(stale)} stale jobs, {failed} runs marked failed")

    return run_watchdog


def build_run_end_recorder(minimum_interval_seconds: int = 5) -> dg.SensorDefinition:
    @dg.sensor(name="run_end_recorder", minimum_interval_seconds=minimum_interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Records failed/cancelled for jobs whose run ended that way without recording it.")
    def run_end_recorder(context: dg.SensorEvaluationContext, job_registry: JobRegistryResource) -> dg.SensorResult:
        registry = job_registry.registry()
        doc = json.loads(context.cursor) if context.cursor else {}
        after = dt.datetime.fromtimestamp(float(doc.get("updated_after", 0.0)), tz=dt.timezone.utc)
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(statuses=list(ENDED_BADLY), updated_after=after),
            limit=RUNS_PER_TICK, order_by="update_timestamp", ascending=True)
        settled, last = 0, float(doc.get("updated_after", 0.0))
        for record in records:
            run = record.dagster_run
            last = max(last, record.update_timestamp.timestamp())
            job_id = run.tags.get(PARTITION_TAG)
            if not job_id:
                continue
            status = ENDED_BADLY[run.status]
            message = (f"run {run.run_id} was cancelled" if status == "cancelled"
                       else f"run {run.run_id} failed before the job recorded its outcome")
            if registry.settle(job_id, time.time(), status, message, run_id=run.run_id):
                settled += 1
                context.log.info(f"job {job_id}: {message}; recorded {status}")
        return dg.SensorResult(cursor=json.dumps({"updated_after": last}),
                               skip_reason=None if settled else dg.SkipReason(f"{len(records)} ended runs looked at"))

    return run_end_recorder
