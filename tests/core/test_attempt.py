"""The attempt's life (core/job/): one heartbeat from lease to finish, the publish fence,
a failed write stopping the attempt at once, and every ending recorded in the registry.

Real local storage and the real SQLite registry; time is passed in where it matters."""

import asyncio
import json

import pytest

from promptforge_dagster.clients.local_storage import LocalStorage
from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.core.formats import JobDefaults
from promptforge_dagster.core.job import (
    JobAttempt, JobFailed, JobHooks, JobRejected, JobSpec, JobSuperseded, run_attempt, run_job,
)
from promptforge_dagster.core.job.heartbeat import Heartbeat, LeaseUnrenewable
from promptforge_dagster.core.job_registry import JobRecord, LeaseLost
from promptforge_dagster.core.outcome import Outcome, OutcomeKind
from promptforge_dagster.core.pipeline import PipelineConfig
from promptforge_dagster.core.rate_controller import FixedRateController

JOB = "job-1"


class Echo:
    def __init__(self):
        self.calls = []

    async def complete(self, request):
        self.calls.append(request.custom_id)
        await asyncio.sleep(0)
        return Outcome(OutcomeKind.SUCCESS, 200, body={"ok": True}, tokens_in=1, tokens_out=1)


class Clock:
    """A wall clock that moves only when told (every read can also advance it)."""

    def __init__(self, step=0.0):
        self.t, self.step = 1000.0, step

    def __call__(self):
        self.t += self.step
        return self.t


def write_input(tmp_path, n, name="in.jsonl"):
    src = tmp_path / name
    src.write_bytes(b"".join(b'{"id": "r%d", "prompt": "p"}\n' % i for i in range(n)))
    return str(src)


def make(tmp_path, src, *, registry=None, storage=None, provider=None, wall=None, **spec_kw):
    spec_kw.setdefault("job_id", JOB)
    spec = JobSpec(src, str(tmp_path / "out"), JobDefaults("openai/m"),
                   pipeline=PipelineConfig(max_in_flight=4, buffer_records=5), **spec_kw)
    registry = registry or SQLiteRegistry(str(tmp_path / "registry.sqlite3"))
    storage = storage or LocalStorage()
    kw = {"wall_clock": wall} if wall is not None else {}
    return JobAttempt(spec, input_storage=storage, output_storage=storage, provider=provider or Echo(),
                      lanes=FixedRateController(None, now=0.0), registry=registry, **kw), registry


# -- the heartbeat alone ------------------------------------------------------------------
def test_heartbeat_retries_transient_failures_while_the_lease_lasts_then_stops():
    clock = Clock()
    calls = []

    def renew(now):
        calls.append(now)
        raise ConnectionError("registry unavailable")

    hb = Heartbeat(renew, interval_s=10, lease_ttl_s=120, clock=clock)
    clock.t += 10
    hb.beat()  # fails, quietly: the lease has 110 s left
    assert hb.transient_failures == 1 and "unavailable" in hb.last_error
    clock.t += 0.5
    hb.beat()  # spaced: no second try within a second
    assert len(calls) == 1
    clock.t += 99.5  # 110 s since the last renewal: 10 s before expiry
    with pytest.raises(LeaseUnrenewable, match="could not renew the lease for 110 s"):
        hb.beat()
    with pytest.raises(LeaseUnrenewable):  # and stays stopped
        hb.beat()


def test_heartbeat_recovers_after_a_blip_and_a_lost_lease_is_final():
    clock = Clock()
    state = {"fail": 2, "lost": False}

    def renew(now):
        if state["lost"]:
            raise LeaseLost("epoch 3 superseded")
        if state["fail"]:
            state["fail"] -= 1
            raise TimeoutError("deadline exceeded")

    hb = Heartbeat(renew, interval_s=10, lease_ttl_s=120, clock=clock)
    for _ in range(3):
        clock.t += 10
        hb.beat()
    assert hb.renewals == 1 and hb.transient_failures == 2 and hb.last_error is None
    state["lost"] = True
    clock.t += 10
    with pytest.raises(LeaseLost):
        hb.beat()
    assert hb.superseded


