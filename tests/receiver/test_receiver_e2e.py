"""With real parts on loopback: the receiver process, the Firestore emulator and
fake-gcs-server. An object uploaded to the bucket and a CloudEvent shaped exactly like
Eventarc's become one job in Firestore, which upload_sensor turns into a run request
with the idempotent run key bucket/object#generation."""

import json
import os
import subprocess
import sys
import time
import urllib.request

import dagster as dg
from promptforge_dagster.clients.firestore_registry import FirestoreRegistry, firestore_client
from promptforge_dagster.core.storage_event import FINALIZED, SOURCE_PREFIX
from promptforge_dagster.definitions import build_definitions
from promptforge_dagster.deployment import deployment_from_env
from promptforge_dagster.resources import JobRegistryResource, StorageResource
from tests.conftest import ROOT, free_port, stop


def post(url, headers, body):
    req = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_eventarc_event_to_job_to_run_request(firestore_env, gcs_env, gcs_bucket, tmp_path):
    project = firestore_env
    blob = gcs_env.bucket(gcs_bucket).blob("inputs/batch.jsonl")
    blob.upload_from_string("".join(json.dumps({"id": f"r{i}", "prompt": "p"}) + "\n" for i in range(50)))
    blob.reload()
    port = free_port()
    env = {**os.environ, "PROMPTFORGE_INPUT_BUCKET": gcs_bucket, "PROMPTFORGE_REGISTRY": f"firestore://{project}",
           "RECEIVER_INSECURE": "1"}  # OIDC is tested in test_oidc.py; here the path to a run request
    proc = subprocess.Popen([sys.executable, "-m", "promptforge_dagster.receiver", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        first = proc.stdout.readline()
        assert "NOT verified" in first  # an insecure receiver says so, loudly, first
        assert proc.stdout.readline().startswith("listening on"), "receiver did not start"
        headers = {"ce-id": "4242", "ce-type": FINALIZED, "ce-specversion": "1.0",
                   "ce-source": SOURCE_PREFIX + gcs_bucket, "ce-subject": "objects/inputs/batch.jsonl",
                   "ce-time": "2026-11-27T12:00:00.000Z", "content-type": "application/json; charset=utf-8"}
        body = json.dumps({"kind": "storage#object", "id": f"{gcs_bucket}/inputs/batch.jsonl/{blob.generation}",
                           "bucket": gcs_bucket, "name": "inputs/batch.jsonl", "generation": str(blob.generation),
                           "metageneration": "1", "contentType": "application/jsonl", "size": str(blob.size),
                           "timeCreated": "2026-11-27T12:00:00.000Z", "storageClass": "STANDARD"})
        t0 = time.monotonic()
        status, doc = post(f"http://127.0.0.1:{port}/", headers, body)
        answered_s = time.monotonic() - t0
        assert status == 201, doc
        assert post(f"http://127.0.0.1:{port}/", headers, body)[0] == 200  # redelivery: no second job
        assert answered_s < 2.0
    finally:
        stop(proc)

    key = f"batch.jsonl#{blob.generation}@{gcs_bucket}/inputs/"
    registry = FirestoreRegistry(firestore_client(project))
    rec = registry.get(key)
    assert rec.status == "queued" and rec.input_uri == f"gs://{gcs_bucket}/inputs/batch.jsonl"

    d = deployment_from_env({"PROMPTFORGE_DEPLOYMENT": "gke", "PROMPTFORGE_OUTPUT_BUCKET": gcs_bucket,
                             "PROMPTFORGE_PROJECT": project})
    sensor = build_definitions(d).get_repository_def().get_sensor_def("upload_sensor")
    resources = {"storage": StorageResource(root=f"gs://{gcs_bucket}"),
                 "job_registry": JobRegistryResource(uri=f"firestore://{project}")}
    with dg.DagsterInstance.ephemeral() as instance:
        result = sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert [r.run_key for r in result.run_requests] == [key]
    assert registry.get(key).status == "queued"  # the listing found the same object: still one job
    assert len(registry.list()) == 1
