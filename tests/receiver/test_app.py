"""The receiver turns each Eventarc storage event (binary or structured mode) into one job
record, idempotently (a redelivered event changes nothing); a malformed event gets a 400
naming the problem; another bucket or prefix is ignored with a 200; a non-JSONL object
is recorded as rejected with its reason. (OIDC verification: test_oidc.py.)"""

import asyncio
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.core.storage_event import FINALIZED, SOURCE_PREFIX
from promptforge_dagster.receiver.app import ReceiverConfig, make_app

BUCKET = "pf-inputs"


def binary(name="inputs/batch.jsonl", generation=1700000000123, bucket=BUCKET, event_id="ev-1", **over):
    headers = {"ce-id": event_id, "ce-type": FINALIZED, "ce-specversion": "1.0", "ce-source": SOURCE_PREFIX + bucket,
               "ce-subject": f"objects/{name}", "content-type": "application/json", **over}
    body = {"kind": "storage#object", "bucket": bucket, "name": name, "generation": str(generation),
            "size": "4096", "contentType": "application/jsonl", "timeCreated": "2026-11-27T12:00:00.000Z"}
    return headers, json.dumps(body)


def structured(name="inputs/batch.jsonl", generation=1700000000123):
    doc = {"specversion": "1.0", "id": "ev-2", "type": FINALIZED, "source": SOURCE_PREFIX + BUCKET,
           "subject": f"objects/{name}", "time": "2026-11-27T12:00:00Z", "datacontenttype": "application/json",
           "data": {"bucket": BUCKET, "name": name, "generation": str(generation), "size": "10"}}
    return {"content-type": "application/cloudevents+json; charset=utf-8"}, json.dumps(doc)


def run(app, requests):
    async def go():
        async with TestClient(TestServer(app)) as client:
            out = []
            for headers, body in requests:
                resp = await client.post("/", headers=headers, data=body)
                out.append((resp.status, await resp.json()))
            return out

    return asyncio.run(go())


@pytest.fixture
def registry(tmp_path):
    return SQLiteRegistry(str(tmp_path / "registry.sqlite3"))


def test_binary_and_structured_events_record_one_job_each_idempotently(registry):
    app = make_app(ReceiverConfig(BUCKET), registry, insecure=True)
    results = run(app, [binary(), binary(event_id="ev-1-again"), structured(name="inputs/other.jsonl")])
    assert [r[0] for r in results] == [201, 200, 201]
    assert results[1][1]["created"] is False
    jobs = {r.job_id: r for r in registry.list()}
    key = f"batch.jsonl#1700000000123@{BUCKET}/inputs/"
    assert set(jobs) == {key, f"other.jsonl#1700000000123@{BUCKET}/inputs/"}
    rec = jobs[key]
    assert rec.status == "queued" and rec.input_uri == f"gs://{BUCKET}/inputs/batch.jsonl"
    assert rec.output_uri == f"gs://{BUCKET}/outputs/inputs__batch.jsonl@1700000000123"
    assert rec.extra["event_id"] == "ev-1" and rec.extra["size"] == 4096


def test_a_new_generation_is_a_new_job(registry):
    run(make_app(ReceiverConfig(BUCKET), registry, insecure=True), [binary(generation=1), binary(generation=2, event_id="ev-9")])
    assert len(registry.list()) == 2


@pytest.mark.parametrize("mutate, reason", [
    (lambda h, b: ({k: v for k, v in h.items() if k != "ce-id"}, b), "missing id"),
    (lambda h, b: ({**h, "ce-type": "google.cloud.storage.object.v1.deleted"}, b), "unexpected event type"),
    (lambda h, b: ({**h, "ce-source": "//pubsub.googleapis.com/x"}, b), "unexpected event source"),
    (lambda h, b: (h, "{not json"), "not JSON"),
    (lambda h, b: (h, json.dumps({**json.loads(b), "generation": "seven"})), "decimal integer"),
    (lambda h, b: (h, json.dumps({**json.loads(b), "name": "inputs/a\nb.jsonl"})), "control or bidi"),
    (lambda h, b: (h, json.dumps({**json.loads(b), "bucket": "elsewhere"})), "different buckets"),
])
def test_malformed_events_get_a_400_with_the_reason(registry, mutate, reason):
    headers, body = mutate(*binary())
    [(status, doc)] = run(make_app(ReceiverConfig(BUCKET), registry, insecure=True), [(headers, body)])
    assert status == 400 and reason in doc["error"]
    assert registry.list() == []


def test_other_buckets_prefixes_and_dot_segments_are_ignored(registry):
    app = make_app(ReceiverConfig(BUCKET), registry, insecure=True)
    results = run(app, [binary(bucket="someone-else"), binary(name="elsewhere/a.jsonl"),
                        binary(name="inputs/../outputs/x.jsonl")])
    assert [s for s, _ in results] == [200, 200, 200] and all("ignored" in d for _, d in results)
    assert registry.list() == []


def test_a_non_jsonl_object_is_recorded_as_rejected_with_a_reason(registry):
    run(make_app(ReceiverConfig(BUCKET), registry, insecure=True), [binary(name="inputs/report.pdf")])
    [rec] = registry.list()
    assert rec.status == "rejected" and "not a JSONL file: inputs/report.pdf" in rec.message
