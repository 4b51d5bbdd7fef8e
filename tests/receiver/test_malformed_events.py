"""Every malformed event gets a 400 (which Eventarc does not retry), never a 500 (which it
retries for a day): generations and sizes parse strictly as GCS's decimal int64 strings,
names with control, bidi or separator characters are refused, hostile bodies (deep
nesting, NaN) are refused; objects under the output prefix never become jobs, prefixes
that overlap are refused at start-up, and output folders never collide."""

import json

import pytest

from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.core.job_planning import UploadedObject, job_key, output_name
from promptforge_dagster.receiver.app import ReceiverConfig, make_app
from tests.receiver.test_app import BUCKET, binary, run


@pytest.fixture
def registry(tmp_path):
    return SQLiteRegistry(str(tmp_path / "registry.sqlite3"))


def app(registry, **config):
    return make_app(ReceiverConfig(BUCKET, **config), registry, insecure=True)


@pytest.mark.parametrize("field, value, words", [
    ("generation", "1e400", "decimal integer"),
    ("generation", 1e300, "decimal integer"),
    ("generation", 7.9, "decimal integer"),
    ("generation", "7.9", "decimal integer"),
    ("generation", True, "decimal integer"),
    ("generation", "1_000", "decimal integer"),
    ("generation", " 12", "decimal integer"),
    ("generation", "99999999999999999999", "decimal integer"),
    ("generation", "0", "from 1"),
    ("generation", None, "decimal integer"),
    ("size", "-1", "decimal integer"),
    ("name", "inputs/a\x85b.jsonl", "control or bidi"),
    ("name", "inputs/\u202egnp.jsonl", "control or bidi"),
    ("name", "inputs/a\u200fb.jsonl", "control or bidi"),
    ("name", "inputs/a\u2028b.jsonl", "control or bidi"),
    ("name", "inputs/a\x7fb.jsonl", "control or bidi"),
])
def test_every_malformed_field_gets_a_400(registry, field, value, words):
    headers, body = binary()
    doc = json.loads(body)
    doc[field] = value
    [(status, answer)] = run(app(registry), [(headers, json.dumps(doc))])
    assert status == 400 and words in answer["error"]
    assert registry.list() == []


@pytest.mark.parametrize("body", [
    "[" * 100_000 + "]" * 100_000,
    '{"bucket": "pf-inputs", "name": "inputs/a.jsonl", "generation": NaN}',
    '{"bucket": "pf-inputs", "name": "inputs/a.jsonl", "generation": 1e400}',
    '{"bucket": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}",
    '{"bucket": "pf-inputs", "name": "inputs/\\ud800.jsonl", "generation": "5"}',
    "\xff\xfe not utf-8",
])
def test_hostile_bodies_get_a_400(registry, body):
    headers, _ = binary()
    [(status, _)] = run(app(registry), [(headers, body.encode("utf-8", "surrogateescape")
                                         if isinstance(body, str) else body)])
    assert status == 400
    assert registry.list() == []


def test_results_under_the_output_prefix_never_become_jobs(registry):
    [(status, doc)] = run(app(registry, input_prefix="data/", output_prefix="data-out/"),
                          [binary(name="data-out/x@1/results.jsonl")])
    assert status == 200 and "ignored" in doc and registry.list() == []


@pytest.mark.parametrize("inputs, outputs", [("data/", "data/out/"), ("", "outputs/"), ("io", "io/")])
def test_overlapping_prefixes_are_refused(inputs, outputs):
    with pytest.raises(ValueError, match="overlap"):
        ReceiverConfig(BUCKET, input_prefix=inputs, output_prefix=outputs)
    ReceiverConfig(BUCKET, input_prefix=inputs, output_prefix=outputs, output_root="gs://another-bucket")


def test_the_deployment_refuses_overlapping_prefixes_too():
    from promptforge_dagster.deployment import deployment_from_env

    with pytest.raises(ValueError, match="PROMPTFORGE_INPUT_PREFIX"):
        deployment_from_env({"PROMPTFORGE_HOME": "/tmp/pf", "PROMPTFORGE_INPUT_PREFIX": "jobs/",
                             "PROMPTFORGE_OUTPUT_PREFIX": "jobs/results/"})


def test_output_folders_never_collide():
    names = ["in/a b.jsonl", "in/a_b.jsonl", "in/a__b.jsonl", "in/a/b.jsonl", "in/a%20b.jsonl", "in/a_20b.jsonl",
             "in/\u00e9.jsonl", "in/_C3_A9.jsonl", "in/a.b.jsonl", "in/a-b.jsonl"]
    folders = {output_name(UploadedObject("bucket", n, 5, 1)) for n in names}
    assert len(folders) == len(names)
    assert all("/" not in f and " " not in f for f in folders)


def test_job_keys_lead_with_the_file_name_and_never_collide():
    """Partition keys are cut in the middle by Dagster's UI: the file name comes first, its
    place last; "..." (a range of partitions in Dagster's UI) and unreadable characters are
    escaped; two objects, buckets or generations never share a key."""
    objects = [UploadedObject(b, n, g, 1) for b in ("bkt", "bkt.x", "bkt@x", "12@x", "x")
               for n in ("in/a.jsonl", "in/a.jsonl#5@bkt/in/x.jsonl", "a.jsonl", "in/sub/a.jsonl", "in/a%2E.jsonl",
                         "in/a..jsonl", "in/a...jsonl", "in/a.%2E.jsonl", "in/a\u202e.jsonl", "in/a%E2%80%AE.jsonl",
                         "in#5@bkt/a.jsonl", "in/a.jsonl#5", "in/a.jsonl#5@12", "a.jsonl#5@bkt")
               for g in (5, 55)]
    keys = {job_key(o) for o in objects}
    assert len(keys) == len(objects)
    assert not any("..." in k or "\u202e" in k for k in keys)
    assert job_key(UploadedObject("my-bucket", "inputs/reviews 2026-11.jsonl", 1701234567890123, 1)) == \
        "reviews 2026-11.jsonl#1701234567890123@my-bucket/inputs/"
