"""upload_sensor: each uploaded object generation becomes exactly one job and one run
(run key bucket/object#generation): repeated ticks and duplicate listings start nothing
new, a re-upload (new generation) is a new job, non-JSONL objects get a registry status
with a reason instead of a run, small jobs go to the shared pool and large ones get a
dedicated pod sized by their size."""

import json
import os
import time

import dagster as dg
from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.core.job_planning import LARGE_JOB, SMALL_JOB
from promptforge_dagster.definitions import build_definitions
from promptforge_dagster.deployment import deployment_from_env
from promptforge_dagster.resources import JobRegistryResource, StorageResource


def setup(tmp_path):
    d = deployment_from_env({"PROMPTFORGE_HOME": str(tmp_path)})
    defs = build_definitions(d)
    sensor = defs.get_repository_def().get_sensor_def("upload_sensor")
    resources = {"storage": StorageResource(root=d.bucket_root), "job_registry": JobRegistryResource(uri=d.registry_uri)}
    inputs = os.path.join(d.bucket_root, "inputs")
    os.makedirs(inputs, exist_ok=True)
    return d, sensor, resources, inputs


def tick(sensor, instance, resources, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = sensor(ctx)
    for req in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    return result


def settled(path, seconds_ago=10.0):
    """As if the upload finished a while ago (local files are taken once they stop changing)."""
    t = int((time.time() - seconds_ago) * 1e9)
    os.utime(path, ns=(t, t))


def write(path, n_lines, line_bytes=300):
    with open(path, "w") as f:
        for i in range(n_lines):
            body = {"id": f"r{i}", "prompt": "x" * max(1, line_bytes - 30)}
            f.write(json.dumps(body) + "\n")
    settled(path)


def test_one_run_per_object_generation_routed_by_size(tmp_path):
    d, sensor, resources, inputs = setup(tmp_path)
    write(os.path.join(inputs, "small.jsonl"), 20)
    write(os.path.join(inputs, "large.jsonl"), 5000)
    with open(os.path.join(inputs, "notes.csv"), "w") as f:
        f.write("a,b\n1,2\n")
    settled(os.path.join(inputs, "notes.csv"))
    with dg.DagsterInstance.ephemeral() as instance:
        first = tick(sensor, instance, resources)
        by_name = {r.partition_key.split("#")[0]: r for r in first.run_requests}  # the file's name leads the key
        assert set(by_name) == {"small.jsonl", "large.jsonl"}
        small, large = by_name["small.jsonl"], by_name["large.jsonl"]
        assert small.partition_key.endswith("@bucket/inputs/")  # the place ends it
        assert small.job_name == SMALL_JOB and small.run_config == {}
        assert large.job_name == LARGE_JOB
        assert "dagster-k8s/config" not in small.tags and "dagster-k8s/config" not in large.tags  # local: no pods
        assert small.tags["promptforge/file"] == "small.jsonl"  # the file's name, whole, in the runs list
        assert small.tags["promptforge/estimated_prompts"] == "20"  # a whole small file: its lines counted
        assert abs(int(large.tags["promptforge/estimated_prompts"]) - 5000) <= 50  # lines of its head, scaled
        assert small.tags["dagster/max_retries"] == str(d.max_retries)
        for r in first.run_requests:
            assert r.run_key == r.partition_key and r.run_key.split("#", 1)[1].split("@")[0].isdigit()
            assert instance.has_dynamic_partition("promptforge_jobs", r.partition_key)

        registry = SQLiteRegistry(d.registry_uri[len("sqlite://"):])
        rejected = registry.list(status="rejected")
        assert len(rejected) == 1 and "not a JSONL file: inputs/notes.csv" in rejected[0].message
        seen = {e.metadata["uri"].value.rsplit("/", 1)[1]: e for e in first.asset_events}  # on the "uploads" asset
        assert set(seen) == {"small.jsonl", "large.jsonl", "notes.csv"}
        assert all(e.asset_key == dg.AssetKey("uploads") for e in first.asset_events)
        assert "not a JSONL file" in seen["notes.csv"].metadata["reason"].value

        again = tick(sensor, instance, resources, cursor=first.cursor)
        assert again.run_requests == []  # duplicate listing: nothing new

        settled(os.path.join(inputs, "small.jsonl"), seconds_ago=5.0)  # a new generation
        third = tick(sensor, instance, resources, cursor=again.cursor)
        assert [r.partition_key.split("#")[0] for r in third.run_requests] == [small.partition_key.split("#")[0]]
        assert third.run_requests[0].run_key != small.run_key


def test_jobs_recorded_by_the_receiver_start_runs_too(tmp_path):
    """The registry is the primary source: a queued record starts a run with no listing."""
    from promptforge_dagster.core.job_registry import JobRecord

    d, sensor, resources, inputs = setup(tmp_path)
    registry = SQLiteRegistry(d.registry_uri[len("sqlite://"):])
    key = "from-event.jsonl#42@local-bucket/inputs/"
    registry.create(JobRecord(key, os.path.join(d.bucket_root, "inputs/from-event.jsonl"), "out", created_at=1.0,
                              extra={"bucket": "local-bucket", "name": "inputs/from-event.jsonl", "generation": 42,
                                     "size": 1000}))
    with dg.DagsterInstance.ephemeral() as instance:
        result = tick(sensor, instance, resources)
    assert [r.run_key for r in result.run_requests] == [key]


def test_objects_under_the_output_prefix_never_become_jobs(tmp_path):
    """Should the input prefix ever hold the output prefix, results are still not inputs."""
    from promptforge_dagster.sensors.upload_sensor import list_uploads

    storage = StorageResource(root=str(tmp_path / "bucket"), input_prefix="data/", output_prefix="data/out/")
    for name in ("data/a.jsonl", "data/out/x@1/results.jsonl", "data/out/x@1/parts/g1/e1-000001.part.jsonl"):
        path = tmp_path / "bucket" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"id": 1, "prompt": "p"}\n')
    assert [obj.name for obj in list_uploads(storage, now=time.time() + 60)] == ["data/a.jsonl"]


