"""The pipeline's two small parts: waiting for a pacer slot (core/pacing.py) and one prompt's
retry policy (core/retry.py). Fake time throughout: sleeping only moves the clock."""

from __future__ import annotations

import asyncio
import random

from promptforge_dagster.core.deployments import Deployment, DeploymentGroup
from promptforge_dagster.core.in_flight import LIMIT_RECHECK_S
from promptforge_dagster.core.outcome import OutcomeKind
from promptforge_dagster.core.pacing import LanePacing
from promptforge_dagster.core.pipeline_config import PipelineConfig
from promptforge_dagster.core.rate_controller import FixedRateController
from promptforge_dagster.core.rate_lanes import RateLanes
from promptforge_dagster.core.retry import Retries


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def _inline(f, *args):
    return f(*args)


def _pacing(lanes: RateLanes, t: FakeTime, no_room=lambda: False) -> LanePacing:
    return LanePacing(lanes, clock=t.clock, sleep=t.sleep, offload=_inline, no_room=no_room)


def test_senders_on_one_lane_go_at_the_controllers_rate_in_turn():
    t = FakeTime()
    c = FixedRateController(120.0, now=0.0, burst=1.0)  # two a second, no saved-up burst
    pacing = _pacing(RateLanes.single(c), t)
    sent: list[tuple[int, float]] = []

    async def sender(i: int) -> None:
        await pacing.pace("all", c, est_tokens=1)
        sent.append((i, t.now))

    async def main() -> None:
        await asyncio.gather(*(sender(i) for i in range(6)))

    asyncio.run(main())
    assert [i for i, _ in sent] == list(range(6))  # in the order they asked
    times = [at for _, at in sent]
    assert all(b - a >= 0.5 - 1e-9 for a, b in zip(times, times[1:])), times  # never faster than 2/s
    assert times[-1] <= 2.5 + 1e-9, times  # and no slower


def test_no_slot_is_taken_while_the_in_flight_bound_is_reached():
    t = FakeTime()
    c = FixedRateController(None, now=0.0)  # unlimited: only the bound holds the sender back
    full_until = 3 * LIMIT_RECHECK_S
    pacing = _pacing(RateLanes.single(c), t, no_room=lambda: t.now < full_until - 1e-9)
    asyncio.run(pacing.pace("all", c, est_tokens=1))
    assert t.now >= full_until - 1e-9 and t.sleeps == [LIMIT_RECHECK_S] * 3


def test_a_group_takes_turns_between_deployments_and_gives_up_once_all_are_dropped():
    t = FakeTime()
    lanes = RateLanes(lambda _lane: FixedRateController(None, now=0.0))
    group = DeploymentGroup("m", [Deployment("eu", "m", "openai/m", api_key="k1"),
                                  Deployment("us", "m", "openai/m", api_key="k2")])
    pacing = _pacing(lanes, t)

    async def picks(n: int) -> list[str | None]:
        await pacing.open_lanes(group)
        out = []
        for _ in range(n):
            d, _controller = await pacing.pace_group(group, est_tokens=1)
            out.append(d.id if d else None)
        return out

    assert asyncio.run(picks(4)) == ["eu", "us", "eu", "us"]
    group.drop("eu", "HTTP 401")
    group.drop("us", "HTTP 401")
    assert asyncio.run(picks(1)) == [None]


def test_a_prompt_is_retried_until_its_kind_of_failure_runs_out():
    cfg = PipelineConfig(max_attempts=3, max_rate_limited=2)
    r = Retries(cfg)
    assert [r.failed(OutcomeKind.TRANSIENT) for _ in range(3)] == [None, None, "retries_exhausted"]
    r = Retries(cfg)
    assert r.failed(OutcomeKind.RATE_LIMITED) is None
    assert r.failed(OutcomeKind.OVERLOADED) is None  # counted apart from refusals
    assert r.failed(OutcomeKind.RATE_LIMITED) == "rate_limited"
    assert Retries(cfg).failed(OutcomeKind.PERMANENT) == "provider_error"  # never retried


def test_a_refused_prompt_waits_what_the_provider_said_and_a_failed_one_backs_off_doubling():
    rng = random.Random(7)
    r = Retries(PipelineConfig(backoff_base_s=1.0, backoff_cap_s=30.0))
    r.failed(OutcomeKind.RATE_LIMITED)
    assert r.delay(OutcomeKind.RATE_LIMITED, 2.5, rng) == 2.5
    waits = []
    for _ in range(4):
        r.failed(OutcomeKind.TRANSIENT)
        waits.append(r.delay(OutcomeKind.TRANSIENT, None, rng))
    for n, wait in enumerate(waits, start=1):  # jittered within [cap/2, cap], cap = base x 2^(n-1)
        cap = 1.0 * 2 ** (n - 1)
        assert cap / 2 <= wait <= cap, (n, wait)
    assert r.delay(OutcomeKind.TRANSIENT, 60.0, rng) == 60.0  # never sooner than retry-after