def test_a_forced_check_fails_loudly_when_ownership_cannot_be_confirmed():
    clock = Clock()
    hb = Heartbeat(lambda now: (_ for _ in ()).throw(ConnectionError("down")), interval_s=10, lease_ttl_s=120,
                   clock=clock)
    with pytest.raises(ConnectionError):
        hb.beat(force=True)


# -- one heartbeat for the whole attempt ------------------------------------------------------
def test_the_scan_and_the_publish_renew_the_lease_not_only_the_pipeline(tmp_path):
    """A long scan (each clock read is a second later) renews the lease as it goes: the
    watchdog's view of the record never shows an expired lease while the attempt works."""
    src = write_input(tmp_path, 40_000)
    wall = Clock(step=0.01)
    attempt, registry = make(tmp_path, src, wall=wall, lease_ttl_s=30.0, heartbeat_s=5.0)
    renewed_at = []
    real_renew = registry.renew

    def spy(lease, now, ttl_s, counters=None):
        renewed_at.append(now)
        return real_renew(lease, now, ttl_s, counters)

    registry.renew = spy
    attempt.open()
    opened = wall.t
    scan_ticks = 0
    real_beat = attempt.heartbeat.beat

    def counting_beat(**kw):
        nonlocal scan_ticks
        scan_ticks += 1
        wall.t += 1.0  # the scan is slow: a second between beat calls
        return real_beat(**kw)

    attempt.heartbeat.beat = counting_beat
    attempt.prepare()
    during_scan = [t for t in renewed_at if t > opened]
    assert scan_ticks >= 9 and len(during_scan) >= 1  # renewed while scanning, with no pipeline running
    assert registry.get(JOB).lease_expires_at > wall.t  # never left to expire
    asyncio.run(attempt.run())
    before_publish = len(renewed_at)
    attempt.publish()
    assert len(renewed_at) - before_publish >= 2  # the publish renews too (and checks before each file)
    assert registry.get(JOB).lease_expires_at > wall.t


def test_publish_is_fenced_a_superseded_attempt_writes_neither_file(tmp_path):
    src = write_input(tmp_path, 30)
    attempt, registry = make(tmp_path, src)
    attempt.open()
    attempt.prepare()
    asyncio.run(attempt.run())
    real_read = attempt.committer.read_parts
    taken = {}

    def read_parts_then_lose(paths):
        if not taken:  # while this attempt assembles, a newer one takes the job over
            taken["lease"] = registry.acquire(JOB, "newer", now=attempt.wall_clock(), ttl_s=120, steal=True)
        return real_read(paths)

    attempt.committer.read_parts = read_parts_then_lose
    with pytest.raises(LeaseLost):
        attempt.publish()
    out = tmp_path / "out"
    assert not (out / "results.jsonl").exists() and not (out / "summary.json").exists()


def test_summary_names_the_epoch_and_the_results_it_describes(tmp_path):
    src = write_input(tmp_path, 12)
    attempt, registry = make(tmp_path, src)
    result = asyncio.run(run_attempt(attempt))
    storage = LocalStorage()
    assert result.summary["results_generation"] == storage.stat(str(tmp_path / "out" / "results.jsonl")).generation
    assert result.summary["epoch"] == registry.get(JOB).epoch


def test_memory_is_released_once_after_the_scan_before_anything_is_sent(tmp_path):
    """The duplicate scan's memory grows with the input's lines; the hook that gives it back
    runs once the scan is over and before the first request, so it never adds to sending's."""
    src = write_input(tmp_path, 12)
    attempt, _ = make(tmp_path, src)
    calls = []

    def release():
        calls.append((attempt.index is not None, attempt.stats.sent))

    attempt.hooks = JobHooks(release_memory=release)
    result = asyncio.run(run_attempt(attempt))
    assert calls == [(True, 0)] and result.summary["succeeded"] == 12


def test_trim_heap_gives_a_freed_scan_set_back_to_the_os():
    """What the hook does in production: a million-id scan set, freed, leaves its pages in
    the process until the heap is trimmed (measured: +8.4 MiB after del, +0.1 after trim)."""
    import random

    from pyroaring import BitMap

    from promptforge_dagster.procinfo import trim_heap

    def rss_mib():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

    rng = random.Random(7)
    seen = BitMap(rng.getrandbits(32) for _ in range(1_000_000))
    assert len(seen) > 990_000
    del seen
    before = rss_mib()
    trim_heap()
    assert before - rss_mib() >= 2.0


