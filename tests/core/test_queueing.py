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


def ramp(watch: QueueWatch, seconds: range, sent_at, answers_at, answer_s: float = 1.0) -> list[float]:
    """Second by second, ``sent_at(s)`` sent and ``answers_at(s)`` answered (taking
    ``answer_s``), a lane with no ceiling yet; the ceilings the watch asked for."""
    found = []
    for s in seconds:
        sent, back = sent_at(s), answers_at(s)
        for i in range(max(sent, back)):
            if i < sent:
                watch.sent(s + i / sent)
            if i < back and (c := watch.answered(s + (i + 0.5) / max(sent, back), answer_s, 20_000, None)):
                found.append((s, c))
    return found


def test_a_cold_ramp_into_a_queue_is_held_as_soon_as_the_answers_stop_following_the_sends():
    """The climb quadruples the sends each second; a server serving 32 a second answers 32
    whatever it is sent. The ceiling comes within two seconds of the answers going flat,
    before any slow answer has come back (the slow-answer rule alone came seconds later,
    with thousands queued)."""
    watch = QueueWatch()
    sends, answers = (lambda s: 4 ** (s - 2) if s >= 3 else 2), (lambda s: min(32, 4 ** max(0, s - 3) + 2))
    found = ramp(watch, range(0, 12), sends, answers)
    assert found and found[0][0] <= 8  # flat from second 6 to 7: read as second 7 closes
    assert found[0][1] == pytest.approx(32 * 1.0 * 1.25, rel=0.2)


def test_a_hosted_api_ramped_into_gets_no_ceiling_its_answers_follow_the_sends():
    """6-s answers to a climb: each second answers what was sent 6 s before, growing as the
    sends did; then the lane is paced at its rate ceiling and sends as many as come back."""
    watch = QueueWatch()
    sends = lambda s: min(2 ** s, 600)  # doubling each second up to 600 a second
    assert ramp(watch, range(0, 40), sends, lambda s: sends(s - 6) if s >= 6 else 0, answer_s=6.0) == []


def hosted(latency_at, seconds: float = 300.0, per_s: float = 20.0) -> tuple[QueueWatch, dict[int, int]]:
    """A hosted API paced at ``per_s`` whose answers take ``latency_at(t)`` whatever is in
    flight (no queue of this lane's making), under the ceilings the watch sets; answers a
    second."""
    import heapq

    watch, events, answered, in_flight, ceiling = QueueWatch(), [], {}, 0, None
    for i in range(int(seconds * per_s)):
        heapq.heappush(events, (i / per_s, 0))
    while events:
        t, kind = heapq.heappop(events)
        if kind == 0:  # a send, when the ceiling leaves room (else this slot is lost)
            if ceiling is None or in_flight < ceiling:
                watch.sent(t)
                in_flight += 1
                heapq.heappush(events, (t + latency_at(t), latency_at(t)))
            continue
        in_flight -= 1
        answered[int(t)] = answered.get(int(t), 0) + 1
        found = watch.answered(t, kind, 10**6 if ceiling is None else int(ceiling), ceiling)
        ceiling = found if found is not None else ceiling
    return watch, answered


def test_a_hosted_api_whose_answers_slow_down_over_seconds_is_not_held_at_a_fraction_of_its_rate():
    """Answers 2 s, then 6 s after a 20-s slide: the lane's in flight grows with them, as a
    queue's would, and the watch sets a ceiling (20 a second x 2 s x 1.25); held there, the
    answers stay slow and fewer a second come back than the API served (a queue at a server
    serving all it can serves as many): the ceiling makes room for the slower answers. It
    held the lane at 0.42 of its rate for as long as they stayed slow."""
    watch, answered = hosted(lambda t: 2.0 if t < 60 else min(6.0, 2.0 + (t - 60) / 5.0), seconds=400.0)
    late = sum(answered.get(k, 0) for k in range(200, 380)) / 180.0
    assert late >= 0.95 * 20
    assert watch.ceiling is None or watch.ceiling >= 20 * 6.0


@pytest.mark.parametrize("seed", range(3))
def test_a_slow_local_server_floods_once_and_then_runs_at_what_it_serves(seed):
    """Ollama-like: 4 slots, 20-s answers, no queue limit. Before its first answer nothing
    tells it from a slow hosted API, and the first flood times out once; the timeouts (most
    of a window) set the ceiling at once, and the floor is read from served answers only (a
    floor read from timeouts, 120 s, hid the queue: a flood every 120 s, 0.45-0.5 of it)."""
    c = controller()
    trace = run_matrix(c, AccountLimits(rpm=None, concurrency=4, queue=10**6), 500.0, seed=seed, style="vllm",
                       latency_s=20.0, timeout_s=120.0)
    assert c.sent < 25_000  # one flood (the lane's hard maximum in flight), not one per deadline
    assert sum(trace.timed_out.get(k, 0) for k in range(300, 500)) == 0
    assert trace.goodput_share(300.0, 500.0, 4 / 20.0 * 60) >= 0.9


@pytest.mark.parametrize("seed", range(3))
def test_a_big_batch_with_long_answers_is_flooded_no_further_than_its_answers_can_wait(seed):
    """256 slots, 5-s answers, no queue limit: the first answers come 5 s after the climb began,
    when it had 20,000 in flight (54% of a 5-minute run's attempts timed out). In flight is held
    to 1,000 until the answers show more: a queue of 20 s, within the deadline."""
    c = controller()
    trace = run_matrix(c, AccountLimits(rpm=None, concurrency=256, queue=10**6), 300.0, seed=seed, style="vllm",
                       latency_s=5.0, timeout_s=120.0)
    assert trace.max_in_flight <= 5_000  # (the flood held 20,000: the hard maximum)
    assert sum(trace.timed_out.values()) == 0
    assert trace.goodput_share(0.0, 300.0, 256 / 5.0 * 60) >= 0.9


def test_what_the_answers_showed_the_server_holds_never_falls_when_the_lane_sent_fewer_an_answer_time_ago():
    # 20,000 RPM, 20-s answers: the lane's first 1,000 in flight (before answers show more) held it for an answer
    # time; the answers to that stretch came back few, "showed" a server of ~150, and held the lane to 1,204 in
    # flight again, an answer time after the first stall
    watch = QueueWatch()
    events = [(i * 0.02, "sent") for i in range(500)] + [(i * 0.02 + 20.0, "back") for i in range(500)]
    events += [(10.0 + i, "sent") for i in range(10)] + [(30.0 + i, "back") for i in range(10)]  # then a trickle
    for t, kind in sorted(events):
        if kind == "sent":
            watch.sent(t)
        else:
            watch.answered(t, 20.0, 1_000, None)
    assert watch.floor_s == pytest.approx(20.0)
    assert watch.shown() >= 900.0  # 50 a second came back, each 20 s in flight: it held ~1,000
