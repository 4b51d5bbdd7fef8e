"""Contract: local-directory and GCS storage behave the same: atomic whole-object
writes, ranged reads pinned to a generation, create-only and generation-matched writes
that fail with PreconditionFailed when lost, sorted listing, idempotent delete.
GCS runs against a real fake-gcs-server."""

import uuid

import pytest

from promptforge_dagster.clients.gcs_storage import GcsStorage
from promptforge_dagster.clients.local_storage import LocalStorage
from promptforge_dagster.core.storage import PreconditionFailed, join


@pytest.fixture(params=["local", "gcs"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStorage(), str(tmp_path / "root")
    client = request.getfixturevalue("gcs_env")
    bucket = request.getfixturevalue("gcs_bucket")
    return GcsStorage(client), f"gs://{bucket}/root-{uuid.uuid4().hex[:6]}"


def test_write_read_stat(store):
    s, root = store
    path = join(root, "a", "x.jsonl")
    assert s.stat(path) is None
    gen = s.write_bytes(path, b"hello world")
    info = s.stat(path)
    assert info.size == 11 and info.generation == gen
    assert s.read_bytes(path) == b"hello world"
    assert s.read_range(path, 6, 5) == b"world"
    assert s.read_range(path, 6, 100) == b"world"
    assert s.read_range(path, 0, 5, generation=gen) == b"hello"


def test_read_pinned_to_a_replaced_generation_never_mixes_versions(store):
    s, root = store
    path = join(root, "in.jsonl")
    old = s.write_bytes(path, b"version-one\n")
    s.write_bytes(path, b"version-two-is-longer\n")
    try:
        data = s.read_range(path, 0, 12, generation=old)
    except PreconditionFailed:
        return  # the old version is gone: the reader is told, not handed the new bytes
    assert data == b"version-one\n"


def test_create_only_write_fails_when_the_object_exists(store):
    s, root = store
    path = join(root, "ckpt")
    s.write_bytes(path, b"1", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        s.write_bytes(path, b"2", if_generation_match=0)
    assert s.read_bytes(path) == b"1"


def test_generation_matched_write_is_a_compare_and_swap(store):
    s, root = store
    path = join(root, "ckpt")
    g1 = s.write_bytes(path, b"1")
    g2 = s.write_bytes(path, b"2", if_generation_match=g1)
    with pytest.raises(PreconditionFailed):
        s.write_bytes(path, b"3", if_generation_match=g1)  # a stale writer loses
    assert s.read_bytes(path) == b"2" and s.stat(path).generation == g2


def test_list_is_sorted_and_scoped_and_delete_is_idempotent(store, tmp_path):
    s, root = store
    for name in ["parts/b.jsonl", "parts/a.jsonl", "other/c.jsonl"]:
        s.write_bytes(join(root, name), b"x")
    assert s.list(join(root, "parts") + "/") == [join(root, "parts/a.jsonl"), join(root, "parts/b.jsonl")]
    s.delete(join(root, "parts/a.jsonl"))
    s.delete(join(root, "parts/a.jsonl"))
    assert s.list(join(root, "parts") + "/") == [join(root, "parts/b.jsonl")]


def test_list_objects_gives_size_and_generation_in_one_listing(store):
    s, root = store
    g_b = s.write_bytes(join(root, "in/b.jsonl"), b"12345")
    g_a = s.write_bytes(join(root, "in/a.jsonl"), b"1")
    listed = s.list_objects(join(root, "in") + "/")
    assert [(p, i.size, i.generation) for p, i in listed] == [
        (join(root, "in/a.jsonl"), 1, g_a), (join(root, "in/b.jsonl"), 5, g_b)]


def test_write_stream_is_atomic_conditional_and_spans_chunks(store):
    s, root = store
    path = join(root, "results.jsonl")
    line = b"x" * 1023 + b"\n"
    pieces = 9 * 1024 + 7  # ~9 MiB: more than one 8 MiB resumable chunk on GCS

    def fill(write):
        for _ in range(pieces):
            write(line)

    gen = s.write_stream(path, fill, if_generation_match=0)
    info = s.stat(path)
    assert info.size == len(line) * pieces and info.generation == gen
    assert s.read_range(path, len(line) * 5000, len(line)) == line
    with pytest.raises(PreconditionFailed):  # create-only, and it exists
        s.write_stream(path, lambda write: write(b"other\n"), if_generation_match=0)
    with pytest.raises(PreconditionFailed):  # a stale generation
        s.write_stream(path, lambda write: write(b"other\n"), if_generation_match=gen + 1)
    assert s.stat(path).size == len(line) * pieces  # neither failed write replaced it

    def fail_midway(write):
        write(b"half a result\n")
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError):
        s.write_stream(path, fail_midway, if_generation_match=gen)
    assert s.stat(path).generation == gen  # a failed producer leaves the old object whole
    new = s.write_stream(path, lambda write: write(b"v2\n"), if_generation_match=gen)
    assert s.read_bytes(path) == b"v2\n" and new != gen


def test_mark_finished_stamps_custom_time_where_lifecycle_rules_count_from_it(store):
    s, root = store
    paths = [join(root, "parts", f"p{i}.part.jsonl") for i in range(3)]
    for p in paths:
        s.write_bytes(p, b"x")
    s.mark_finished(paths + [join(root, "gone")], when=1_800_000_000.0)  # an absent object is fine
    if isinstance(s, GcsStorage):
        for p in paths:
            bucket, key = p[5:].split("/", 1)
            blob = s._client.bucket(bucket).get_blob(key)
            assert blob.custom_time is not None and blob.custom_time.timestamp() == 1_800_000_000.0
    assert all(s.read_bytes(p) == b"x" for p in paths)  # stamping never changes content
