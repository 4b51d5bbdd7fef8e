"""Pure planning for the sensors and schedules: uploaded object -> job -> run request.

Nothing here talks to Dagster, GCS or the registry; the sensors feed it what they read
and turn its plans into ``RunRequest`` objects. Keys are idempotent: one object
generation is one job, whatever number of events or sensor ticks report it.

>>> obj = UploadedObject("my-bucket", "in/batch.jsonl", generation=17, size=50_000)
>>> job_key(obj)
'my-bucket/in/batch.jsonl#17'
>>> plan = plan_run(obj, small_job_prompts=1000)
>>> plan.job_name, plan.estimated_prompts
('promptforge_small_job', 166)
>>> rejection_reason(UploadedObject("b", "in/data.csv", 1, 10))
'not a JSONL file: in/data.csv (PromptForge takes .jsonl or .jsonl.gz, one prompt per line)'
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

SMALL_JOB = "promptforge_small_job"
LARGE_JOB = "promptforge_large_job"
BYTES_PER_PROMPT = 300  # a typical Batch API line; only used to route and size, never to count
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class UploadedObject:
    """An object in the input bucket, as an event or a listing reports it."""

    bucket: str
    name: str
    generation: int
    size: int

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


def job_key(obj: UploadedObject) -> str:
    """``bucket/object#generation``: the job id, the partition key and the run key."""
    return f"{obj.bucket}/{obj.name}#{obj.generation}"


_NAME_KEEP = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")


