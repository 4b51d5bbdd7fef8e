"""Invariant: refusals whose share does not follow the rate (a busy shared pool's) are told
from a limit's by how the share moved with the rate, and once told they lower nothing; a
limit's refusals are never taken for them (Vertex AI's dynamic shared quota, PROVIDERS.md)."""

import random
import statistics

import pytest

from promptforge_dagster.core.outcome import OutcomeKind
from promptforge_dagster.core.rate.background import Background
from promptforge_dagster.core.rate.controller import AdaptiveController
from promptforge_dagster.core.rate.signals import parse_signal
from promptforge_dagster.core.rate_controller import RateSample
from promptforge_dagster.simulator.account import AccountLimits, Admission, SimulatedAccount
from promptforge_dagster.simulator.styles import message_of, refusal
from tests.core import provider_matrix as pm
from tests.core.rate_scenarios import SCENARIOS, controller, run


def feed(b, seconds, rate, share, *, start, under_ceiling, rng):
    """``rate`` sends a second for ``seconds``, each refused with probability ``share``."""
    for i in range(int(seconds * rate)):
        t = start + i / rate
        b.sent(t, rate, under_ceiling)
        b.answered(t, rng.random() < share, now=t + 0.05)


def test_a_share_refused_alike_far_under_and_at_the_rate_is_the_background():
    rng, b = random.Random(1), Background()
    feed(b, 30, 20.0, 0.04, start=0.0, under_ceiling=False, rng=rng)
    feed(b, 60, 8.0, 0.04, start=30.0, under_ceiling=True, rng=rng)
    assert b.found and 0.01 < b.share < 0.08


def test_refusals_that_stop_under_a_lower_rate_are_a_limits():
    rng, b = random.Random(1), Background()
    feed(b, 30, 20.0, 0.04, start=0.0, under_ceiling=False, rng=rng)  # over a ceiling...
    feed(b, 60, 8.0, 0.0, start=30.0, under_ceiling=True, rng=rng)  # ... and none refused under it
    assert not b.found


def test_refusals_at_a_lower_rate_not_yet_paced_under_a_ceiling_are_no_evidence():
    rng, b = random.Random(1), Background()
    feed(b, 30, 20.0, 0.04, start=0.0, under_ceiling=False, rng=rng)
    feed(b, 60, 8.0, 0.04, start=30.0, under_ceiling=False, rng=rng)  # still searching: may be over it
    assert not b.found


def test_once_found_a_run_of_refusals_is_a_limits_and_a_lone_one_is_not():
    rng, b = random.Random(1), Background()
    feed(b, 30, 20.0, 0.04, start=0.0, under_ceiling=False, rng=rng)
    feed(b, 60, 8.0, 0.04, start=30.0, under_ceiling=True, rng=rng)
    for i in range(50):
        b.sent(90.0 + i / 20, 20.0, True)
        b.answered(90.0 + i / 20, False, now=90.0 + i / 20)
    assert b.answered(92.5, True, now=92.6) is False  # one refusal among 50 answers: the background's
    passed = [b.answered(92.6, True, now=92.7) for _ in range(8)]
    assert passed[-1] is True and passed[0] is False  # a run of them: a limit's


def test_the_share_never_rises_above_what_was_found():
    rng, b = random.Random(1), Background()
    feed(b, 30, 20.0, 0.04, start=0.0, under_ceiling=False, rng=rng)
    feed(b, 60, 8.0, 0.04, start=30.0, under_ceiling=True, rng=rng)
    found = b.share
    feed(b, 60, 20.0, 0.3, start=90.0, under_ceiling=True, rng=rng)  # a ceiling measured too high refuses a lot
    assert b.share <= found


def scenario(name):
    return next(s for s in SCENARIOS if s.name == name)


def test_a_busy_shared_pool_does_not_hold_the_lane_down():
    """3% of requests refused whatever the rate: the engine of 8aefcb4 reached 0.165 of the
    ceiling on average over 8 seeds (0.048 at worst), that of 06a85ac 0.56 (0.05), which cut
    on each lone refusal in the pool's words; the refused share is the pool's (3%) and a few more."""
    rows = [run(scenario("vertex-1200-pool-3pct"), seed)[0] for seed in range(8)]
    assert statistics.mean(g for g, _ in rows) >= 0.8
    assert max(r for _, r in rows) <= 0.09


@pytest.mark.parametrize("name", ["bucket-600", "bucket-20000-40ms", "bucket-1200-refusals-charged", "sliding-1200",
                                  "fixed-1200", "azure-600-1s-window", "tpm-120k-bare-mixed",
                                  "shifting-900-300-1200"])
def test_a_limits_own_refusals_are_never_taken_for_a_busy_pool(name):
    s = scenario(name)
    for seed in range(4):
        c = controller()
        pm.run_matrix(c, s.limits, s.duration, seed=seed, **s.kw)
        assert not c.background.found, seed


START_S = 3.0  # the lane has climbed to ~8 requests/s: its climb back from one refusal is long


class OneRefusal(SimulatedAccount):
    """A 3,000 RPM bucket that refuses, once, the first request sent after START_S, as ``KIND``
    words it (a busy pool's, unless told)."""

    KIND = "pool"

    def admit(self, now, tokens):
        if now >= START_S and not getattr(self, "spent", False):
            self.spent = True
            return Admission(False, self.KIND)
        return super().admit(now, tokens)


def test_a_lone_refusal_early_in_a_cold_start_is_outgrown(monkeypatch):
    """Climbing back past every rate refused, a lane's steps grow again, and past twice the
    highest it doubles (it climbed 10% a step: 0.30 of a 3,000 RPM account from 15 to 20 s at
    8aefcb4, 0.62 with doubling past twice, 1.3 with steps that grow: the account's burst too)."""
    monkeypatch.setattr(pm, "SimulatedAccount", OneRefusal)
    c = controller()
    trace = pm.run_matrix(c, AccountLimits(rpm=3000), 20.0, seed=0, style="vertex", latency_s=0.05)
    assert trace.goodput_share(15.0, 20.0, 3000) >= 0.9





