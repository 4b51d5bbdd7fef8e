"""Invariants of the adaptive rate controller, on a fake clock against a token-bucket
provider model (tests/core/provider_model.py), over many seeds; nothing sleeps.

With an unknown ceiling it converges to >= 95% goodput with <= 1% refused; after the
ceiling drops to a third, refusals fall under 2% within two windows; after it rises, the
new ceiling is reached within a bounded number of windows; TPM-bound traffic without
headers is held under the TPM ceiling. Overload never lowers a learned ceiling, headers
seed and cap, hints are start points, idle allowance does not grow, bursts are learned
apart from the sustained rate, and the state survives a JSON round trip."""

import json
import random

import pytest

from promptforge_dagster.core.adaptive_rate import AdaptiveConfig, AdaptiveRateController, Phase
from promptforge_dagster.core.outcome import OutcomeKind
from promptforge_dagster.core.rate_controller import RateSample
from promptforge_dagster.core.rate.headers import RateSignals
from promptforge_dagster.simulator.account import AccountLimits, parse_schedule
from tests.core.provider_model import run_model

W = 10.0
K = OutcomeKind
SEEDS = range(8)


def controller(**kw):
    return AdaptiveRateController(AdaptiveConfig(window_s=W, **kw), now=0.0)


def ceiling_for(seed):
    return random.Random(seed).choice([300, 600, 900, 1500, 2400, 3600])


@pytest.mark.parametrize("seed", SEEDS)
def test_unknown_ceiling_converges_to_high_goodput_and_few_refusals(seed):
    rpm = ceiling_for(seed)
    c = controller()
    trace = run_model(c, AccountLimits(rpm=rpm, burst_s=2.0), 40 * W, seed=seed,
                      latency=random.Random(seed).uniform(0.1, 1.0))
    assert trace.goodput_share(20 * W, 40 * W, rpm) >= 0.95
    assert trace.refused_share(20 * W, 40 * W) <= 0.01
    assert c.ceiling_rpm == pytest.approx(rpm, rel=0.08)


