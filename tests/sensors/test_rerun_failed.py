"""rerun_failed_prompts: finished jobs with retryable per-prompt failures get a re-run
(only those prompts, flagged in the run config); jobs marked running whose lease expired
are relaunched; jobs with a run already active, or with nothing to retry, are left alone."""

import json
import time

import dagster as dg
from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.core.job_registry import JobRecord
from promptforge_dagster.definitions import build_definitions
from promptforge_dagster.deployment import deployment_from_env
from promptforge_dagster.resources import JobRegistryResource


def record(key, status, **kw):
    return JobRecord(key, f"/b/{key}", f"/o/{key}", status=status, created_at=1.0,
                     extra={"bucket": "b", "name": key.split("#")[0], "generation": 1, "size": 100}, **kw)


def test_schedule_plans_reruns_and_relaunches(tmp_path):
    d = deployment_from_env({"PROMPTFORGE_HOME": str(tmp_path)})
    schedule = build_definitions(d).get_repository_def().get_schedule_def("rerun_failed_prompts")
    registry = SQLiteRegistry(d.registry_uri[len("sqlite://"):])
    registry.create(record("b/failed.jsonl#1", "succeeded", epoch=2, counters={"retryable_failed": 3}))
    registry.create(record("b/clean.jsonl#1", "succeeded", epoch=1, counters={"retryable_failed": 0}))
    registry.create(record("b/stuck.jsonl#1", "running", epoch=4, lease_expires_at=time.time() - 60))
    registry.create(record("b/live.jsonl#1", "running", epoch=1, lease_expires_at=time.time() + 60))
    with dg.instance_for_test() as instance:  # a schedule context needs an instance with a ref
        with dg.build_schedule_context(instance=instance,
                                       resources={"job_registry": JobRegistryResource(uri=d.registry_uri)}) as ctx:
            requests = {r.partition_key: r for r in schedule(ctx)}
    assert set(requests) == {"b/failed.jsonl#1", "b/stuck.jsonl#1"}
    rerun, relaunch = requests["b/failed.jsonl#1"], requests["b/stuck.jsonl#1"]
    assert rerun.run_key == "b/failed.jsonl#1#rerun-failed-e2"
    assert rerun.run_config["ops"]["batch_results"]["config"]["rerun_failed"] is True
    assert relaunch.run_key == "b/stuck.jsonl#1#relaunch-e4"
    assert relaunch.run_config["ops"]["batch_results"]["config"]["rerun_failed"] is False


def test_cancelled_jobs_are_left_alone_and_reruns_are_capped(tmp_path):
    from promptforge_dagster.sensors.rerun_failed import plan_reruns

    cancelled = record("b/c.jsonl#1", "cancelled", epoch=2, counters={"retryable_failed": 5})
    failing = record("b/f.jsonl#1", "succeeded", epoch=2, counters={"retryable_failed": 5})
    assert plan_reruns([cancelled], time.time(), set()) == []
    assert [r.job_id for r, _, _ in plan_reruns([failing], time.time(), set(), {"b/f.jsonl#1": 2})] == ["b/f.jsonl#1"]
    assert plan_reruns([failing], time.time(), set(), {"b/f.jsonl#1": 3}) == []  # the cap: 3 re-runs per job


def test_run_end_recorder_settles_jobs_whose_runs_ended_without_recording_it(tmp_path):
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

    d = deployment_from_env({"PROMPTFORGE_HOME": str(tmp_path)})
    sensor = build_definitions(d).get_repository_def().get_sensor_def("run_end_recorder")
    registry = SQLiteRegistry(d.registry_uri[len("sqlite://"):])
    registry.create(record("b/never-started.jsonl#1", "queued"))
    registry.acquire("b/killed.jsonl#1", "h/boot:1@2:3:run-killed", now=time.time(), ttl_s=600)
    registry.acquire("b/retried.jsonl#1", "h/boot:1@2:3:run-new", now=time.time(), ttl_s=600)
    with dg.instance_for_test() as instance:
        for run_id, job, status in (("run-never", "b/never-started.jsonl#1", DagsterRunStatus.FAILURE),
                                    ("run-killed", "b/killed.jsonl#1", DagsterRunStatus.CANCELED),
                                    ("run-old", "b/retried.jsonl#1", DagsterRunStatus.FAILURE)):
            instance.add_run(DagsterRun(job_name="promptforge_small_job", run_id=run_id, status=status,
                                        tags={"dagster/partition": job}))
        ctx = dg.build_sensor_context(instance=instance,
                                      resources={"job_registry": JobRegistryResource(uri=d.registry_uri)})
        result = sensor(ctx)
        assert registry.get("b/never-started.jsonl#1").status == "failed"
        assert registry.get("b/killed.jsonl#1").status == "cancelled"
        assert registry.get("b/retried.jsonl#1").status == "running"  # a newer run holds it: left alone
        again = sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor,
                                               resources={"job_registry": JobRegistryResource(uri=d.registry_uri)}))
        assert again.cursor == result.cursor or json.loads(again.cursor)["updated_after"] >= 0
