"""``rerun_failed_prompts``: a schedule that retries what a finished job could not.

* Jobs that succeeded with retryable per-prompt failures (rate limited to the end,
  transient errors past their attempts) get a re-run of only those prompts; the new
  results replace the failures in ``results.jsonl``, one line per input line still.
* Jobs marked running whose lease expired with no active run are launched again (they
  resume from their checkpoint).

Each job gets at most ``max_reruns`` launches from this schedule in its life (the count
is read from Dagster's runs, by the schedule's tag): failures that stay retryable stop
being re-run. Jobs are paged newest first, so a large history never hides new jobs.
Cancelled, failed and rejected jobs are left alone: someone or something ended them.
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
SCHEDULE_NAME = "rerun_failed_prompts"
# Launches per job from this schedule, over the job's life: 3 re-runs 15 minutes apart
# give a rate-limited account most of an hour to recover; past that, a person should look.
MAX_RERUNS = 3
# Jobs read per status per tick, newest first.
PAGE = 200


def plan_reruns(records: list[JobRecord], now: float, active: set[str],
                launched: dict[str, int] | None = None, max_reruns: int = MAX_RERUNS) -> list[tuple[JobRecord, str, bool]]:
    """(record, run key, rerun_failed) for each job to launch. Pure.

    >>> done = JobRecord("k", "i", "o", status="succeeded", epoch=3, counters={"retryable_failed": 2})
    >>> stuck = JobRecord("s", "i", "o", status="running", epoch=2, lease_expires_at=5.0)
    >>> [(r.job_id, key, rerun) for r, key, rerun in plan_reruns([done, stuck], 10.0, active=set())]
    [('k', 'k#rerun-failed-e3', True), ('s', 's#relaunch-e2', False)]
    >>> plan_reruns([done], 10.0, active={"k"}), plan_reruns([done], 10.0, set(), launched={"k": 3})
    ([], [])
    >>> plan_reruns([JobRecord("c", "i", "o", status="cancelled")], 10.0, set())
    []
    """
    launched = launched or {}
    out = []
    for rec in records:
        if rec.job_id in active or launched.get(rec.job_id, 0) >= max_reruns:
            continue
        if rec.status == "succeeded" and int(rec.counters.get("retryable_failed", 0)) > 0:
            out.append((rec, f"{rec.job_id}#rerun-failed-e{rec.epoch}", True))
        elif rec.status == "running" and rec.lease_expires_at and rec.lease_expires_at < now:
            out.append((rec, f"{rec.job_id}#relaunch-e{rec.epoch}", False))
    return out


def build_rerun_failed_prompts(job, *, max_retries: int, cron_schedule: str = "*/15 * * * *",
                               max_reruns: int = MAX_RERUNS) -> dg.ScheduleDefinition:
    """A schedule targets one job: the shared small-job pool. Re-runs send only failed
    prompts (few, by nature); a relaunched job resumes in the run worker's pod."""

    @dg.schedule(name=SCHEDULE_NAME, cron_schedule=cron_schedule, job=job,
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="Re-runs only the failed prompts of finished jobs (at most "
                             f"{max_reruns} times per job); relaunches jobs whose lease expired.")
    def rerun_failed_prompts(context: dg.ScheduleEvaluationContext, job_registry: JobRegistryResource):
        registry = job_registry.registry()
        candidates = (registry.list(status="succeeded", limit=PAGE, newest_first=True)
                      + registry.list(status="running", limit=PAGE, newest_first=True))
        candidates = [r for r in candidates if r.status == "running"
                      or int(r.counters.get("retryable_failed", 0)) > 0]
        active, launched = set(), {}
        for rec in candidates:
            tags = {"dagster/partition": rec.job_id}
            if context.instance.get_runs(filters=dg.RunsFilter(tags=tags, statuses=ACTIVE), limit=1):
                active.add(rec.job_id)
            launched[rec.job_id] = context.instance.get_runs_count(
                filters=dg.RunsFilter(tags={**tags, "dagster/schedule_name": SCHEDULE_NAME}))
        requests = []
        for rec, run_key, rerun in plan_reruns(candidates, time.time(), active, launched, max_reruns):
            plan = plan_run(object_of(rec), small_job_prompts=1 << 62, max_retries=max_retries,
                            extra_tags={"promptforge/rerun_failed": str(rerun).lower()})
            requests.append(dg.RunRequest(
                run_key=run_key, partition_key=rec.job_id, tags=plan.tags,
                run_config={"ops": {"batch_results": {"config": {"rerun_failed": rerun}}}}))
        return requests or dg.SkipReason("nothing to re-run")

    return rerun_failed_prompts
