"""``upload_sensor``: new input objects -> job records -> one run per job.

Jobs come from the job registry (the Eventarc receiver records them); as a fallback for
missed events the sensor also lists the input prefix. The decisions are pure
(``core/job_planning.py``); this module reads, writes the registry and yields requests.
"""

from __future__ import annotations

import time

import dagster as dg

from promptforge_dagster.assets.batch import jobs_partitions
from promptforge_dagster.core.job_planning import (
    UploadedObject, advance_cursor, job_key, job_record_for, output_name, plan_cursor, plan_run,
)
from promptforge_dagster.core.job_registry import JobRecord
from promptforge_dagster.resources import JobRegistryResource, StorageResource


def record_object(registry, storage: StorageResource, obj: UploadedObject, now: float) -> tuple[JobRecord, bool]:
    """The job record of an uploaded object, and whether this call created it (once per
    object generation; a rejected object records why)."""
    existing = registry.get(job_key(obj))
    if existing is not None:
        return existing, False
    record = job_record_for(obj, input_uri=storage.object_uri(obj.name),
                            output_uri=storage.output_uri(output_name(job_key(obj))), now=now)
    if registry.create(record):
        return record, True
    return registry.get(record.job_id) or record, False  # a receiver recorded it meanwhile


def list_uploads(storage: StorageResource) -> list[UploadedObject]:
    store = storage.storage()
    bucket = storage.inputs_root.rstrip("/").rsplit("/", 1)[-1].removeprefix("gs:") or "bucket"
    objects = (UploadedObject(bucket, storage.object_name(path), info.generation, info.size)
               for path, info in store.list_objects(storage.input_uri))
    return [obj for obj in objects if not storage.is_output(obj.name)]  # results never become jobs


def object_of(record: JobRecord) -> UploadedObject:
    e = record.extra
    return UploadedObject(e.get("bucket", ""), e.get("name", ""), int(e.get("generation", 0)), int(e.get("size", 0)))


def build_upload_sensor(jobs: list, *, small_job_prompts: int, max_retries: int, listing_interval_s: float,
                        minimum_interval_seconds: int = 5, run_config_for=None) -> dg.SensorDefinition:
    """``run_config_for(plan)`` gives a run's config (on GKE: the k8s_job_executor's, with
    the step pod sized for the job); None leaves the job's defaults."""

    @dg.sensor(
        name="upload_sensor",
        jobs=jobs,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Starts one run per uploaded JSONL object generation (run key bucket/object#generation).",
    )
    def upload_sensor(context: dg.SensorEvaluationContext, storage: StorageResource,
                      job_registry: JobRegistryResource) -> dg.SensorResult:
        registry = job_registry.registry()
        now = time.time()
        doc = plan_cursor(context.cursor)
        if now - float(doc.get("listed_at", 0.0)) >= listing_interval_s:
            for obj in list_uploads(storage):  # the fallback for missed events
                rec, created = record_object(registry, storage, obj, now)
                if created and rec.status == "rejected":  # said once, not on every tick
                    context.log.warning(f"not starting a run for {rec.input_uri}: {rec.message}")
            doc["listed_at"] = now
        requests, new_keys = [], []
        for rec in registry.list(status="queued", limit=500):
            if rec.job_id in doc["requested"]:
                continue
            plan = plan_run(object_of(rec), small_job_prompts=small_job_prompts, max_retries=max_retries)
            if not context.instance.has_dynamic_partition(jobs_partitions.name, rec.job_id):
                new_keys.append(rec.job_id)
            requests.append(dg.RunRequest(run_key=rec.job_id, partition_key=rec.job_id,
                                          job_name=plan.job_name, tags=plan.tags,
                                          run_config=(run_config_for(plan) if run_config_for else None) or {}))
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[jobs_partitions.build_add_request(new_keys)] if new_keys else [],
            cursor=advance_cursor(doc, [r.run_key for r in requests]),
        )

    return upload_sensor