def test_the_summary_says_what_share_a_busy_pool_refused():
    from promptforge_dagster.cli import _lanes_line

    s = scenario("vertex-1200-pool-1pct")
    c = controller()
    pm.run_matrix(c, s.limits, 2 * s.duration, seed=0, **s.kw)  # (a 1% share shows in 1-2 minutes: four, to be sure)
    share = c.snapshot()["background_refused_share"]
    assert share is not None and 0.002 <= share <= 0.03
    assert "by a busy shared pool: retried, not a limit" in _lanes_line({"openai/m": c.snapshot()})
    assert controller().snapshot()["background_refused_share"] is None


def test_the_metrics_carry_a_busy_pools_share_per_lane():
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from promptforge_dagster.core.pipeline import JobStats
    from promptforge_dagster.core.rate_lanes import RateLanes
    from promptforge_dagster.telemetry import JobTelemetry, meter_provider

    s = scenario("vertex-1200-pool-1pct")
    c = controller()
    pm.run_matrix(c, s.limits, 2 * s.duration, seed=0, **s.kw)  # (a 1% share shows in 1-2 minutes: four, to be sure)
    lanes = RateLanes(lambda _lane: c, key_hash="k9")
    lanes.controller(lanes.lane("gemini-2.5-flash"))
    reader = InMemoryMetricReader()
    provider = meter_provider([reader], env={})
    JobTelemetry(provider.get_meter("t"), "job-1", JobStats(), lanes)
    shares = [p.value for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
              for m in sm.metrics if m.name == "promptforge.rate.background_refused_share" for p in m.data.data_points]
    provider.shutdown()
    assert shares == [c.snapshot()["background_refused_share"]] and 0.0 < shares[0] < 0.05


def test_no_background_is_looked_for_while_other_jobs_pace_on_the_lane():
    """Their load refuses a share this lane's rate does not move, as a pool would."""
    rng, b = random.Random(1), Background()
    b.looking = False  # lane sharing says other jobs are on the lane
    feed(b, 30, 20.0, 0.04, start=0.0, under_ceiling=False, rng=rng)
    feed(b, 60, 8.0, 0.04, start=30.0, under_ceiling=True, rng=rng)
    assert not b.found
    b.looking = True  # they left: the same evidence, read again
    feed(b, 60, 8.0, 0.04, start=90.0, under_ceiling=True, rng=rng)
    assert b.found


@pytest.mark.parametrize("kind, style, cut", [
    ("pool", "vertex", False),  # "Resource exhausted, please try again later": a shared pool's words
    ("requests", "bare", True),  # an empty 429: a limit's, for all the lane knows
    ("requests", "openai", True),  # a limit named
])
def test_a_lone_refusal_in_a_shared_pools_words_does_not_cut_a_cold_start(monkeypatch, kind, style, cut):
    """Vertex AI's pay-as-you-go 429 is its shared pool's (its docs, "Error code 429"): one
    with no other refusal among the latest answers teaches nothing while the lane searches
    (a pool refusing 3% cut a cold start from 480 to 60 RPM in 14 s); any other refusal cuts."""
    account = type("Account", (OneRefusal,), {"KIND": kind})
    monkeypatch.setattr(pm, "SimulatedAccount", account)
    c = controller()
    pm.run_matrix(c, AccountLimits(rpm=3000), START_S + 1.0, seed=0, style=style, latency_s=0.05)
    assert c.rate_limited == 1
    assert (c.requests.decreases > 0) is cut


def test_a_second_refusal_among_the_latest_answers_is_a_limits_in_any_words():
    b = Background()
    for i in range(8):
        b.sent(i * 0.1, 10.0)
        b.answered(i * 0.1, i in (3, 6), now=i * 0.1 + 0.05)
        if i == 3:
            assert b.lone  # the first refusal, alone among the latest answers
    assert not b.lone  # the second, three answers later: a run, not a lone one


def vertex_quota_signal(kind):
    status, body, headers = refusal("vertex-quota", Admission(False, kind, 1.0, {}, 1200.0, 1200.0))
    return parse_signal(status, message_of(body), headers)


@pytest.mark.parametrize("named_first", [True, False])
def test_once_a_refusal_named_the_limit_one_in_a_shared_pools_words_is_the_pools(named_first):
    """Vertex AI words a project's quota by its metric and its busy shared pool as "Resource
    exhausted, please try again later" (its docs, "Error code 429"): once a 429 named the
    limit, one in the pool's words is the provider's capacity and lowers nothing; before,
    it may be the limit's (a provider that words its limit so)."""
    c = AdaptiveController.from_state({"ceiling_rpm": 1200.0}, now=0.0)
    if named_first:
        c.record(RateSample(0.0, 0.1, OutcomeKind.RATE_LIMITED, 1, 1, signal=vertex_quota_signal("requests")))
    for i in range(40):  # admitted at the estimate, then one refused in the pool's words among them
        c.record(RateSample(1.0 + i * 0.05, 1.3 + i * 0.05, OutcomeKind.SUCCESS, 1, 1))
    estimate, decreases = c.requests.estimate, c.requests.decreases
    c.record(RateSample(3.0, 3.1, OutcomeKind.RATE_LIMITED, 1, 1, signal=vertex_quota_signal("pool")))
    assert c.capacity_refused == (1 if named_first else 0)
    if named_first:
        assert (c.requests.estimate, c.requests.decreases) == (estimate, decreases)
