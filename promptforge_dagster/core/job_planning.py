"""Pure planning for the sensors and schedules: uploaded object -> job -> run request.

Nothing here talks to Dagster, GCS or the registry; the sensors feed it what they read
and turn its plans into ``RunRequest`` objects. Keys are idempotent: one object
generation is one job, whatever number of events or sensor ticks report it.

>>> obj = UploadedObject("my-bucket", "in/batch.jsonl", generation=17, size=50_000)
>>> job_key(obj)
'batch.jsonl#17@my-bucket/in/'
>>> plan = plan_run(obj, small_job_prompts=1000)
>>> plan.job_name, plan.estimated_prompts
('promptforge_small_job', 166)
>>> rejection_reason(UploadedObject("b", "in/data.csv", 1, 10))
'not a JSONL file: in/data.csv (PromptForge takes .jsonl or .jsonl.gz, one prompt per line)'
"""

from __future__ import annotations

import json
import unicodedata
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
    """``file#generation@bucket/folder/``: the job id, the partition key and the run key.

    The file's own name leads and its place ends it, because Dagster's UI cuts long
    partition keys in the middle: ``batch-2026-11.jsonl#17000…@my-bucket/inputs/`` still
    says which file and where. One-to-one with (bucket, object, generation): the file
    name holds no ``/``, a generation only digits, the bucket's ``@`` and ``/`` (a local
    bucket is a folder's name) are escaped, and ``_key_part`` escapes without losing anything.

    >>> job_key(UploadedObject("my-bucket", "inputs/team a/batch.jsonl", generation=17, size=1))
    'batch.jsonl#17@my-bucket/inputs/team a/'
    >>> job_key(UploadedObject("b", "top.jsonl", generation=5, size=1))
    'top.jsonl#5@b/'
    """
    folder, _, file = obj.name.rpartition("/")
    place = f"{_key_part(obj.bucket, also='@/')}/{_key_part(folder + '/' if folder else '')}"
    return f"{_key_part(file)}#{obj.generation}@{place}"