# -- a failed write stops the attempt at once ---------------------------------------------------
class FailingParts(LocalStorage):
    """Part writes fail from the second one on (a full disk, a revoked permission)."""

    def __init__(self):
        self.part_writes = 0

    def write_bytes(self, path, data, *, if_generation_match=None):
        if "/parts/" in path:
            self.part_writes += 1
            if self.part_writes >= 2:
                raise PermissionError(f"403 Forbidden: {path}")
        return super().write_bytes(path, data, if_generation_match=if_generation_match)


def test_a_failed_part_write_stops_sending_at_once_and_the_job_is_failed(tmp_path):
    src = write_input(tmp_path, 400)
    storage = FailingParts()
    provider = Echo()
    attempt, registry = make(tmp_path, src, storage=storage, provider=provider)
    with pytest.raises(JobFailed, match="writing results failed: PermissionError"):
        asyncio.run(run_attempt(attempt))
    # at most the prompts in flight or buffered when the write failed were sent after it
    assert len(provider.calls) < 60, len(provider.calls)
    rec = registry.get(JOB)
    assert rec.status == "failed" and "403 Forbidden" in rec.message


# -- every job ends in a recorded state ----------------------------------------------------------
def queued(registry, job_id, src, out):
    registry.create(JobRecord(job_id, src, out, created_at=1.0))


@pytest.mark.parametrize("case", ["missing", "not_jsonl", "replaced"])
def test_a_job_that_cannot_start_is_rejected_not_left_queued(tmp_path, case):
    src = write_input(tmp_path, 3)
    registry = SQLiteRegistry(str(tmp_path / "registry.sqlite3"))
    queued(registry, JOB, src, str(tmp_path / "out"))
    kw = {}
    if case == "missing":
        src = str(tmp_path / "gone.jsonl")
    elif case == "not_jsonl":
        (tmp_path / "in.jsonl").write_bytes(b"%PDF-1.7 binary")
    else:
        kw["input_generation"] = 12345
    attempt, _ = make(tmp_path, src, registry=registry, **kw)
    with pytest.raises(JobRejected):
        asyncio.run(run_attempt(attempt))
    rec = registry.get(JOB)
    assert rec.status == "rejected" and rec.message and str(tmp_path) in rec.message


def test_any_exception_fails_the_job_with_its_cause(tmp_path):
    src = write_input(tmp_path, 20)
    attempt, registry = make(tmp_path, src)
    attempt.hooks = JobHooks(on_pipeline=lambda p: (_ for _ in ()).throw(ZeroDivisionError("a bug")))
    with pytest.raises(JobFailed, match="ZeroDivisionError: a bug"):
        asyncio.run(run_attempt(attempt))
    rec = registry.get(JOB)
    assert rec.status == "failed" and rec.message == "ZeroDivisionError: a bug" and rec.owner is None


def test_a_cancelled_attempt_is_recorded_cancelled(tmp_path):
    src = write_input(tmp_path, 5000)

    class Slow(Echo):
        async def complete(self, request):
            await asyncio.sleep(0.01)
            return await super().complete(request)

    attempt, registry = make(tmp_path, src, provider=Slow())

    async def go():
        task = asyncio.create_task(run_attempt(attempt))
        while not attempt.provider.calls:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    rec = registry.get(JOB)
    assert rec.status == "cancelled" and "prompts done and kept" in rec.message


def test_a_superseded_attempt_records_nothing_and_says_so(tmp_path):
    src = write_input(tmp_path, 300)
    attempt, registry = make(tmp_path, src, checkpoint_interval_s=0.01)

    async def go():
        task = asyncio.create_task(run_attempt(attempt))
        while not attempt.provider.calls:
            await asyncio.sleep(0.005)
        registry.acquire(JOB, "newer", now=attempt.wall_clock(), ttl_s=120, steal=True)
        return await task

    with pytest.raises(JobSuperseded):
        asyncio.run(go())
    rec = registry.get(JOB)
    assert rec.status == "running" and rec.owner == "newer"  # the newer attempt's record, untouched


