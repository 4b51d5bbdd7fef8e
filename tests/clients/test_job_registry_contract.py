"""One contract for every JobRegistry: a job is created once; taking the lease bumps the
epoch; an unexpired lease is refused unless stolen; every write of a superseded epoch
fails with LeaseLost; counters and status persist; concurrent takers get distinct
epochs. Run against SQLite and the real Firestore emulator."""

import threading

import pytest

from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.core.job_registry import JobRecord, LeaseHeld, LeaseLost, page_key


@pytest.fixture(params=["sqlite", "firestore"])
def registry(request, tmp_path):
    if request.param == "sqlite":
        return SQLiteRegistry(str(tmp_path / "registry.sqlite3"))
    project = request.getfixturevalue("firestore_env")
    from promptforge_dagster.clients.firestore_registry import FirestoreRegistry, firestore_client

    return FirestoreRegistry(firestore_client(project))


JOB = "gs://bucket/in/prompts.jsonl#1700000000000"  # ids are paths: slashes and all


def test_create_is_idempotent_and_get_returns_the_record(registry):
    rec = JobRecord(JOB, "gs://bucket/in/prompts.jsonl", "gs://bucket/out", created_at=5.0)
    assert registry.create(rec) is True
    assert registry.create(JobRecord(JOB, "other", "other")) is False
    got = registry.get(JOB)
    assert got.input_uri == "gs://bucket/in/prompts.jsonl" and got.status == "queued" and got.epoch == 0
    assert registry.get("nope") is None


def test_taking_the_lease_bumps_the_epoch_and_fences_the_older_owner(registry):
    a = registry.acquire(JOB, "a", now=0.0, ttl_s=60)
    with pytest.raises(LeaseHeld):
        registry.acquire(JOB, "b", now=10.0, ttl_s=60)
    b = registry.acquire(JOB, "b", now=10.0, ttl_s=60, steal=True)
    assert b.epoch == a.epoch + 1
    with pytest.raises(LeaseLost):
        registry.renew(a, now=11.0, ttl_s=60)
    with pytest.raises(LeaseLost):
        registry.finish(a, now=11.0, status="succeeded")
    b = registry.renew(b, now=20.0, ttl_s=60, counters={"succeeded": 7})
    assert b.expires_at == 80.0
    rec = registry.get(JOB)
    assert rec.owner == "b" and rec.counters == {"succeeded": 7} and rec.status == "running"


def test_an_expired_lease_can_be_taken_without_stealing(registry):
    a = registry.acquire(JOB, "a", now=0.0, ttl_s=5)
    b = registry.acquire(JOB, "b", now=6.0, ttl_s=5)
    assert b.epoch == a.epoch + 1


def test_finish_records_status_and_releases(registry):
    lease = registry.acquire(JOB, "a", now=0.0, ttl_s=60)
    registry.finish(lease, now=3.0, status="failed", counters={"failed": 2}, message="stopped: quota")
    rec = registry.get(JOB)
    assert (rec.status, rec.owner, rec.message, rec.counters) == ("failed", None, "stopped: quota", {"failed": 2})
    assert [r.job_id for r in registry.list(status="failed")] == [JOB]
    assert registry.list(status="running") == []
    with pytest.raises(ValueError):
        registry.finish(registry.acquire(JOB, "b", now=4.0, ttl_s=60), now=5.0, status="paused")


def test_concurrent_takers_get_distinct_epochs(registry):
    epochs, errors = [], []

    def take(i):
        try:
            epochs.append(registry.acquire(JOB, f"w{i}", now=float(i), ttl_s=60, steal=True).epoch)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(epochs) == list(range(1, 7))
    assert registry.get(JOB).epoch == 6


LANE = "openai/gpt-4o-mini#k1a2b3"


def test_lanes_share_state_and_count_live_members(registry):
    assert registry.lane(LANE) is None
    registry.publish_lane(LANE, "job-a", now=0.0, ttl_s=30, state={"ceiling_rpm": 1200.0})
    rec = registry.publish_lane(LANE, "job-b", now=5.0, ttl_s=30)
    assert set(rec.active(5.0)) == {"job-a", "job-b"} and rec.state == {"ceiling_rpm": 1200.0}
    assert rec.updated_at == 0.0  # membership alone does not refresh the learned state
    registry.leave_lane(LANE, "job-a")
    assert set(registry.lane(LANE).active(6.0)) == {"job-b"}
    # a member that stops renewing (a dead job) drops out when its membership expires
    rec = registry.publish_lane(LANE, "job-c", now=40.0, ttl_s=30, state={"ceiling_rpm": 900.0})
    assert set(rec.active(40.0)) == {"job-c"} and rec.state["ceiling_rpm"] == 900.0 and rec.updated_at == 40.0


def test_settle_ends_jobs_no_live_attempt_holds_and_never_overrides_an_end(registry):
    registry.create(JobRecord("queued-job", "in", "out", created_at=1.0))
    assert registry.settle("queued-job", 5.0, "rejected", "in is not JSONL") is True
    rec = registry.get("queued-job")
    assert rec.status == "rejected" and rec.message == "in is not JSONL"
    assert registry.settle("queued-job", 6.0, "failed", "later") is False  # terminal stays
    assert registry.settle("no-such-job", 6.0, "failed") is False
    lease = registry.acquire(JOB, "host:1:2:run-a", now=0.0, ttl_s=60)
    assert registry.settle(JOB, 10.0, "cancelled", run_id="run-b") is False  # another run's live lease
    assert registry.get(JOB).status == "running"
    assert registry.settle(JOB, 10.0, "cancelled", "run cancelled", run_id="run-a") is True
    assert registry.get(JOB).status == "cancelled"
    registry.finish(lease, 12.0, "succeeded")  # the run's own late finish still lands (same epoch)
    assert registry.get(JOB).status == "succeeded"


def test_an_expired_lease_is_settled_without_naming_the_run(registry):
    registry.acquire(JOB, "host:1:2:run-a", now=0.0, ttl_s=5)
    assert registry.settle(JOB, 3.0, "failed", "worker died") is False  # still live
    assert registry.settle(JOB, 6.0, "failed", "worker died") is True
    assert registry.get(JOB).status == "failed"


def test_get_many_and_newest_first_paging(registry):
    for i in range(7):
        registry.create(JobRecord(f"job-{i}", "in", "out", created_at=float(i), status="succeeded"))
    got = registry.get_many([f"job-{i}" for i in range(0, 9, 2)] + ["missing"])
    assert sorted(got) == ["job-0", "job-2", "job-4", "job-6"]
    first = registry.list(status="succeeded", limit=3, newest_first=True)
    assert [r.job_id for r in first] == ["job-6", "job-5", "job-4"]
    second = registry.list(status="succeeded", limit=3, newest_first=True, before=page_key(first[-1]))
    assert [r.job_id for r in second] == ["job-3", "job-2", "job-1"]
    for i in range(5):  # created in the same instant: the id breaks the tie, no record skipped or repeated
        registry.create(JobRecord(f"tie-{i}", "in", "out", created_at=100.0, status="queued"))
    seen, before = [], None
    while page := registry.list(status="queued", limit=2, newest_first=True, before=before):
        seen += [r.job_id for r in page]
        before = page_key(page[-1])
    assert seen == [f"tie-{i}" for i in reversed(range(5))]
    assert [r.job_id for r in registry.list(status="succeeded", limit=2)] == ["job-0", "job-1"]