# Control (C0, C1), format (bidi overrides, zero-width), surrogate, private-use and line/paragraph
# separator characters: none belongs in a name a person reads in a log, a key or a UI. A
# partition key must not hold them nor what Dagster reserves ("..." selects a range of
# partitions in its UI): those are %-escaped there, as is "%" itself.
UNREADABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def _key_part(text: str, also: str = "") -> str:
    """``text`` for a key: ``%``, unreadable characters, every ``.`` that follows a ``.``
    and the characters in ``also`` become ``%XX`` (UTF-8 bytes), so no key holds ``...``;
    reversible by unquoting.

    >>> _key_part("a...b%.jsonl"), _key_part("x\u202ey")
    ('a.%2E%2Eb%25.jsonl', 'x%E2%80%AEy')
    """
    out = []
    previous = ""
    for c in text:
        if c == "%" or c in also or unicodedata.category(c) in UNREADABLE_CATEGORIES or (c == "." and previous == "."):
            out.extend(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        else:
            out.append(c)
        previous = c
    return "".join(out)


_NAME_KEEP = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")


def output_name(obj: UploadedObject) -> str:
    """A folder name for a job's output: readable, and one-to-one with the object and
    generation (``/`` becomes ``__``; every other byte outside ``[A-Za-z0-9.-]``,
    ``_`` included, becomes ``_XX``), so two objects never share an output folder.

    >>> output_name(UploadedObject("b", "in/batch 1.jsonl", 17, 1)), output_name(UploadedObject("b", "in/batch_1.jsonl", 17, 1))
    ('in__batch_201.jsonl@17', 'in__batch_5F1.jsonl@17')
    """
    out = []
    for c in obj.name:
        if c == "/":
            out.append("__")
        elif c in _NAME_KEEP:
            out.append(c)
        else:
            out.extend(f"_{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
    return f"{''.join(out)}@{obj.generation}"


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


SAMPLE_BYTES = 64 * 1024  # the head of an upload read to count its lines: one small range read per job


def estimate_prompts(size: int, head: bytes | None = None) -> int:
    r"""Prompts in an upload of ``size`` bytes: its lines counted when ``head`` (its first
    bytes) is the whole file, else the lines of the head scaled to the size; without a
    head (or gzip) from a typical line length.

    >>> estimate_prompts(25, b'{"id": 1}\n{"id": 2}\n{"id":3}'), estimate_prompts(20_000, b'{"id": 1, "p": "x"}\n' * 10)
    (3, 1000)
    >>> estimate_prompts(3000)
    10
    """
    if head and not head.startswith(b"\x1f\x8b"):  # gzip: the head says nothing about line lengths
        lines = head.count(b"\n")
        if len(head) >= size:
            return max(1, lines + (0 if head.endswith(b"\n") else 1))
        if lines:
            return max(1, round(size * lines / len(head)))
    return max(1, size // BYTES_PER_PROMPT)


# A step pod's local disk: logs and bytecode caches only (publish streams to GCS). GKE
# Autopilot's default request is 1Gi; the limit leaves room for verbose debug logs.
POD_EPHEMERAL_STORAGE = "1Gi"
POD_EPHEMERAL_STORAGE_LIMIT = "2Gi"


def pod_resources(estimated_prompts: int) -> dict[str, dict[str, str]]:
    """CPU and memory for a dedicated pod. Memory does not grow with the job (the engine
    streams); CPU does, because LiteLLM costs about 3.5 ms of CPU per request.

    Disk does not grow either: results are published by a streamed upload, never staged
    locally; the ephemeral storage covers logs and Python's caches.

    >>> pod_resources(5_000_000)["requests"]
    {'cpu': '2', 'memory': '1Gi', 'ephemeral-storage': '1Gi'}
    """
    cpu = "500m" if estimated_prompts < 50_000 else "1" if estimated_prompts < 1_000_000 else "2"
    return {"requests": {"cpu": cpu, "memory": "1Gi", "ephemeral-storage": POD_EPHEMERAL_STORAGE},
            "limits": {"cpu": cpu, "memory": "2Gi", "ephemeral-storage": POD_EPHEMERAL_STORAGE_LIMIT}}


@dataclass(frozen=True)
class RunPlan:
    """How the sensor asks Dagster for a job's run (the run key and partition are the job id)."""

    job_name: str
    estimated_prompts: int
    tags: dict[str, str] = field(default_factory=dict)
    step_resources: dict[str, dict[str, str]] | None = None  # the dedicated step pod's, for large jobs


def _tail(text: str, limit: int = 63) -> str:
    """The end of ``text`` within ``limit`` characters: a file name's end says most.

    >>> _tail("prompts.jsonl"), _tail("x" * 70 + ".jsonl")[-8:], len(_tail("x" * 70 + ".jsonl"))
    ('prompts.jsonl', 'xx.jsonl', 63)
    """
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def plan_run(obj: UploadedObject, *, small_job_prompts: int = 1000, max_retries: int = 3,
             extra_tags: dict[str, str] | None = None, head: bytes | None = None, k8s: bool = True) -> RunPlan:
    """Small jobs share the run worker (no dedicated pod); large ones get their own.
    ``head``: the upload's first bytes, to count its lines; ``k8s``: runs go to Kubernetes
    (a local deployment gets no pod-sizing tag)."""
    key = job_key(obj)
    n = estimate_prompts(obj.size, head)
    small = n < small_job_prompts
    tags = {
        "dagster/max_retries": str(max_retries),
        "dagster/retry_strategy": "ALL_STEPS",
        "promptforge/job": key if len(key) <= 63 else key[:40] + "…",
        # the file's own name, readable in the runs list (partition keys are cut in the middle there)
        "promptforge/file": _tail(obj.name.rsplit("/", 1)[-1]),
        "promptforge/size_class": "small" if small else "large",
        "promptforge/estimated_prompts": str(n),
        **(extra_tags or {}),
    }
    if small and k8s:
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


# The watchdog counts a lease as expired only this long after its expiry time: the
# writer's and the reader's clocks may disagree by this much (NTP keeps GKE nodes far closer).
CLOCK_SKEW_S = 30.0


@dataclass(frozen=True)
class Owner:
    """Who holds a lease: ``host[/boot]:worker_pid[@start]:step_pid:run_id``."""

    host: str | None
    boot: str | None
    worker_pid: int | None
    worker_start: int | None
    step_pid: int | None
    run_id: str | None


def format_owner(host: str, boot: str, worker_pid: int, worker_start: int | None, step_pid: int,
                 run_id: str) -> str:
    """
    >>> format_owner("node-1", "ab12cd34", 40, 9123, 41, "run-9")
    'node-1/ab12cd34:40@9123:41:run-9'
    """
    worker = f"{worker_pid}@{worker_start}" if worker_start is not None else str(worker_pid)
    return f"{host}/{boot}:{worker}:{step_pid}:{run_id}" if boot else f"{host}:{worker}:{step_pid}:{run_id}"


def parse_owner(owner: str | None) -> Owner:
    """An owner string -> its parts (None where absent; older strings lack boot and start).

    >>> parse_owner("h/b00t:1@77:2:abc")
    Owner(host='h', boot='b00t', worker_pid=1, worker_start=77, step_pid=2, run_id='abc')
    >>> parse_owner("laptop:42").worker_pid, parse_owner("laptop:42").run_id
    (42, None)
    """
    host, worker, step, run_id = ((owner or "").split(":", 3) + ["", "", "", ""])[:4]
    host, _, boot = host.partition("/")
    pid_text, _, start_text = worker.partition("@")

    def num(text: str) -> int | None:
        return int(text) if text.isdigit() else None

    return Owner(host or None, boot or None, num(pid_text), num(start_text), num(step), run_id or None)


def find_stale_jobs(running: Iterable[Any], now: float, *, this_host: str, this_boot: str = "",
                    process_start: Any = lambda pid: None, skew_s: float = CLOCK_SKEW_S) -> list[StaleJob]:
    """Jobs marked running whose lease expired (by more than the clock skew allowed), or
    whose run worker, on this very host (same name *and* boot), is gone: no process with
    its pid, or one that started at another time (the pid was recycled).
    ``process_start(pid)`` -> the start ticks of a live pid, None when there is none.

    >>> from promptforge_dagster.core.job_registry import JobRecord
    >>> r = JobRecord("k", "in", "out", status="running", owner="h1/b1:999@5:1000:run-1", lease_expires_at=50.0)
    >>> [s.reason for s in find_stale_jobs([r], 10.0, this_host="h1", this_boot="b1", process_start=lambda p: None)]
    ['run worker 999 on h1 is gone']
    >>> find_stale_jobs([r], 10.0, this_host="h1", this_boot="b1", process_start=lambda p: 5)
    []
    >>> [s.reason for s in find_stale_jobs([r], 10.0, this_host="h1", this_boot="b1", process_start=lambda p: 6)]
    ['run worker 999 on h1 is gone (its pid now belongs to another process)']
    >>> find_stale_jobs([r], 10.0, this_host="h1", this_boot="OTHER", process_start=lambda p: None)
    []
    >>> find_stale_jobs([r], 70.0, this_host="h2", process_start=lambda p: 5)
    []
    >>> [s.reason for s in find_stale_jobs([r], 90.0, this_host="h2", process_start=lambda p: 5)]
    ['lease expired 40 s ago']
    """
    out = []
    for rec in running:
        if rec.status != "running":
            continue
        who = parse_owner(rec.owner)
        same_host = who.host == this_host and (who.boot is None or not this_boot or who.boot == this_boot)
        if rec.lease_expires_at and rec.lease_expires_at + skew_s < now:
            out.append(StaleJob(rec.job_id, f"lease expired {now - rec.lease_expires_at:.0f} s ago", who.run_id))
        elif same_host and who.worker_pid:
            started = process_start(who.worker_pid)
            if started is None:
                out.append(StaleJob(rec.job_id, f"run worker {who.worker_pid} on {who.host} is gone", who.run_id))
            elif who.worker_start is not None and started != who.worker_start:
                out.append(StaleJob(rec.job_id, f"run worker {who.worker_pid} on {who.host} is gone "
                                                "(its pid now belongs to another process)", who.run_id))
    return out


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