def test_the_cli_default_job_id_names_the_output_so_two_outputs_never_fence_each_other(tmp_path):
    src = write_input(tmp_path, 10)
    storage = LocalStorage()
    registry = SQLiteRegistry(str(tmp_path / "registry.sqlite3"))
    results = []
    for out in ("a", "b"):
        spec = JobSpec(src, str(tmp_path / out), JobDefaults("openai/m"))
        results.append(asyncio.run(run_job(spec, input_storage=storage, output_storage=storage, provider=Echo(),
                                           controller=FixedRateController(None, now=0.0), registry=registry)))
    ids = {r.summary["job_id"] for r in results}
    assert len(ids) == 2 and all(r.summary["succeeded"] == 10 for r in results)
    assert all(json.loads((tmp_path / o / "summary.json").read_text())["epoch"] == 1 for o in ("a", "b"))


def test_a_transient_registry_outage_during_commits_does_not_stop_the_attempt(tmp_path):
    """Checkpoint commits that fail for a transient reason (the registry is briefly down)
    are tried again at the next interval; the job completes, exactly once."""
    src = write_input(tmp_path, 1500)

    class Slow(Echo):
        async def complete(self, request):
            await asyncio.sleep(0.004)
            return await super().complete(request)

    attempt, registry = make(tmp_path, src, provider=Slow(), checkpoint_interval_s=0.05)
    attempt.sleep = lambda s: None
    real_renew = registry.renew
    failures = {"left": 3}

    def flaky_renew(lease, now, ttl_s, counters=None):
        if counters is not None and failures["left"]:  # commits report counters; heartbeats do not
            failures["left"] -= 1
            raise ConnectionError("503 Service Unavailable")
        return real_renew(lease, now, ttl_s, counters)

    registry.renew = flaky_renew
    result = asyncio.run(run_attempt(attempt))
    assert failures["left"] == 0 and attempt.stats.commit_errors >= 1
    assert result.summary["succeeded"] == 1500 and registry.get(JOB).status == "succeeded"
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(l)["custom_id"] for l in lines) == sorted(f"r{i}" for i in range(1500))


def test_working_state_is_marked_finished_only_once_published(tmp_path):
    marked = []

    class Recording(FailingParts):
        def mark_finished(self, paths, when):
            marked.extend(paths)

    src = write_input(tmp_path, 40)
    failing = Recording()
    attempt, registry = make(tmp_path, src, storage=failing)
    with pytest.raises(JobFailed):
        asyncio.run(run_attempt(attempt))
    assert marked == []  # a job that failed before publishing: nothing may age out
    failing.part_writes = -10_000  # the disk is back
    attempt, _ = make(tmp_path, src, storage=failing, registry=registry)
    asyncio.run(run_attempt(attempt))
    out = str(tmp_path / "out")
    assert f"{out}/checkpoint.pfck" in marked and f"{out}/scan.json" in marked
    parts = [p for p in marked if p.endswith(".part.jsonl")]
    assert parts and all(p.startswith(f"{out}/parts/g") for p in parts)


class RefusesOnceThenStops(Echo):
    """r1 refused once (429), then answered; r150 a fatal answer (a revoked key): the job stops."""

    def __init__(self):
        super().__init__()
        self.refused = False

    async def complete(self, request):
        self.calls.append(request.custom_id)
        await asyncio.sleep(0.04)  # a few checkpoints (the flush loop ticks every 0.5 s) go by before r150
        if request.custom_id == "r1" and not self.refused:
            self.refused = True
            return Outcome(OutcomeKind.RATE_LIMITED, 429, message="Too Many Requests")
        if request.custom_id == "r150":
            return Outcome(OutcomeKind.FATAL, 401, message="Incorrect API key provided")
        return Outcome(OutcomeKind.SUCCESS, 200, body={"ok": True}, tokens_in=1, tokens_out=1)


def test_the_summary_counts_refusals_retries_and_attempts_over_every_attempt(tmp_path):
    src = write_input(tmp_path, 300)
    first, registry = make(tmp_path, src, provider=RefusesOnceThenStops(), checkpoint_interval_s=0.02)
    with pytest.raises(JobFailed):
        asyncio.run(run_attempt(first))
    second, _ = make(tmp_path, src, registry=registry)
    result = asyncio.run(run_attempt(second))
    s = result.summary
    assert s["succeeded"] == 300 and s["attempts"] == 2
    assert s["rate_limited_429"] == 1 and s["retries"] >= 1  # the first attempt's, though this one had none
