"""``rerun_failed_prompts``: a schedule that retries what a finished job could not.

* Jobs that succeeded with retryable per-prompt failures (rate limited to the end,
  transient errors past their attempts) get a re-run of only those prompts; the new
  results replace the failures in ``results.jsonl``, one line per input line still.
* Jobs marked running whose lease expired with no active run are launched again (they
  resume from their checkpoint).
"""

from __future__ import annotations

import time

import dagster as dg

from promptforge_dagster.core.job_planning import plan_run
from promptforge_dagster.core.job_registry import JobRecord
from promptforge_dagster.resources import JobRegistryResource
from promptforge_dagster.sensors.upload_sensor import object_of

ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED]


def plan_reruns(records: list[JobRecord], now: float, active: set[str]) -> list[tuple[JobRecord, str, bool]]:
    """(record, run key, rerun_failed) for each job to launch. Pure.

    >>> done = JobRecord("k", "i", "o", status="succeeded", epoch=3, counters={"retryable_failed": 2})
    >>> stuck = JobRecord("s", "i", "o", status="running", epoch=2, lease_expires_at=5.0)
    >>> [(r.job_id, key, rerun) for r, key, rerun in plan_reruns([done, stuck], 10.0, active=set())]
    [('k', 'k#rerun-failed-e3', True), ('s', 's#relaunch-e2', False)]
    >>> plan_reruns([done], 10.0, active={"k"})
    []
    """
    out = []
    for rec in records:
        if rec.job_id in active:
            continue
        if rec.status == "succeeded" and int(rec.counters.get("retryable_failed", 0)) > 0:
            out.append((rec, f"{rec.job_id}#rerun-failed-e{rec.epoch}", True))
        elif rec.status == "running" and rec.lease_expires_at and rec.lease_expires_at < now:
            out.append((rec, f"{rec.job_id}#relaunch-e{rec.epoch}", False))
    return out


def build_rerun_failed_prompts(job, *, max_retries: int,
                               cron_schedule: str = "*/15 * * * *") -> dg.ScheduleDefinition:
    """A schedule targets one job: the shared small-job pool. Re-runs send only failed
    prompts (few, by nature); a relaunched job resumes in the run worker's pod."""

    @dg.schedule(name="rerun_failed_prompts", cron_schedule=cron_schedule, job=job,
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="Re-runs only the failed prompts of finished jobs; relaunches jobs whose lease expired.")
    def rerun_failed_prompts(context: dg.ScheduleEvaluationContext, job_registry: JobRegistryResource):
        registry = job_registry.registry()
        candidates = registry.list(status="succeeded", limit=1000) + registry.list(status="running", limit=1000)
        active = set()
        for rec in candidates:
            if context.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": rec.job_id},
                                                               statuses=ACTIVE), limit=1):
                active.add(rec.job_id)
        requests = []
        for rec, run_key, rerun in plan_reruns(candidates, time.time(), active):
            plan = plan_run(object_of(rec), small_job_prompts=1 << 62, max_retries=max_retries,
                            extra_tags={"promptforge/rerun_failed": str(rerun).lower()})
            requests.append(dg.RunRequest(
                run_key=run_key, partition_key=rec.job_id, tags=plan.tags,
                run_config={"ops": {"batch_results": {"config": {"rerun_failed": rerun}}}}))
        return requests or dg.SkipReason("nothing to re-run")

    return rerun_failed_prompts
