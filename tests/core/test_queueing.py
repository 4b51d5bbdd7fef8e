"""Invariant: a server that queues instead of refusing (vLLM served directly) teaches the lane an
in-flight ceiling near what its batch serves, so answers come back before the client's
deadline; a hosted API whose answers slow down, a gateway's refusals and refusals in general
teach it nothing of the kind."""

import pytest

from promptforge_dagster.core.rate.queueing import QueueWatch
from promptforge_dagster.simulator.account import AccountLimits
from tests.core.provider_matrix import run_matrix
from tests.core.rate_scenarios import controller


def paced(watch: QueueWatch, seconds: range, per_s: int, answer_s: float, bound: int = 20_000,
          ceiling: float | None = None, kind: str = "ok") -> list[float]:
    """``per_s`` sent and ``per_s`` back each second (a lane paced at a rate: its queue does
    not grow), answers taking ``answer_s``; the ceilings the watch asked for."""
    found = []
    for s in seconds:
        for i in range(per_s):
            watch.sent(s + i / per_s)
            latency = None if kind == "refused" else answer_s
            c = watch.answered(s + (i + 0.5) / per_s, latency, bound, ceiling, served=kind == "ok")
            if c is not None:
                found.append(c)
    return found


def test_a_hosted_api_whose_answers_slow_down_at_a_paced_rate_gets_no_ceiling():
    watch = QueueWatch()
    assert paced(watch, range(0, 60), 20, 1.0) == []
    assert paced(watch, range(60, 180), 20, 3.0) == []  # three times slower, but as many sent as come back


def test_refusals_measure_no_queue():
    watch = QueueWatch()
    assert paced(watch, range(0, 30), 20, 1.0) == []
    assert paced(watch, range(30, 90), 40, 0.02, kind="refused") == []
    assert watch.floor_s == pytest.approx(1.0)


def test_a_ceiling_a_gateway_taught_is_not_raised_by_the_watch():
    watch = QueueWatch()
    assert paced(watch, range(0, 30), 20, 1.0) == []
    for _ in range(35):  # the lane at the ceiling a full queue taught (36 out), answers at the floor
        watch.sent(30.0)
    assert paced(watch, range(30, 120), 20, 1.0, bound=36, ceiling=36.0) == []
    assert watch.ceiling is None


@pytest.mark.parametrize("seed", range(3))
def test_a_server_that_queues_is_held_near_its_batch_and_answers_come_back_within_the_deadline(seed):
    c = controller()
    trace = run_matrix(c, AccountLimits(rpm=None, concurrency=32, queue=10**6), 300.0, seed=seed, style="vllm",
                       latency_s=1.0, timeout_s=120.0)
    assert 32 <= c.in_flight.ceiling <= 32 * 1.25 * 1.5  # its batch, kept full, no queue to speak of
    snap = c.snapshot()  # what users see: summary.json, the Dagster metadata, the progress line
    assert snap["concurrency_source"] == "answers slowed"
    from promptforge_dagster.cli import _lanes_line
    assert f"the server queues: {snap['concurrency_ceiling']:.0f} in flight" in _lanes_line({"hosted_vllm/m": snap})
    assert trace.goodput_share(180.0, 300.0, 32 * 60) >= 0.95
    assert sum(trace.timed_out.get(k, 0) for k in range(180, 300)) == 0


def test_timeouts_count_as_answers_as_slow_as_the_deadline():
    """A queue past the client's deadline serves nothing: every request times out. The
    watch still reads the queue, and sizes the ceiling by the most the server served."""
    watch = QueueWatch()
    assert paced(watch, range(0, 10), 40, 1.0) == []  # 40 a second answered in 1 s
    for _ in range(4_000):  # then a flood: 4,000 out, the lane's bound
        watch.sent(10.0)
    found = paced(watch, range(130, 140), 40, 120.0, bound=4_000, kind="timeout")
    assert found and found[0] == pytest.approx(40 * 1.0 * 1.25, rel=0.05)