def output_name(key: str) -> str:
    """A folder name for a job's output: readable, and one-to-one with the object and
    generation (``/`` becomes ``__``; every other byte outside ``[A-Za-z0-9.-]``,
    ``_`` included, becomes ``_XX``), so two objects never share an output folder.

    >>> output_name("b/in/batch 1.jsonl#17"), output_name("b/in/batch_1.jsonl#17")
    ('in__batch_201.jsonl@17', 'in__batch_5F1.jsonl@17')
    """
    path, _, generation = key.partition("/")[2].rpartition("#")
    out = []
    for c in path:
        if c == "/":
            out.append("__")
        elif c in _NAME_KEEP:
            out.append(c)
        else:
            out.extend(f"_{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
    return f"{''.join(out)}@{generation}"


def prefixes_overlap(a: str, b: str) -> bool:
    """Whether two object prefixes in one bucket share objects (one holds the other).

    >>> prefixes_overlap("inputs/", "outputs/"), prefixes_overlap("data/", "data/out/"), prefixes_overlap("", "x/")
    (False, True, True)
    """
    a, b = a.lstrip("/"), b.lstrip("/")
    a, b = (a if not a or a.endswith("/") else a + "/"), (b if not b or b.endswith("/") else b + "/")
    return a.startswith(b) or b.startswith(a)


def rejection_reason(obj: UploadedObject) -> str | None:
    """Why an object is not a job, or None when it is one."""
    if obj.name.endswith("/"):
        return f"a folder marker, not a file: {obj.name}"
    if not obj.name.endswith(JSONL_SUFFIXES):
        return (f"not a JSONL file: {obj.name} (PromptForge takes .jsonl or .jsonl.gz, one prompt per line)")
    return None


def estimate_prompts(size: int) -> int:
    return max(1, size // BYTES_PER_PROMPT)


def pod_resources(estimated_prompts: int) -> dict[str, dict[str, str]]:
    """CPU and memory for a dedicated pod. Memory does not grow with the job (the engine
    streams); CPU does, because LiteLLM costs about 3.5 ms of CPU per request.

    >>> pod_resources(5_000_000)["requests"]
    {'cpu': '2', 'memory': '1Gi'}
    """
    cpu = "500m" if estimated_prompts < 50_000 else "1" if estimated_prompts < 1_000_000 else "2"
    return {"requests": {"cpu": cpu, "memory": "1Gi"}, "limits": {"cpu": cpu, "memory": "2Gi"}}


@dataclass(frozen=True)
class RunPlan:
    """How the sensor asks Dagster for a job's run (the run key and partition are the job id)."""

    job_name: str
    estimated_prompts: int
    tags: dict[str, str] = field(default_factory=dict)
    step_resources: dict[str, dict[str, str]] | None = None  # the dedicated step pod's, for large jobs


def plan_run(obj: UploadedObject, *, small_job_prompts: int = 1000, max_retries: int = 3,
             extra_tags: dict[str, str] | None = None) -> RunPlan:
    """Small jobs share the run worker (no dedicated pod); large ones get their own."""
    key = job_key(obj)
    n = estimate_prompts(obj.size)
    small = n < small_job_prompts
    tags = {
        "dagster/max_retries": str(max_retries),
        "dagster/retry_strategy": "ALL_STEPS",
        "promptforge/job": key if len(key) <= 63 else key[:40] + "…",
        "promptforge/size_class": "small" if small else "large",
        "promptforge/estimated_prompts": str(n),
        **(extra_tags or {}),
    }
    if small:
        # the run worker does the work: size its pod (K8sRunLauncher reads this tag)
        tags["dagster-k8s/config"] = json.dumps({"container_config": {"resources": pod_resources(n)}})
    return RunPlan(job_name=SMALL_JOB if small else LARGE_JOB, estimated_prompts=n, tags=tags,
                   step_resources=None if small else pod_resources(n))


def plan_cursor(cursor: str | None) -> dict[str, Any]:
    """The sensor's cursor: job keys already requested (bounded), as JSON."""
    if not cursor:
        return {"requested": []}
    try:
        doc = json.loads(cursor)
    except json.JSONDecodeError:
        return {"requested": []}
    return doc if isinstance(doc, dict) and isinstance(doc.get("requested"), list) else {"requested": []}


def advance_cursor(doc: dict[str, Any], requested: Iterable[str], keep: int = 2000) -> str:
    """Append newly requested keys; keep the newest ``keep`` (run keys dedupe the rest).

    >>> advance_cursor({"requested": ["a"]}, ["b", "c"], keep=2)
    '{"requested": ["b", "c"]}'
    """
    keys = list(doc.get("requested", [])) + [k for k in requested if k not in doc.get("requested", [])]
    return json.dumps({**{k: v for k, v in doc.items() if k != "requested"}, "requested": keys[-keep:]})


@dataclass(frozen=True)
class StaleJob:
    """A job the registry says is running whose owner is gone."""

    job_id: str
    reason: str
    run_id: str | None = None  # the run that owned it: only that run is stale, not a retry already started


def find_stale_jobs(running: Iterable[Any], now: float, *, this_host: str,
                    pid_alive: Any) -> list[StaleJob]:
    """Jobs marked running whose lease expired, or (same host) whose run worker process
    is dead. ``running`` holds JobRecords; ``pid_alive(pid) -> bool``; owner strings are
    ``host:run_worker_pid:step_pid:run_id``.

    >>> from promptforge_dagster.core.job_registry import JobRecord
    >>> r = JobRecord("k", "in", "out", status="running", owner="h1:999:1000:run-1", lease_expires_at=50.0)
    >>> [s.reason for s in find_stale_jobs([r], 10.0, this_host="h1", pid_alive=lambda pid: False)]
    ['run worker 999 on h1 is gone']
    >>> [s.reason for s in find_stale_jobs([r], 60.0, this_host="h2", pid_alive=lambda pid: True)]
    ['lease expired 10 s ago']
    """
    out = []
    for rec in running:
        if rec.status != "running":
            continue
        host, worker_pid, _step_pid, run_id = parse_owner(rec.owner)
        if rec.lease_expires_at and rec.lease_expires_at < now:
            out.append(StaleJob(rec.job_id, f"lease expired {now - rec.lease_expires_at:.0f} s ago", run_id))
        elif host == this_host and worker_pid and not pid_alive(worker_pid):
            out.append(StaleJob(rec.job_id, f"run worker {worker_pid} on {host} is gone", run_id))
    return out


def parse_owner(owner: str | None) -> tuple[str | None, int | None, int | None, str | None]:
    """``host:run_worker_pid:step_pid:run_id`` -> its parts (None where absent).

    >>> parse_owner("h:1:2:abc"), parse_owner("laptop:42")
    (('h', 1, 2, 'abc'), ('laptop', 42, None, None))
    """
    host, worker, step, run_id = ((owner or "").split(":", 3) + ["", "", "", ""])[:4]

    def pid(text: str) -> int | None:
        return int(text) if text.isdigit() else None

    return host or None, pid(worker), pid(step), run_id or None


def job_record_for(obj: UploadedObject, *, input_uri: str, output_uri: str, now: float,
                   event_id: str | None = None) -> Any:
    """The registry record of an uploaded object: ``queued``, or ``rejected`` with the reason.

    >>> job_record_for(UploadedObject("b", "in/x.csv", 3, 10), input_uri="gs://b/in/x.csv",
    ...                output_uri="gs://b/out/x", now=1.0).status
    'rejected'
    """
    from promptforge_dagster.core.job_registry import JobRecord

    reason = rejection_reason(obj)
    extra: dict[str, Any] = {"bucket": obj.bucket, "name": obj.name, "generation": obj.generation, "size": obj.size}
    if event_id:
        extra["event_id"] = event_id
    return JobRecord(job_id=job_key(obj), input_uri=input_uri, output_uri=output_uri,
                     status="rejected" if reason else "queued", message=reason, created_at=now, updated_at=now,
                     extra=extra)
