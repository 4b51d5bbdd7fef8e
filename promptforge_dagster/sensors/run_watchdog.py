"""``run_watchdog``: a run whose worker died (SIGKILL, OOM, node loss) is marked failed, so
Dagster's run retries start a new run that resumes from the checkpoint.

On GKE, Dagster's own run monitoring sees dead run-worker pods; the local default
launcher cannot, so this sensor checks the job registry: a job marked running whose
lease expired, or whose run worker process (same host) is gone. The step process of a
killed run worker may live on; the retry's new lease epoch fences it.
"""

from __future__ import annotations

import os
import socket
import time

import dagster as dg

from promptforge_dagster.core.job_planning import find_stale_jobs
from promptforge_dagster.resources import JobRegistryResource

ACTIVE = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def build_run_watchdog(minimum_interval_seconds: int = 5) -> dg.SensorDefinition:
    @dg.sensor(name="run_watchdog", minimum_interval_seconds=minimum_interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Fails runs whose run worker is gone, so run retries resume them.")
    def run_watchdog(context: dg.SensorEvaluationContext, job_registry: JobRegistryResource) -> dg.SkipReason:
        registry = job_registry.registry()
        stale = find_stale_jobs(registry.list(status="running", limit=1000), time.time(),
                                this_host=socket.gethostname(), pid_alive=pid_alive)
        failed = 0
        for job in stale:
            runs = context.instance.get_runs(
                filters=dg.RunsFilter(tags={"dagster/partition": job.job_id}, statuses=ACTIVE))
            for run in runs:
                if job.run_id and run.run_id != job.run_id:
                    continue  # a newer run (a retry) already took over, or is about to
                context.log.warning(f"run {run.run_id} of job {job.job_id}: {job.reason}; marking it failed "
                                    "so a retry resumes it")
                context.instance.report_run_failed(run, message=f"PromptForge watchdog: {job.reason}")
                failed += 1
        return dg.SkipReason(f"{len(stale)} stale jobs, {failed} runs marked failed")

    return run_watchdog