@pytest.mark.parametrize("seed", SEEDS)
def test_after_the_ceiling_drops_to_a_third_refusals_fall_within_two_windows(seed):
    rpm = ceiling_for(seed) * 3 // 3 * 3  # a multiple of 3
    drop_at = 30 * W
    limits = AccountLimits(rpm=rpm, burst_s=2.0, schedule=parse_schedule(f"0:{rpm},{drop_at}:{rpm // 3}"))
    trace = run_model(controller(), limits, drop_at + 30 * W, seed=seed)
    assert trace.refused_share(drop_at + 2 * W, drop_at + 30 * W) < 0.02
    assert trace.goodput_share(drop_at + 2 * W, drop_at + 30 * W, rpm // 3) >= 0.9


@pytest.mark.parametrize("seed", SEEDS)
def test_after_the_ceiling_rises_it_is_reached_within_bounded_windows(seed):
    rpm = ceiling_for(seed)
    rise_at = 30 * W
    limits = AccountLimits(rpm=rpm, burst_s=2.0, schedule=parse_schedule(f"0:{rpm},{rise_at}:{rpm * 4}"))
    trace = run_model(controller(), limits, rise_at + 30 * W, seed=seed)
    reached = next((i for i in range(30) if trace.goodput_share(rise_at + i * W, rise_at + (i + 1) * W, rpm * 4) >= 0.9),
                   None)
    assert reached is not None and reached <= 12
    assert trace.refused_share(rise_at, rise_at + 30 * W) < 0.02


@pytest.mark.parametrize("seed", SEEDS)
def test_tpm_bound_traffic_without_headers_is_held_under_the_tpm_ceiling(seed):
    tpm = random.Random(seed).choice([30_000, 90_000, 200_000])
    c = controller()
    trace = run_model(c, AccountLimits(rpm=None, tpm=tpm, burst_s=2.0), 40 * W, seed=seed,
                      tokens=lambda rng: rng.randint(60, 300))  # the 429 body says "tokens per min"
    share = trace.token_share(20 * W, 40 * W, tpm)
    assert 0.9 <= share <= 1.0 + 2.0 / (20 * W)  # under the ceiling, give or take the provider's 2 s burst
    assert trace.refused_share(20 * W, 40 * W) <= 0.02
    assert c.ceiling_tpm == pytest.approx(tpm, rel=0.1)


@pytest.mark.parametrize("seed", SEEDS)
def test_tpm_bound_with_a_silent_provider_learns_both_ceilings_and_stays_under(seed):
    """Neither headers nor message say which limit: both are learned from one measurement
    and both pace, so mixed prompt sizes neither overrun the TPM ceiling nor waste it."""
    tpm = random.Random(seed).choice([30_000, 90_000, 200_000])
    c = controller()
    trace = run_model(c, AccountLimits(rpm=None, tpm=tpm, burst_s=2.0), 40 * W, seed=seed, says_limit=False,
                      tokens=lambda rng: rng.randint(80, 120))
    share = trace.token_share(20 * W, 40 * W, tpm)
    assert 0.9 <= share <= 1.0 + 2.0 / (20 * W)
    assert trace.refused_share(20 * W, 40 * W) <= 0.02
    assert c.ceiling_tpm is not None and c.ceiling_rpm is not None


@pytest.mark.parametrize("seed", SEEDS)
def test_long_answers_do_not_slow_learning(seed):
    """Answers that take seconds (long completions) must not stretch a measurement: a
    request counts as admitted once its refusal, which comes back fast, could no longer
    arrive. Converges and follows a drop as with fast answers."""
    rng = random.Random(seed)
    rpm, latency = ceiling_for(seed) // 3 * 3, rng.uniform(2.0, 6.0)
    c = controller()
    trace = run_model(c, AccountLimits(rpm=rpm, burst_s=2.0), 40 * W, seed=seed, latency=latency, max_in_flight=2048)
    assert trace.goodput_share(20 * W, 40 * W, rpm) >= 0.95
    assert trace.refused_share(20 * W, 40 * W) <= 0.01
    drop_at = 30 * W
    limits = AccountLimits(rpm=rpm, burst_s=2.0, schedule=parse_schedule(f"0:{rpm},{drop_at}:{rpm // 3}"))
    trace = run_model(controller(), limits, drop_at + 30 * W, seed=seed, latency=latency, max_in_flight=2048)
    assert trace.refused_share(drop_at + 2 * W, drop_at + 30 * W) < 0.02
    assert trace.goodput_share(drop_at + 2 * W, drop_at + 30 * W, rpm // 3) >= 0.9


def sample(at, kind, sent_at=None, tokens=100, signals=RateSignals(), limit=None):
    return RateSample(sent_at if sent_at is not None else at - 0.2, at, kind, tokens, tokens, signals, limit)


def saturate(c, until, start=0.0, step=0.01):
    """Keep asking for sends (a job with unlimited demand), all answered OK."""
    t = start
    while t < until:
        if c.acquire(t, 100) == 0.0:
            c.record(sample(t + 0.001, K.SUCCESS, sent_at=t))
        t += step
    return t


def test_overload_backs_off_without_lowering_the_learned_ceiling():
    c = controller(rpm_hint=600)
    before = c.ceiling_rpm
    c.record(sample(1.0, K.OVERLOADED))
    assert c.acquire(1.0, 100) > 0.2  # paused
    assert c.ceiling_rpm == before and c.decreases == 0
    c.record(sample(2.0, K.OVERLOADED, sent_at=1.9))
    assert c.acquire(2.0, 100) > 0.5  # backoff grows with consecutive overloads


def test_retry_after_pauses_the_lane_after_a_decrease():
    c = controller(rpm_hint=600)
    c.last_decrease_at = 0.5  # a decrease just happened: refusals within the window only pause
    c.record(sample(1.0, K.RATE_LIMITED, sent_at=0.9, signals=RateSignals(retry_after_s=3.0)))
    assert c.acquire(1.0, 100) == pytest.approx(3.0)


def test_headers_seed_the_ceiling_and_cap_the_rate():
    c = controller()
    assert c.phase is Phase.SLOW_START
    c.record(sample(0.5, K.SUCCESS, signals=RateSignals(limit_requests=1200)))
    assert c.phase is Phase.AVOIDANCE
    assert c.rate * 60 == pytest.approx(1200 * 0.97, rel=0.01)
    saturate(c, 10 * W, start=0.6)
    assert c.rate * 60 <= 1200 + 1e-6


def test_hints_are_start_points_not_caps():
    c = controller(rpm_hint=300)
    trace = run_model(c, AccountLimits(rpm=1200, burst_s=2.0), 40 * W, seed=1)
    assert c.rate * 60 > 600
    assert trace.goodput_share(20 * W, 40 * W, 1200) >= 0.95


def test_no_growth_while_the_allowance_is_not_used():
    c = controller()
    start = c.rate
    t = 0.0
    while t < 10 * W:  # one request every 5 s: far under the 1 req/s allowance
        assert c.acquire(t, 100) == 0.0
        c.record(sample(t + 0.3, K.SUCCESS, sent_at=t))
        t += 5.0
    assert c.rate == pytest.approx(start)


def test_in_flight_refusals_cause_one_decrease_per_window():
    c = controller(rpm_hint=600)
    saturate(c, 2 * W)
    rate = c.rate
    for i in range(40):  # many in-flight requests refused together
        c.record(sample(2 * W + 0.01 * i, K.RATE_LIMITED, sent_at=2 * W - 0.5 + 0.001 * i))
    saturate(c, 2 * W + 3.0, start=2 * W + 0.5)
    assert c.decreases == 1
    assert c.rate < rate


def test_a_refused_burst_after_idle_measures_the_providers_burst_not_the_rate():
    c = controller(rpm_hint=600)
    c.burst_s = 4.0
    c._sync(0.0)
    saturate(c, W)
    rate, ceiling = c.rate, c.ceiling_rpm
    idle_end = W + 20.0  # an idle gap fills the bucket
    sent = []
    t = idle_end
    while c.acquire(t, 100) == 0.0:
        sent.append(t)
    assert len(sent) >= 30  # about 4 s of the 10/s rate went at once
    admitted = 20  # the provider held 2 s of its rate
    for i, s_at in enumerate(sent):
        kind = K.SUCCESS if i < admitted else K.RATE_LIMITED
        c.record(sample(idle_end + 0.2 + 0.001 * i, kind, sent_at=s_at))
    c.acquire(idle_end + 5.0, 100)  # the burst is over
    expected = admitted / (ceiling / 60.0) * (1 - 2 * c.cfg.margin)
    assert c.burst_refusals == 1 and c.burst_s == pytest.approx(expected, rel=0.05)
    assert c.rate >= rate * 0.99 and c.ceiling_rpm == ceiling and c.decreases == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_bursty_demand_uses_the_providers_burst_with_few_refusals(seed):
    """Demand on half the time: after each idle gap the provider's burst lifts goodput
    above the sustained bound (0.5 of the ceiling) to >= 95% of what the account can give
    ((on time + burst) / period), and once the burst is learned few requests are refused."""
    c = controller()
    rpm = random.Random(seed).choice([600, 1200, 2400])
    period = 10 * W
    trace = run_model(c, AccountLimits(rpm=rpm, burst_s=10.0), 30 * period, seed=seed, latency=0.15,
                      demand=lambda t: t % period < period / 2)
    best = (period / 2 + 10.0) / period
    assert trace.goodput_share(10 * period, 30 * period, rpm) >= 0.95 * best
    assert trace.refused_share(10 * period, 30 * period) <= 0.02
    assert c.ceiling_rpm == pytest.approx(rpm, rel=0.15)  # measured in bursts of demand: a little looser


def test_state_round_trips_through_json_and_warm_starts_at_the_ceiling():
    c = controller()
    run_model(c, AccountLimits(rpm=900, burst_s=2.0), 20 * W, seed=3)
    state = json.loads(json.dumps(c.export_state()))
    warm = AdaptiveRateController.from_state(state, now=1000.0)
    assert warm.phase is not Phase.SLOW_START
    assert warm.ceiling_rpm == pytest.approx(c.ceiling_rpm)
    assert warm.rate * 60 >= 0.9 * 900
    snap = warm.snapshot()
    assert {"phase", "allowed_rpm", "learned_rpm_ceiling", "learned_tpm_ceiling", "rate_limited"} <= set(snap)
    json.dumps(snap)


def test_config_is_validated():
    with pytest.raises(ValueError):
        AdaptiveConfig(window_s=0)
    with pytest.raises(ValueError):
        AdaptiveConfig(rpm_hint=-5)



def test_far_above_the_ceiling_the_measurement_runs_at_half_the_refused_rate():
    """Slow start overshoots: measuring at the refused rate would cost a refusal for every
    request above the ceiling. At half of it the share admitted still tells the ceiling."""
    c = controller()
    t = saturate(c, 12.0)
    c.acquire(t, 100)
    refused_rate = c.rate
    c.record(sample(t, K.RATE_LIMITED, sent_at=t - 0.01))
    assert c.rate == pytest.approx(refused_rate / 2)
    sent = 0
    while c.decreases == 0:  # an account admitting one request in three of what is sent
        if c.acquire(t, 100) == 0.0:
            sent += 1
            c.record(sample(t + 0.05, K.SUCCESS if sent % 3 == 0 else K.RATE_LIMITED, sent_at=t))
        t += 0.001
    assert c.ceiling_rpm == pytest.approx(refused_rate / 2 / 3 * 60, rel=0.1)


def test_a_cut_under_the_ceiling_brackets_it_and_the_next_refusal_is_measured_uncut():
    c = controller()
    t = saturate(c, 12.0)
    c.acquire(t, 100)
    refused_rate = c.rate
    c.record(sample(t, K.RATE_LIMITED, sent_at=t - 0.01))
    t = saturate(c, t + 3.0, start=t)  # at half the rate everything passes: under the ceiling
    assert c.decreases == 1 and c.ceiling_rpm is None
    while c.rate < refused_rate * 0.99:
        t = saturate(c, t + 0.5, start=t)
        assert c.rate <= refused_rate * (1 + 1e-9)  # climbs back, no higher than what was refused
    t = saturate(c, t + 0.5 * W, start=t)
    assert c.rate == pytest.approx(refused_rate)  # and holds there a while
    c.record(sample(t, K.RATE_LIMITED, sent_at=t - 0.01))
    assert c.rate == pytest.approx(refused_rate)  # close to the ceiling now: measured where it is


def test_admissions_beyond_what_the_old_ceiling_refills_say_it_rose():
    """Since the account was last dry it can admit no more than its ceiling refills; when
    it does, the ceiling rose and the controller climbs (slow start) to find it."""
    c = controller(rpm_hint=600)
    c.record(sample(0.5, K.RATE_LIMITED, sent_at=0.4))  # the account is dry here
    saturate(c, 0.5 + 4 * W, start=0.6)  # then everything sent is admitted, probes too
    assert c.phase is Phase.SLOW_START
    assert c.rate * 60 > 600 * (1 + c.cfg.exit_probe)


@pytest.mark.parametrize("seed", range(4))
def test_idle_gaps_and_the_providers_burst_do_not_look_like_a_risen_ceiling(seed):
    """After a gap the provider's burst admits far more than the ceiling for a while; it
    only spends what the gap refilled, so the controller never climbs above the ceiling."""
    from promptforge_dagster.simulator.account import SimulatedAccount

    account = SimulatedAccount(AccountLimits(rpm=600, burst_s=10.0), now=0.0)
    c = controller()
    rng = random.Random(seed)
    t, climbed_after_learning = 0.0, 0
    while t < 60 * W:
        if t % (4 * W) < 2 * W and c.acquire(t, 100) == 0.0:  # demand on, then off, in turn
            adm = account.admit(t, 100)
            c.record(sample(t + rng.uniform(0.1, 0.3) if adm.ok else t + 0.01,
                            K.SUCCESS if adm.ok else K.RATE_LIMITED, sent_at=t))
        if c.ceiling_rpm and t > 20 * W:
            climbed_after_learning += c.phase is Phase.SLOW_START
        t += 0.005
    assert c.ceiling_rpm == pytest.approx(600, rel=0.1)
    assert climbed_after_learning == 0


def test_memory_stays_flat_however_many_requests_go():
    """A 10M-prompt job must hold what a 100-prompt one does: nothing the controller keeps
    per request may outlive a window."""
    import tracemalloc

    c = controller()
    t, sent = 0.0, 0

    def run(until):
        nonlocal t, sent
        while sent < until:
            if c.acquire(t, 100) == 0.0:
                sent += 1
                c.record(sample(t + 0.2, K.SUCCESS, sent_at=t))
            t += 0.001

    tracemalloc.start()
    try:
        run(20_000)
        before = tracemalloc.get_traced_memory()[0]
        run(120_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024


def test_a_very_low_estimate_is_probed_within_a_few_windows():
    """Probes are spaced by requests (each costs a refusal or two), but never by more than
    a few windows: at a tiny estimate, 100 requests would be a quarter of an hour."""
    c = controller(rpm_hint=6)
    run_model(c, AccountLimits(rpm=600, burst_s=2.0), 12 * W, seed=1)
    assert c.rate * 60 > 60


def test_a_tpm_hint_is_a_start_point_paced_by_each_requests_tokens():
    """With --tpm-hint the lane starts at the hint once request sizes are known, without
    the slow-start overshoot, and paces by each request's tokens: mixed sizes fill the
    ceiling instead of being held to the p95 (which with 100-1000 tokens is 0.55 of it)."""
    tpm = 60_000
    c = controller(tpm_hint=tpm)
    trace = run_model(c, AccountLimits(rpm=None, tpm=tpm, burst_s=2.0), 6 * W, seed=1,
                      tokens=lambda rng: rng.randint(100, 1000))
    assert trace.refused_share(0, 2 * W) == 0
    assert trace.token_share(W, 6 * W, tpm) >= 0.9
