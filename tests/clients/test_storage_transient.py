"""Transient storage errors (503, connection resets, lost replies) never surface to the
job: RetryingStorage retries them, on local storage (errors injected at the interface)
and on GCS (errors injected on the wire between google-cloud-storage and a real
fake-gcs-server). A conditional write whose reply was lost is recognised as our own."""

import uuid

import pytest

from promptforge_dagster.clients.gcs_storage import GcsStorage, make_client
from promptforge_dagster.clients.local_storage import LocalStorage
from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.core.commit import JobCommitter
from promptforge_dagster.core.results import Envelope
from promptforge_dagster.core.storage import RetryingStorage, TransientStorageError, join
from tests.fault_proxy import FaultProxy


class FlakyStorage:
    """Every ``every``-th call raises TransientStorageError before reaching ``inner``."""

    def __init__(self, inner, every=2):
        self.inner, self.every, self.calls, self.injected = inner, every, 0, 0

    def __getattr__(self, name):
        fn = getattr(self.inner, name)

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls % self.every == 0:
                self.injected += 1
                raise TransientStorageError(f"injected on {name}")
            return fn(*args, **kwargs)

        return call


def exercise(s, root):
    """The operations a job makes, in order; returns what it read back."""
    part = join(root, "parts", "p1.jsonl")
    s.write_bytes(part, b'{"o":0}\n', if_generation_match=0)
    ck = join(root, "checkpoint.pfck")
    g1 = s.write_bytes(ck, b"one", if_generation_match=0)
    s.write_bytes(ck, b"two", if_generation_match=g1)
    listed = s.list(join(root, "parts") + "/")
    s.delete(part)
    return listed, s.read_bytes(ck), s.stat(part)


def test_local_storage_retries_injected_errors(tmp_path):
    flaky = FlakyStorage(LocalStorage(), every=2)
    s = RetryingStorage(flaky, sleep=lambda _: None)
    listed, ck, gone = exercise(s, str(tmp_path / "out"))
    assert listed == [str(tmp_path / "out" / "parts" / "p1.jsonl")] and ck == b"two" and gone is None
    assert flaky.injected >= 3 and s.retries == flaky.injected


def test_retries_give_up_after_the_configured_attempts(tmp_path):
    s = RetryingStorage(FlakyStorage(LocalStorage(), every=1), attempts=3, sleep=lambda _: None)
    with pytest.raises(TransientStorageError):
        s.read_bytes(str(tmp_path / "x"))
    assert s.retries == 2


@pytest.fixture
def gcs_through(fake_gcs, gcs_bucket, monkeypatch):
    """GcsStorage whose every request passes through a FaultProxy with ``plan``."""
    proxies = []

    def make(plan):
        proxy = FaultProxy(fake_gcs, plan)
        proxies.append(proxy)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        return RetryingStorage(GcsStorage(make_client()), base_s=0.01, cap_s=0.05), proxy

    yield make
    for p in proxies:
        p.close()


def test_gcs_retries_503s_and_resets_on_the_wire(gcs_through, gcs_bucket):
    s, proxy = gcs_through(lambda method, path, n: {0: "pass", 1: "503", 2: "pass", 3: "reset"}[n % 4])
    listed, ck, gone = exercise(s, f"gs://{gcs_bucket}/t-{uuid.uuid4().hex[:6]}")
    assert len(listed) == 1 and ck == b"two" and gone is None
    assert {f for f, _, _ in proxy.faults} == {"503", "reset"}


def test_a_lost_reply_to_a_commit_is_recognised_as_our_own_write(gcs_through, gcs_bucket, tmp_path):
    """The part and checkpoint writes land but their replies are dropped: the retry
    meets 412, the committer reads the object back, finds its own bytes, and carries on."""
    state = {"lose": 0}

    def plan(method, path, n):
        if method == "POST" and "/upload/" in path and state["lose"] > 0:
            state["lose"] -= 1
            return "lost_reply"
        return "pass"

    s, proxy = gcs_through(plan)
    out = f"gs://{gcs_bucket}/job-{uuid.uuid4().hex[:6]}"
    c = JobCommitter("job", out, s, SQLiteRegistry(str(tmp_path / "r.sqlite3")), owner="me", attempt_tag="a")
    c.open(now=0.0)
    state["lose"] = 1
    c.write_part([Envelope(0, {"custom_id": "x"}), Envelope(1, {"custom_id": "y"})])
    state["lose"] = 1
    ck = c.commit(now=1.0)
    assert sorted(ck.done) == [0, 1]
    assert len([f for f in proxy.faults if f[0] == "lost_reply"]) == 2
    assert len(s.list(out + "/parts/")) == 1