def test_a_tick_over_twenty_thousand_objects_reads_the_registry_in_batches(tmp_path, monkeypatch):
    """20,000 objects in the input prefix: the listing fallback reads the registry in
    batches (no per-object read), and queued jobs are requested page by page so the
    jobs already requested never block new ones."""
    d, sensor, resources, inputs = setup(tmp_path)
    line = b'{"id": "a", "prompt": "p"}\n'
    for i in range(20_000):
        with open(os.path.join(inputs, f"job-{i:05d}.jsonl"), "wb") as f:
            f.write(line)
        settled(os.path.join(inputs, f"job-{i:05d}.jsonl"))
    calls = {"get": 0, "get_many": 0, "create": 0}
    for name in calls:
        real = getattr(SQLiteRegistry, name)

        def counted(self, *a, _real=real, _name=name, **kw):
            calls[_name] += 1
            return _real(self, *a, **kw)

        monkeypatch.setattr(SQLiteRegistry, name, counted)
    with dg.DagsterInstance.ephemeral() as instance:
        first = tick(sensor, instance, resources)
        assert calls["get"] == 0 and calls["get_many"] == 1 and calls["create"] == 20_000
        keys = {r.run_key for r in first.run_requests}
        cursor = first.cursor
        for _ in range(2):
            nxt = tick(sensor, instance, resources, cursor=cursor)
            new = {r.run_key for r in nxt.run_requests}
            assert new and not (new & keys)  # the next jobs, never the ones already requested
            keys |= new
            cursor = nxt.cursor
        assert calls["get"] == 0 and calls["create"] == 20_000  # later ticks create nothing, read no record alone
    assert len(keys) == 3 * 500


def test_a_local_file_still_being_written_is_one_job_once_it_stops_changing(tmp_path):
    d, sensor, resources, inputs = setup(tmp_path)
    path = os.path.join(inputs, "slow-copy.jsonl")
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = None
        for chunk in range(3):  # a slow copy: the file grows between ticks
            with open(path, "a") as f:
                f.write(json.dumps({"id": f"r{chunk}", "prompt": "p"}) + "\n")
            result = tick(sensor, instance, resources, cursor=cursor)
            assert result.run_requests == []  # still changing: not a job yet
            cursor = result.cursor
        settled(path)
        done = tick(sensor, instance, resources, cursor=cursor)
        assert len(done.run_requests) == 1
        assert tick(sensor, instance, resources, cursor=done.cursor).run_requests == []


def test_on_kubernetes_a_small_jobs_run_worker_is_sized_by_its_tag():
    from promptforge_dagster.core.job_planning import UploadedObject, plan_run

    plan = plan_run(UploadedObject("b", "in/x.jsonl", 1, 5800), head=b'{"id": 1, "prompt": "short"}\n' * 200)
    assert plan.estimated_prompts == 200 and plan.job_name == SMALL_JOB
    k8s = json.loads(plan.tags["dagster-k8s/config"])  # the run worker does a small job's work
    assert k8s["container_config"]["resources"]["requests"]["cpu"] == "500m"
    assert "dagster-k8s/config" not in plan_run(UploadedObject("b", "in/x.jsonl", 1, 6000), k8s=False).tags
