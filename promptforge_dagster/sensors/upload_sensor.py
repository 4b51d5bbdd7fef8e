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
    SAMPLE_BYTES, UploadedObject, advance_cursor, job_key, job_record_for, output_name, plan_cursor, plan_run,
)
from promptforge_dagster.core.job_registry import JobRecord, page_key
from promptforge_dagster.resources import JobRegistryResource, StorageResource


# Queued jobs read per registry page, and pages per tick at most (a tick stays well
# inside Dagster's 60-s sensor timeout; the next tick carries on).
QUEUED_PAGE = 500
MAX_QUEUED_PAGES = 20
# Runs requested per tick at most.
MAX_REQUESTS = 500


def record_objects(registry, storage: StorageResource, objects: list[UploadedObject], now: float) -> list[JobRecord]:
    """Record a job for each object that has none (one batched read for all of them, one
    create per new object); the records created now (a rejected object records why)."""
    keys = [job_key(obj) for obj in objects]
    existing = registry.get_many(keys)
    created = []
    for obj, key in zip(objects, keys):
        if key in existing:
            continue
        record = job_record_for(obj, input_uri=storage.object_uri(obj.name),
                                output_uri=storage.output_uri(output_name(obj)), now=now)
        if registry.create(record):  # False: a receiver recorded it meanwhile
            created.append(record)
    return created


# A local file is taken once it has not changed for this long: a slow copy is one job, not
# one per write (GCS objects appear whole at finalize; nothing to wait for there).
LOCAL_QUIET_S = 3.0


def list_uploads(storage: StorageResource, now: float | None = None) -> list[UploadedObject]:
    store = storage.storage()
    bucket = storage.inputs_root.rstrip("/").rsplit("/", 1)[-1].removeprefix("gs:") or "bucket"
    objects = [UploadedObject(bucket, storage.object_name(path), info.generation, info.size)
               for path, info in store.list_objects(storage.input_uri)]
    if not storage.is_gcs:  # a local generation is the file's mtime in nanoseconds
        settled_before = int(((now if now is not None else time.time()) - LOCAL_QUIET_S) * 1e9)
        objects = [obj for obj in objects if obj.generation <= settled_before]
    return [obj for obj in objects if not storage.is_output(obj.name)]  # results never become jobs


def new_since(objects: list[UploadedObject], doc: dict, creation_ordered: bool) -> tuple[list[UploadedObject], dict]:
    """The objects a listing must look at, and the cursor's new high-water marks.

    GCS generations are creation times (microseconds): an object created after listing
    k-1 ended has a generation above every one listing k-1 saw. Skipping what is at or
    below the high-water mark of *two* listings ago is therefore safe even for objects
    created while a listing ran. Local files' generations are mtimes, which a copy can
    preserve (``cp -p``): there every object is looked at.

    >>> objs = [UploadedObject("b", f"in/{g}.jsonl", g, 1) for g in (5, 9, 12)]
    >>> seen, doc = new_since(objs, {"hwm": [9, 10]}, creation_ordered=True)
    >>> [o.generation for o in seen], doc["hwm"]
    ([12], [10, 12])
    >>> len(new_since(objs, {"hwm": [9, 10]}, creation_ordered=False)[0])
    3
    """
    older, newer = (list(doc.get("hwm") or [0, 0]) + [0, 0])[:2]
    top = max([o.generation for o in objects], default=newer)
    doc = {**doc, "hwm": [newer, max(top, newer)]}
    if not creation_ordered:
        return objects, doc
    return [o for o in objects if o.generation > older], doc


def _head(storage: StorageResource, record: JobRecord) -> bytes | None:
    """The first bytes of a job's input (to count its lines), or None if they cannot be read."""
    try:
        generation = int(record.extra["generation"]) if record.extra.get("generation") else None
        return storage.storage().read_range(record.input_uri, 0, SAMPLE_BYTES, generation)
    except Exception:  # noqa: BLE001 - only an estimate: without it, the size says enough
        return None


def object_of(record: JobRecord) -> UploadedObject:
    e = record.extra
    return UploadedObject(e.get("bucket", ""), e.get("name", ""), int(e.get("generation", 0)), int(e.get("size", 0)))


def build_upload_sensor(jobs: list, *, small_job_prompts: int, max_retries: int, listing_interval_s: float,
                        minimum_interval_seconds: int = 5, run_config_for=None, k8s: bool = True) -> dg.SensorDefinition:
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
        observed = []  # each new upload, on the external "uploads" asset (the lineage of every job)
        if now - float(doc.get("listed_at", 0.0)) >= listing_interval_s:
            objects, doc = new_since(list_uploads(storage, now), doc, creation_ordered=storage.is_gcs)
            for rec in record_objects(registry, storage, objects, now):  # the fallback for missed events
                if rec.status == "rejected":  # said once, not on every tick
                    context.log.warning(f"not starting a run for {rec.input_uri}: {rec.message}")
                observed.append(dg.AssetObservation(asset_key="uploads", metadata={
                    "uri": rec.input_uri, "generation": str(rec.extra.get("generation", "")),
                    "size_bytes": int(rec.extra.get("size", 0)), "job": rec.job_id, "status": rec.status,
                    **({"reason": rec.message} if rec.status == "rejected" and rec.message else {})}))
            doc["listed_at"] = now
        requests, new_keys = [], []
        requested = set(doc["requested"])
        before = None
        for _ in range(MAX_QUEUED_PAGES):
            page = registry.list(status="queued", limit=QUEUED_PAGE, newest_first=True, before=before)
            for rec in page:
                if rec.job_id in requested or len(requests) >= MAX_REQUESTS:
                    continue
                plan = plan_run(object_of(rec), small_job_prompts=small_job_prompts, max_retries=max_retries,
                                head=_head(storage, rec), k8s=k8s)
                if not context.instance.has_dynamic_partition(jobs_partitions.name, rec.job_id):
                    new_keys.append(rec.job_id)
                requests.append(dg.RunRequest(run_key=rec.job_id, partition_key=rec.job_id,
                                              job_name=plan.job_name, tags=plan.tags,
                                              run_config=(run_config_for(plan) if run_config_for else None) or {}))
            if len(page) < QUEUED_PAGE or len(requests) >= MAX_REQUESTS:
                break
            before = page_key(page[-1])
        return dg.SensorResult(
            run_requests=requests,
            asset_events=observed,
            dynamic_partitions_requests=[jobs_partitions.build_add_request(new_keys)] if new_keys else [],
            cursor=advance_cursor(doc, [r.run_key for r in requests]),
            skip_reason=None if requests or observed else dg.SkipReason("no new uploads"),  # not "0 runs requested"
        )

    return upload_sensor
