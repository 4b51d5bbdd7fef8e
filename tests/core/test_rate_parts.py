"""Each part of core/rate/ on its own, through its public interface, on explicit times:
signals read what each provider says (and nothing it does not), the estimator measures a
bucket's refill exactly between two dry moments, the pacer is smooth, the in-flight bound
follows Little's law, and the axis moves through its transition table."""

import pytest

from promptforge_dagster.core.outcome import OutcomeKind, classify
from promptforge_dagster.core.rate.axis import Axis
from promptforge_dagster.core.rate.machine import AxisMachine
from promptforge_dagster.core.rate.phases import TRANSITIONS, Event, Phase
from promptforge_dagster.core.rate.burst import BurstLearner
from promptforge_dagster.core.rate.concurrency import InFlightLimit
from promptforge_dagster.core.rate.config import Concurrency, RateConfig, Steady
from promptforge_dagster.core.rate.controller import AdaptiveController
from promptforge_dagster.core.rate.estimator import CeilingEstimator
from promptforge_dagster.core.rate.pacer import Pacer
from promptforge_dagster.core.rate.prober import Prober
from promptforge_dagster.core.rate.signals import parse_signal
from promptforge_dagster.core.rate.window import WindowLearner
from promptforge_dagster.core.rate_controller import RateSample
from promptforge_dagster.simulator.account import AccountLimits, Admission, SimulatedAccount
from promptforge_dagster.simulator.styles import AZURE_PEAK_MESSAGE, STYLES, message_of, refusal
from tests.core.rate_scenarios import Scenario, budgeted_answers, run


@pytest.mark.parametrize("style, limit, value", [
    ("openai", "requests", 500.0), ("azure", "requests", None), ("anthropic", "requests", 500.0),
    ("gemini", "requests", 500.0), ("vertex", None, None), ("vertex-quota", "requests", None), ("bare", None, None),
    ("bedrock", "requests", None), ("mistral", "requests", None),
])
def test_each_providers_refusal_says_what_it_says(style, limit, value):
    status, body, headers = refusal(style, Admission(False, "requests", 2.5, {}, 500.0, 500.0), now_epoch=1e9)
    signal = parse_signal(status, message_of(body), headers, 1e9)
    assert (signal.limit, signal.limit_value) == (limit, value)
    assert classify(status, message_of(body)) is OutcomeKind.RATE_LIMITED  # Gemini's "quota" wording included


def test_token_refusals_are_told_apart_from_request_refusals():
    for style in ("openai", "azure", "anthropic", "gemini", "bedrock", "mistral"):
        status, body, headers = refusal(style, Admission(False, "tokens", 1.0, {}, 90_000.0, 89_000.0))
        assert parse_signal(status, message_of(body), headers).limit == "tokens", style


def test_a_full_queue_is_concurrency_and_a_providers_overload_is_not():
    status, body, _ = refusal("vllm", Admission(False, "concurrency"))
    assert parse_signal(status, message_of(body), {}).limit == "concurrency"
    assert parse_signal(529, "Overloaded", {}).limit is None
    assert set(STYLES) >= {"openai", "azure", "anthropic", "gemini", "vertex", "vllm", "bare"}


def test_geminis_overloaded_model_is_googles_capacity_not_a_concurrency_limit_but_tgis_full_queue_is():
    """Gemini answers 503 "The model is overloaded. Please try again later." when Google is
    short of capacity: a pause, and the lane's in-flight bound stays where it was; TGI's 429
    "Model is overloaded" (its queue is full) teaches a concurrency ceiling."""
    gemini = parse_signal(503, "The model is overloaded. Please try again later.", {})
    c = AdaptiveController.from_state({"ceiling_rpm": 600.0}, now=0.0)
    for i in range(5):
        c.record(RateSample(i, i + 0.5, OutcomeKind.OVERLOADED, 1, 1, signal=gemini, in_flight=40))
    assert c.in_flight.ceiling is None and c.snapshot()["concurrency_ceiling"] is None
    status, body, _ = refusal("openai", Admission(False, "concurrency"))  # TGI's words, whatever the style
    assert (status, message_of(body)) == (429, "Model is overloaded")
    c.record(RateSample(9.0, 9.5, OutcomeKind.RATE_LIMITED, 1, 1, signal=parse_signal(status, message_of(body), {}),
                        in_flight=40))
    assert c.in_flight.ceiling is not None and c.in_flight.ceiling < 40


def test_real_insufficient_quota_still_stops_the_job():
    assert classify(429, "You exceeded your current quota, please check your plan and billing details.") \
        is OutcomeKind.FATAL


def test_the_estimator_reads_a_buckets_refill_between_two_dry_moments():
    e = CeilingEstimator(min_sends=5, min_span_s=1.0, refusal_weight=0.0)
    for i in range(100):  # 10 sends a second for 10 s, whatever the burst
        e.sent(i / 10.0, 1.0)
    assert e.refused(0.05, 1.0) is None
    est = e.refused(9.95, 1.0)
    assert est.per_s == pytest.approx(9.9, rel=0.05)


def test_the_estimator_measures_nothing_across_a_pause_or_a_flood():
    e = CeilingEstimator(min_sends=2, min_span_s=1.0)
    for t in (0.0, 0.1, 0.2, 5.0, 5.1, 5.2):  # a pause of almost 5 s
        e.sent(t, 1.0)
    e.refused(0.0, 1.0)
    assert e.refused(5.2, 1.0) is None


@pytest.mark.parametrize("settle_s, measured", [(0.6, True), (0.25, False)])
def test_the_estimator_measures_across_the_lanes_own_settle_pause_but_no_longer_one(settle_s, measured):
    # with refusals 200 ms away a cut's pause (twice the slowest trip) outlasts 0.5 s: no span of a search measured
    # anything, and a 600 RPM lane climbed and was cut for two minutes (13% refused)
    e = CeilingEstimator(min_sends=5, min_span_s=1.0, refusal_weight=0.0)
    sends = [i / 10.0 for i in range(10)] + [1.5 + i / 10.0 for i in range(21)]  # 0.6 s paused after the first second
    for t in sends:
        e.sent(t, 1.0)
    assert e.refused(0.0, 1.0, settle_s=settle_s) is None
    est = e.refused(3.5, 1.0, settle_s=settle_s)
    assert (est is not None) is measured
    if measured:
        assert est.per_s == pytest.approx(30 / 3.5, rel=0.05)  # what was admitted over the span, pause and all


@pytest.mark.parametrize("held_until", [10.0, 1.0])
def test_the_estimator_measures_nothing_across_a_stretch_the_pacer_held_nothing_back(held_until):
    # 16,282 RPM, 6-s answers: the lane's first 1,000 in flight (before answers show more) held it to ~10,000 RPM
    # between two refusals, the pacer idle; the bucket refilled past its capacity meanwhile, and the span read as
    # the ceiling was 0.59 of it (0.855 of the ceiling over two minutes, 0.898 once not read)
    e = CeilingEstimator(min_sends=5, min_span_s=1.0, refusal_weight=0.0)
    for i in range(100):  # 10 sends a second, steady: no pause in sending
        if i / 10.0 < held_until:
            e.held(i / 10.0 + 0.05)  # the pacer held the next one back: the lane sent at its rate
        e.sent(i / 10.0, 1.0)
    assert e.refused(0.05, 1.0) is None
    est = e.refused(9.95, 1.0)
    if held_until > 9.95:
        assert est.per_s == pytest.approx(9.9, rel=0.05)
    else:  # held for the first second only: the next 9 s were sent under the rate, not at it
        assert est is None


def test_the_pacer_is_smooth_and_takes_a_request_larger_than_its_bucket():
    p = Pacer(per_s=100.0, now=0.0)
    sent = 0
    t = 0.0
    while t < 1.0:
        if p.wait(t, 1.0) == 0.0:
            p.take(t, 1.0)
            sent += 1
        t += 0.001
    assert 100 <= sent <= 104  # the rate plus at most 30 ms of burst
    assert p.wait(5.0, 500.0) < 5.0  # a request of 500 units is not refused for ever


def test_in_flight_follows_rate_times_latency_within_the_byte_budget_and_cap():
    limit = InFlightLimit(Concurrency(byte_budget=1_000_000), cap=None)
    for _ in range(50):
        limit.observe_latency(20.0)
    assert limit.limit(rate_per_s=100.0) == 3000  # 6,000 RPM x 20 s x 1.5
    assert limit.limit(rate_per_s=100.0, prompt_bytes=10_000) == 100  # 1 MB of prompts in flight at most
    assert InFlightLimit(Concurrency(), cap=64).limit(rate_per_s=100.0) == 64


def test_every_transition_leads_to_a_phase_and_names_an_action():
    for (phase, event), (after, action) in TRANSITIONS.items():
        assert isinstance(after, Phase) and hasattr(AxisMachine, "_" + action), (phase, event, action)
    assert TRANSITIONS[(Phase.DISCOVER, Event.REFUSED)][0] is Phase.BACKOFF
    assert all(TRANSITIONS[(p, Event.KNOWN)][0] is Phase.STEADY for p in Phase)


def test_discovery_doubles_only_while_the_pacer_holds_sends_back():
    a = Axis(RateConfig(window_s=5), start_per_s=10.0, now=0.0)
    for i in range(20):
        a.sent(i * 0.01, 1.0)
    a.tick(1.0)
    assert a.per_s == 10.0  # never held back: the rate is not what limits, so it does not grow
    a.blocked()
    a.tick(1.0)
    assert a.per_s == 20.0 and a.phase is Phase.DISCOVER


def test_a_stated_limit_is_paced_under_and_never_probed_past():
    a = Axis(RateConfig(window_s=5), start_per_s=1.0, now=0.0)
    a.known_limit(6000.0, now=0.0)
    a.blocked()
    a.tick(100.0)
    # a stated limit is exact: paced 1% under it (a measured one, 3% under: its own error)
    assert a.phase is Phase.STEADY and a.per_s == pytest.approx(99.0)


def test_a_refusal_sent_before_a_cut_does_not_cut_again():
    a = Axis(RateConfig(window_s=5), start_per_s=100.0, now=0.0)
    a.refused(sent_at=0.5, now=1.0, units=1.0)
    rate = a.per_s
    a.refused(sent_at=0.9, now=1.01, units=1.0)  # in flight before the cut: says nothing new
    assert a.per_s == rate and a.phase is Phase.BACKOFF


def test_a_young_lane_refused_is_cut_to_what_it_admitted_over_its_life_not_over_seconds_it_did_not_live():
    a = Axis(RateConfig(window_s=5), start_per_s=2.0, now=0.0)
    for t in (0.0, 0.5, 1.0):
        a.sent(t, 1.0)
    a.refused(sent_at=1.0, now=1.02, units=1.0)
    assert a.per_s >= 0.75  # half its 2/s: it admitted as much over its second; not 2 in the 5 s a 2/s pace reads


def test_after_a_cut_the_lane_waits_for_the_wave_then_sends_one_request_alone():
    """A window counter that is dry refuses everything: after a cut, what was in flight comes
    back first, then one request goes alone, so a dry account costs one refusal per cut,
    not a wave at the new rate."""
    a = Axis(RateConfig(window_s=5), start_per_s=100.0, now=0.0)
    for i in range(50):
        a.sent(i * 0.01, 1.0)
    a.refused(sent_at=0.49, now=0.5, units=1.0)
    assert a.phase is Phase.BACKOFF and a.pause_until > 0.5  # the wave sent before the cut comes back
    resume = a.pause_until  # one request then, and no burst saved up through the pause
    a.sent(resume, 1.0)
    assert a.pacer.wait(resume, 1.0) > 0
    assert a.pause_until > resume  # the first request alone: its refusal would be back by then
    a.refused(sent_at=resume, now=resume + 0.02, units=1.0)
    assert a.decreases == 2 and a.pause_until > resume + 0.02  # refused: cut again, look again
    t = a.pause_until + 1.0 / a.per_s
    a.sent(t, 1.0)  # the next one alone, and no refusal comes back: sending goes on at the rate
    t = a.pause_until + 1.0 / a.per_s
    a.sent(t, 1.0)
    assert a.pause_until < t and a.pacer.wait(t + 1.0 / a.per_s, 1.0) == 0.0 and a.decreases == 2


def test_the_controller_charges_a_silent_refusal_to_requests_and_a_named_one_to_tokens():
    c = AdaptiveController(RateConfig(window_s=5), now=0.0)
    assert c.acquire(0.0, 500) == 0.0
    c.record(RateSample(0.0, 0.02, OutcomeKind.RATE_LIMITED, 500, 500,
                        signal=parse_signal(429, "Rate limit reached for tokens per min", {})))
    assert c.tokens is not None and c.requests.phase is Phase.DISCOVER


def test_before_any_answer_a_rate_limits_refusal_lifts_the_blind_in_flight_bound():
    # 20,000 RPM, 20-s answers: refused at 30,000 RPM 7 s in, the lane then sat at 1,000 in flight (the bound for a
    # server that queues without a word) for 13 s with nothing back, 0.65 of the account over two minutes (0.79
    # lifted; a fixed bucket told the limit: 0.84). A server that queues refuses nothing; a limit that refused paces
    c = AdaptiveController(RateConfig(window_s=5, rpm_hint=30_000), now=0.0)
    t = 0.0
    while t < 2.0:  # 500 a second for 2 s, none answered yet
        t += c.acquire(t, 10) or 0.0
        t += 0.001
    assert c.in_flight_limit() == 1_000  # nothing back yet: blind
    c.record(RateSample(t, t + 0.05, OutcomeKind.RATE_LIMITED, 10, 10, signal=parse_signal(429, "Too Many Requests", {})))
    assert c.in_flight_limit() >= 10_000  # the rate (after the cut) x an unanswered request's 30 s x 1.5
    for i in range(50):  # answers, 20 s each: what they show bounds it again (8 x what the server held)
        c.record(RateSample(i * 0.02, 20.0 + i * 0.02, OutcomeKind.SUCCESS, 10, 10))
    assert 0 < c.queue.shown() and c.in_flight_limit() <= max(1_000, 8 * c.queue.shown()) < 15_000


GROQ_DAY = {"x-ratelimit-limit-requests": "14400", "x-ratelimit-remaining-requests": "14370",
            "x-ratelimit-reset-requests": "2m59.56s"}  # Groq's docs: the requests per *day*


def test_a_days_count_in_the_headers_is_no_per_minute_cap_and_a_refusals_stated_minute_wins():
    c = AdaptiveController(RateConfig(window_s=5), now=0.0)
    c.acquire(0.0, 10)
    c.record(RateSample(0.0, 0.3, OutcomeKind.SUCCESS, 10, 10, signal=parse_signal(200, "", GROQ_DAY)))
    assert c.snapshot()["learned_rpm_ceiling"] is None and c.requests.phase is Phase.DISCOVER  # still searching
    said = ("Rate limit reached for model `m` in organization `o` service tier `on_demand` on requests per minute "
            "(RPM): Limit 300, Used 300, Requested 1. Please try again in 200ms.")
    c.record(RateSample(0.4, 0.42, OutcomeKind.RATE_LIMITED, 10, 10, signal=parse_signal(429, said, GROQ_DAY)))
    c.record(RateSample(0.5, 0.8, OutcomeKind.SUCCESS, 10, 10,  # (a count with no reset to tell its period by)
                        signal=parse_signal(200, "", {"x-ratelimit-limit-requests": "14400"})))
    s = c.snapshot()
    assert (s["learned_rpm_ceiling"], s["rpm_limit_source"]) == (300.0, "stated")  # the minute's, not the day's
    assert c.export_state()["stated_rpm"] == pytest.approx(300.0)  # the cap a warm start keeps, too


def test_a_per_minute_count_in_the_headers_is_the_cap_from_the_first_answer():
    c = AdaptiveController(RateConfig(window_s=5), now=0.0)
    c.acquire(0.0, 10)
    headers = {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "599",
               "x-ratelimit-reset-requests": "100ms"}  # OpenAI's: back to full within a minute of use
    c.record(RateSample(0.0, 0.3, OutcomeKind.SUCCESS, 10, 10, signal=parse_signal(200, "", headers)))
    assert c.snapshot()["learned_rpm_ceiling"] == 600.0


@pytest.mark.parametrize("headers, resumes_at", [
    ({"x-ratelimit-limit-requests": "30", "x-ratelimit-remaining-requests": "0",  # OpenAI's: a duration from
      "x-ratelimit-reset-requests": "2s"}, 2.0),  # when it admitted the request, 1.5 s before the answer
    ({"anthropic-ratelimit-requests-limit": "30", "anthropic-ratelimit-requests-remaining": "0",  # Anthropic's:
      "anthropic-ratelimit-requests-reset": "2001-09-09T01:46:42Z"}, 3.5),  # a time of day, 2 s after the answer
])
def test_a_spent_count_waits_until_its_reset_counted_from_when_the_provider_said_it(headers, resumes_at):
    """Counted from the answer, a 30 RPM lane paused 2 s after each one and ran at 0.87 of its
    limit (with answers of seconds, at a fraction of it)."""
    c = AdaptiveController(RateConfig(window_s=5), now=0.0)
    assert c.acquire(0.0, 10) == 0.0
    c.record(RateSample(0.0, 1.5, OutcomeKind.SUCCESS, 10, 10,
                        signal=parse_signal(200, "", headers, now_epoch=1_000_000_000.0)))
    assert c.acquire(resumes_at - 0.1, 10) > 0.0
    assert c.acquire(resumes_at + 0.05, 10) == 0.0


def test_overload_pauses_and_lowers_nothing():
    c = AdaptiveController.from_state({"ceiling_rpm": 600.0}, now=0.0)
    c.record(RateSample(0.0, 0.1, OutcomeKind.OVERLOADED, 1, 1, signal=parse_signal(529, "Overloaded", {})))
    assert c.acquire(0.2, 1) > 0.0 and c.snapshot()["learned_rpm_ceiling"] == 600.0


def test_a_429_of_the_providers_capacity_lowers_nothing_and_only_a_run_of_them_pauses_the_lane():
    """Azure OpenAI's peak-load 429 is the region's capacity, not the deployment's quota: the
    learned ceiling is kept; one alone pauses nothing, a run with no answer between backs off."""
    peak = parse_signal(429, AZURE_PEAK_MESSAGE, {"retry-after": "6"})
    c = AdaptiveController.from_state({"ceiling_rpm": 600.0}, now=0.0)
    for i in range(100):  # steady at the ceiling, then refused with the peak-load words
        c.record(RateSample(i * 0.1, i * 0.1 + 0.05, OutcomeKind.SUCCESS, 1, 1, signal=parse_signal(200, "", {})))
    c.record(RateSample(10.0, 10.1, OutcomeKind.RATE_LIMITED, 1, 1, signal=peak))
    assert c.acquire(10.2, 1) == 0.0  # one alone: no pause (the refused request waits its own 6 s)
    c.record(RateSample(10.1, 10.3, OutcomeKind.RATE_LIMITED, 1, 1, signal=peak))
    c.record(RateSample(10.2, 10.4, OutcomeKind.RATE_LIMITED, 1, 1, signal=peak))
    assert c.acquire(10.8, 1) > 0.0 and c.acquire(11.5, 1) == 0.0  # the third in a row: paused 1 s
    assert c.snapshot()["learned_rpm_ceiling"] == 600.0 and c.requests.per_s * 60.0 >= 580.0
    assert c.decreases == 0 and (c.snapshot()["rate_limited"], c.snapshot()["capacity_refused"]) == (3, 3)
    from promptforge_dagster.cli import _lanes_line
    assert "3 refused (3 for the provider's capacity, not a limit: retried)" in _lanes_line({"azure/m": c.snapshot()})


@pytest.mark.parametrize("message, limit, value", [
    ("Rate limit exceeded for key: batch. Limit type: requests. Current limit: 10, Remaining: 0. Limit resets at: "
     "2026-12-03 10:00:00 UTC", "requests", 10.0),
    ("Rate limit exceeded for key: batch. Limit type: tokens. Current limit: 9000, Remaining: 0. Limit resets at: "
     "2026-12-03 10:00:00 UTC", "tokens", None),  # tokens used, in no basis the engine paces: no value kept
    ("Rate limit exceeded for key: batch. Limit type: max_parallel_requests. Current limit: 4, Remaining: 0. Limit "
     "resets at: 2026-12-03 10:00:00 UTC", "concurrency", None),
    ("LiteLLM Rate Limit Handler for rate limit type = key. Crossed TPM / RPM / Max Parallel Request Limit. current "
     "rpm: 1, rpm limit: 1, current tpm: 348, tpm limit: 9223372036854775807, current max_parallel_requests: 0, "
     "max_parallel_requests: 9223372036854775807", "requests", 1.0),
])
def test_the_litellm_proxys_own_key_limits_are_named_as_it_names_them(message, limit, value):
    """A LiteLLM proxy in front of the provider limits its virtual keys itself, and says which."""
    signal = parse_signal(429, message, {"retry-after": "60"})
    assert (signal.limit, signal.limit_value) == (limit, value)
    if limit == "requests" and value == 10.0:  # stated: a cap the lane paces under from this answer on
        c = AdaptiveController(RateConfig(window_s=5), now=0.0)
        c.record(RateSample(0.0, 0.1, OutcomeKind.RATE_LIMITED, 1, 1, signal=signal))
        assert c.requests.cap * 60.0 == pytest.approx(10.0)


def test_an_outage_of_thousands_of_overloads_in_a_row_keeps_pausing_at_the_cap():
    """No answer gets through for hours: each overload (503/529, or a 429 of the provider's
    capacity) doubles the pause up to its cap, however many come (2^1100 is no float)."""
    c = AdaptiveController.from_state({"ceiling_rpm": 600.0}, now=0.0)
    t = 0.0
    for i in range(1200):
        t += 1.0
        kind, answer = (OutcomeKind.OVERLOADED, parse_signal(529, "Overloaded", {})) if i % 2 else \
            (OutcomeKind.RATE_LIMITED, parse_signal(429, AZURE_PEAK_MESSAGE, {}))
        c.record(RateSample(t - 0.5, t, kind, 1, 1, signal=answer))
    assert c.acquire(t + 29.0, 1) > 0.0 and c.acquire(t + 30.1, 1) == 0.0  # paused 30 s, the cap


def test_state_survives_a_checkpoint_round_trip():
    import json

    c = AdaptiveController.from_state({"ceiling_rpm": 900.0, "ceiling_tpm": 50_000.0, "concurrency": 40.0}, now=0.0)
    again = AdaptiveController.from_state(json.loads(json.dumps(c.export_state())), now=5.0)
    assert again.snapshot()["learned_rpm_ceiling"] == 900.0 and again.snapshot()["learned_tpm_ceiling"] == 50_000.0
    assert again.snapshot()["concurrency_ceiling"] == 40.0
    c.requests.burst.observe(90.0, per_s=15.0)  # a 6-s burst seen: a warm start must not take it for a rise
    assert AdaptiveController.from_state(c.export_state(), now=0.0).requests.burst.burst_s == 6.0


def _send_into(account: SimulatedAccount, estimator: CeilingEstimator, t0: float, t1: float, per_s: float):
    """Send at ``per_s`` from t0 to t1; return the send time of the first refusal (None if none)."""
    first, t = None, t0
    while t < t1:
        adm = account.admit(t, 1)
        estimator.sent(t, 1.0)
        if adm.ok:
            account.release()
        else:
            estimator.refused(t, 1.0)
            first = t if first is None else first
        t += 1.0 / per_s
    return first


@pytest.mark.parametrize("burst_s", [1.0, 5.0, 20.0])
def test_the_burst_learner_reads_a_buckets_capacity_at_the_first_dry_moment(burst_s):
    account = SimulatedAccount(AccountLimits(rpm=600, burst_s=burst_s), now=0.0)
    e = CeilingEstimator()
    dry_at = _send_into(account, e, 0.0, 60.0, per_s=20.0)  # twice the 10/s ceiling, from rest
    b = BurstLearner()
    b.learn(e.net_between, per_s=10.0, dry_at=dry_at, since=0.0)
    assert b.burst_s == pytest.approx(burst_s, abs=0.5)


def test_a_probe_proves_nothing_a_rested_burst_could_absorb_and_a_real_rise_is_proven():
    for ceiling_rpm, rises in ((600, False), (1200, True)):
        account = SimulatedAccount(AccountLimits(rpm=ceiling_rpm, burst_s=5.0), now=0.0)
        e = CeilingEstimator()
        prober = Prober(RateConfig().steady, window_s=5.0)
        prober.start(0.0)
        proofs, t = [], 0.0
        while t < 30.0:  # probing at +25% over an estimate of 10/s, from a full bucket
            if _send_into(account, e, t, t + 0.5, per_s=12.5) is not None:
                break
            t += 0.5
            proofs.append(prober.best_proof(e.net_between, t, estimate=10.0, burst=5.0 * 10.0,
                                            requests=e.requests_between))
        found = [p for p in proofs if p is not None]
        if rises:  # the ceiling doubled: proven, and never above what the account allows
            assert found and all(10.0 < p <= ceiling_rpm / 60.0 for p in found)
        else:  # admitted for two windows and more on the burst alone: no proof of anything
            assert t >= 10.0 and not found, (t, found)


def test_the_pacer_repays_a_refused_slot_and_resumes_smoothly_after_a_cut():
    p = Pacer(per_s=10.0, now=0.0)
    p.take(0.0, 1.0)
    p.drain(0.0)
    assert p.wait(0.0, 1.0) == pytest.approx(0.1)
    p.repay(0.0, 1.0)  # refused: the account may have charged it
    assert p.wait(0.0, 1.0) == pytest.approx(0.2)
    p.set_rate(1000.0, 1.0)  # a second later the bucket holds its burst...
    p.drain(1.0)  # ...which a cut throws away: one interval at a time again
    assert p.wait(1.0, 1.0) == pytest.approx(0.001)


def test_the_pacer_catches_up_a_sleep_that_woke_late_but_saves_no_more():
    p = Pacer(per_s=20.0, now=0.0)
    sent, t = 0, 0.0
    while t < 10.0:  # every wake-up 2 ms late, as an event loop's sleeps are
        w = p.wait(t, 1.0)
        if w > 0.0:
            t += w + 0.002
            continue
        p.take(t, 1.0)
        sent += 1
    assert 199 <= sent <= 201  # 20/s for 10 s: the lateness is caught up, not lost (~190)
    p.set_rate(100.0, 100.0)  # a long idle spell saves 30 ms of rate and 5 ms for lateness (3.5), no more
    at_once = 0
    while p.wait(200.0, 1.0) == 0.0:
        p.take(200.0, 1.0)
        at_once += 1
    assert at_once == 3


def test_a_probe_reaches_half_again_above_the_estimate_but_a_quarter_on_a_slow_lane():
    p = Prober(Steady(), window_s=5.0)
    assert p.reach(20.0) == pytest.approx(30.0)  # 1,200 RPM: +50%
    assert p.reach(1.0) == pytest.approx(1.25)  # 60 RPM: its burst holds two requests, +25%
    p.start(0.0)
    p.proven(1.0)  # a proven probe reaches twice as far on either lane
    assert (p.reach(20.0), p.reach(1.0)) == (pytest.approx(40.0), pytest.approx(1.5))


def _drive_axis(a: Axis, account: SimulatedAccount, t1: float, on_refusal=None, start: float = 0.0) -> list[float]:
    """Pace ``a`` against ``account`` from ``start`` until ``t1``; refusals come back 20 ms after
    sending. Returns the send times of the admitted requests."""
    t, admitted = start, []
    while t < t1:
        wait = max(a.pause_until - t, a.pacer.wait(t, 1.0))
        if wait > 0.0:
            a.blocked()
            t += wait + 1e-6
            a.tick(t)
            continue
        a.sent(t, 1.0)
        if account.admit(t, 1).ok:
            account.release()
            a.admitted(t, t + 0.3, 1.0)
            admitted.append(t)
        else:
            before = (a.phase, a.estimate)
            a.refused(sent_at=t, now=t + 0.02, units=1.0)
            if on_refusal:
                on_refusal(before, (a.phase, a.estimate))
        a.tick(t)
    return admitted


def test_a_rate_admitted_for_seconds_then_refused_is_stepped_back_not_halved():
    def first_cut() -> Axis:
        a = Axis(RateConfig(window_s=5), start_per_s=4.0, now=0.0)
        for i in range(12):  # 4/s admitted for 3 s, then refused
            a.sent(i / 4.0, 1.0)
        a.refused(sent_at=3.0, now=3.02, units=1.0)
        return a

    a = first_cut()
    rate = a.per_s
    assert rate == pytest.approx(2.0)  # the first cut while searching halves
    for i in range(10):  # admitted at that rate for 5 s
        a.sent(4.0 + i / rate, 1.0)
    a.refused(sent_at=9.0, now=9.02, units=1.0)
    assert a.per_s == pytest.approx(rate * RateConfig().steady.steady_cut)
    quick = first_cut()
    quick.sent(4.0, 1.0)
    quick.refused(sent_at=4.5, now=4.52, units=1.0)  # refused a second after the cut: still searching, halved
    assert quick.per_s <= rate * RateConfig().discovery.backoff + 1e-9


def test_a_refused_probe_never_lowers_the_estimate_on_a_60_rpm_account():
    account = SimulatedAccount(AccountLimits(rpm=60), now=0.0)
    a = Axis(RateConfig(window_s=5), start_per_s=1.0, now=0.0)
    lowered = []

    def check(before, after):
        if before[0] is Phase.PROBE and before[1] and after[1] < before[1]:
            lowered.append((before[1] * 60, after[1] * 60))

    _drive_axis(a, account, 240.0, check)
    assert not lowered, lowered
    assert a.estimate is not None and 0.9 <= a.estimate <= 1.02  # 54-61 RPM learned on a 60 RPM account


@pytest.mark.parametrize("limiter", ["sliding", "fixed"])
def test_a_lane_dry_under_a_minute_window_resumes_when_the_window_frees_not_a_pause_later(limiter):
    account = SimulatedAccount(AccountLimits(rpm=600, limiter=limiter), now=0.0)
    a = Axis(RateConfig(window_s=5), start_per_s=1.0, now=0.0)
    refusals = []
    admitted = _drive_axis(a, account, 130.0, on_refusal=lambda before, after: refusals.append(a.window.last_refused))
    gaps = [(b - x, b) for x, b in zip(admitted, admitted[1:])]
    gap, resumed = max(gaps)  # the dry spell: the minute's quota was spent at the start
    assert gap > 20.0 and resumed <= admitted[0] + 60.0 + 1.0, (gap, resumed, admitted[0])
    # the spell is probed with pauses doubling to 16 s, a refusal each: 7 of them (8 s: 9)
    spell = [t for t in refusals if resumed - gap + 2.0 < t < resumed]
    assert len(spell) <= 7, spell


def test_the_window_learner_reads_a_windows_span_and_quota_from_the_dry_spell_that_ended():
    sends = [0.5 * i for i in range(80)]  # one every half second; refused at 5 s, 6 s and 22 s

    def first_admitted(t0, t1):
        return next((t for t in sends if t0 < t <= t1 and t not in (5.0, 6.0, 22.0)), None)

    w = WindowLearner()
    assert w.resumed(sent_at=5.0, admitted=lambda t0, t1: 10.0) is None  # no dry spell seen: nothing read
    w.refused(5.0, first_of_episode=True)
    w.refused(6.0, first_of_episode=False)
    w.went_dry(first_admitted, now=6.1, dry_at=5.0)
    assert w.resumed(sent_at=10.0, admitted=lambda t0, t1: 100.0) == pytest.approx(10.0)  # 100 over 0-10 s
    w.refused(22.0, first_of_episode=True)  # the next fill is read from after the last episode (6 s)
    w.went_dry(first_admitted, now=22.1, dry_at=22.0)
    w.resumed(sent_at=30.0, admitted=lambda t0, t1: 100.0)
    assert (w.span_s, w.known) == (10.0, True)  # 30 - 6.5 is longer: a later spell never lengthens it


@pytest.mark.parametrize("limiter", ["fixed", "sliding"])
def test_a_lane_on_a_ten_second_window_learns_its_ceiling_and_waits_out_a_spent_window_without_cutting(limiter):
    # Azure OpenAI counts RPM over 10-s intervals: learning a minute's floor there paced at a sixth of it
    account = SimulatedAccount(AccountLimits(rpm=600, limiter=limiter, window_s=10.0), now=0.0)
    a = Axis(RateConfig(window_s=5), start_per_s=1.0, now=0.0)
    cuts = []
    admitted = _drive_axis(a, account, 90.0, on_refusal=lambda b, after: cuts.append(after) if
                           after[0] is Phase.BACKOFF and b[0] is not Phase.DISCOVER and b[1] else None)
    assert a.window.known and 9.0 <= a.window.span_s <= 12.0, a.window.span_s
    assert 540.0 <= a.estimate * 60.0 <= 630.0, a.estimate * 60.0
    assert len([t for t in admitted if t >= 30.0]) >= 0.9 * 600.0  # the last minute, at 600 RPM
    assert not cuts, cuts  # refused at the estimate (a probe's spent window): paused, never cut


def test_a_window_read_across_a_reset_unseen_is_read_again_when_a_probe_spends_one():
    # a 10-s window begun 6 s before the lane's first request: the first dry spell's fill spans a reset the
    # lane never saw, a lower bound (~0.8 of the quota's rate). Only lower readings were taken after it, and the
    # lane stayed there (0.87 of Azure's 600); a probe that spends a window reads it whole, over its own span
    def lane(until: float) -> tuple[Axis, list[float]]:
        account = SimulatedAccount(AccountLimits(rpm=600, limiter="fixed", window_s=10.0, window_phase_s=6.0), now=0.0)
        a = Axis(RateConfig(window_s=5), start_per_s=1.0, now=0.0)
        return a, _drive_axis(a, account, until)

    early, _ = lane(25.0)
    assert early.window.known and early.estimate * 60.0 < 540.0, early.estimate  # read across the reset: low
    a, admitted = lane(120.0)
    assert 560.0 <= a.estimate * 60.0 <= 630.0, a.estimate * 60.0  # read again, whole
    assert len([t for t in admitted if t >= 60.0]) >= 0.9 * 600.0  # the last minute, at 600 RPM


def test_a_window_read_low_across_a_reset_unseen_is_probed_further_when_a_probe_cannot_spend_it():
    # a 16,000 RPM 10-s window begun 5 s before the lane's first request, read at 9,400: a +50% probe stayed under
    # the quota, never refused, never proven (its excess within the burst the first fill showed), and expired; the
    # next reached no further, and the lane kept 0.59 of the account. Now the next one reaches twice as far
    account = SimulatedAccount(AccountLimits(rpm=16000, limiter="fixed", window_s=10.0, window_phase_s=5.0), now=0.0)
    a = Axis(RateConfig(window_s=5), start_per_s=1.0, now=0.0)
    _drive_axis(a, account, 40.0)
    assert a.window.from_start and a.estimate * 60.0 < 10000.0, a.estimate * 60.0  # the low reading
    _drive_axis(a, account, 150.0, start=40.0)
    assert a.estimate * 60.0 >= 14000.0, a.estimate * 60.0


def test_a_probe_refused_within_two_seconds_makes_the_next_one_reach_half_as_far():
    # (a 1-s window refuses +25% after 1-2 s, once its sends line up with a window: reset to +50% then,
    # the probes alternated +50% / +25%, both refused, and the lane kept a low estimate: 0.83)
    p = Prober(Steady(), window_s=5.0)
    reaches = []
    for start, refused_after in ((0.0, 0.5), (30.0, 1.5), (60.0, 0.3), (90.0, 0.4), (120.0, 5.0)):
        p.start(start)
        reaches.append(round(p.reach(10.0), 2))
        p.ended(refused_at=start + refused_after)
    reaches.append(round(p.reach(10.0), 2))
    # +50%, then +25%, +12.5% (the least), +12.5%; refused after 5 s (a bucket's burst ran out): +50% again
    assert reaches == [15.0, 12.5, 11.25, 11.25, 11.25, 15.0]


def test_probes_are_spaced_by_two_hundred_sends_for_each_refusal_the_last_failed_one_cost():
    # what a probe sent before it heard of its first refusal is refused too: with refusals 200 ms away a probe at
    # +50% of 600 RPM cost ~3, and one every 200 sends refused 1.5% of what the lane sent
    p = Prober(Steady(), window_s=5.0)
    p.start(0.0)
    for sent_at in (1.0, 1.05, 1.1):  # the first heard at 1.2 ends it; the other two were in flight then
        p.refused_sent(sent_at)
    p.ended(refused_at=1.0, at=1.2)
    p.refused_sent(1.3)  # sent after it ended, at the estimate: not the probe's
    assert p.cost == 3
    assert not p.due(now=61.1, since=1.2, per_s=10.0)  # 200 sends at 10 a second: 20 s for each of 3
    assert p.due(now=61.2, since=1.2, per_s=10.0)


def test_after_a_probe_refused_at_once_a_proven_one_reaches_no_further_than_halfway_to_the_rate_refused():
    # a 1-s window (Azure OpenAI's documented interval) refuses a probe past its quota within a second: +50% and
    # +25% refused, +12.5% proven, and the next reached twice as far again, past the rate refused a minute before:
    # refused at once, and the lane kept 0.86 of the account
    p = Prober(Steady(), window_s=5.0)
    for start in (0.0, 30.0):  # +50% and +25% from an estimate of 10, each refused half a second in
        p.start(start)
        p.ended(refused_at=start + 0.5, reached=p.reach(10.0))
    assert p.reach(10.0) == pytest.approx(11.25)  # +12.5%: under the rate refused (12.5)
    p.start(60.0)
    p.proven(65.0)
    assert p.reach(10.8) == pytest.approx((10.8 + 12.5) / 2.0)  # +25% would pass 12.5: halfway to it
    p.proven(70.0)  # proven there: the ceiling may have risen since, the rate refused says nothing now
    assert p.reach(11.6) == pytest.approx(11.6 * 1.5)


def test_a_probe_refused_slowly_leaves_no_rate_for_the_next_to_stop_short_of():
    # refused after its burst ran out (a bucket's, 5 s in), a probe says the ceiling was under its reach
    # then; ceilings rise (a shift from 300 to 1,200 RPM was probed halfway to 333 RPM for 30 s: 0.31)
    p = Prober(Steady(), window_s=5.0)
    p.start(0.0)
    p.ended(refused_at=5.0, reached=p.reach(10.0))
    p.start(30.0)
    p.proven(35.0)
    assert p.reach(10.5) == pytest.approx(10.5 * 2.0)  # twice as far: nothing refused to stop short of


def test_on_a_window_counter_a_probe_refused_within_a_window_makes_the_next_one_reach_half_as_far():
    # a 10-s window refuses +25% only once its count passes the quota, up to 10 s in: still a quick refusal
    # (reset to +50% instead, a lane measured 20% low on Azure's 10-s windows never probed near enough)
    p = Prober(Steady(), window_s=5.0)
    reaches = []
    for start, refused_after, window_s in ((0.0, 6.0, 10.0), (30.0, 6.0, 10.0), (60.0, 6.0, 0.0)):
        p.start(start)
        reaches.append(round(p.reach(10.0), 2))
        p.ended(refused_at=start + refused_after, window_s=window_s)
    reaches.append(round(p.reach(10.0), 2))
    assert reaches == [15.0, 12.5, 11.25, 15.0]  # no window known: refused after 6 s is a bucket's burst run out


def test_a_probe_proves_nothing_over_fewer_than_eight_requests_however_many_tokens_they_carry():
    # one request of 1,100 tokens on a 30,000 TPM account "proved" +40% in 1.6 s, and the lane then
    # refused 38% of what it sent at the estimate it raised
    p = Prober(Steady(), window_s=5.0)
    p.start(0.0)
    lump = dict(estimate=500.0, burst=0.0)  # 500 tokens a second; 2,200 admitted over 2 s is +120%

    def admitted(t0: float, t1: float) -> float:
        return 2200.0
    assert p.best_proof(admitted, 2.0, requests=lambda t0, t1: 2, **lump) is None
    assert p.best_proof(admitted, 2.0, requests=lambda t0, t1: 8, **lump) == pytest.approx(1100.0)


def test_a_tokens_axis_spaces_its_probes_by_requests_not_tokens():
    # 200 sends between failed probes keep their refusals under 0.5%: counted in tokens, a lane of 1,000-
    # token requests probed every 10 s, and refused 21% of its ~50 requests a minute on a 30,000 TPM account
    a = Axis(RateConfig(window_s=5), start_per_s=500.0, now=0.0)
    a.restore(500.0, None, now=0.0)  # steady at ~500 tokens a second: a request of 1,000 tokens every 2 s
    t = 0.0

    def steady_until(end: float) -> float:
        nonlocal t
        while t < end and a.phase is Phase.STEADY:
            a.blocked()
            a.tick(t)
            a.sent(t, 1000.0)
            a.admitted(t, t + 0.5, 1000.0)
            t += 2.0
        return t

    assert steady_until(60.0) <= 12.0 and a.phase is Phase.PROBE  # the first probe: two windows in
    a.refused(sent_at=t - 2.0, now=t, units=1000.0)  # refused at once
    assert a.phase is Phase.STEADY
    refused_at = t
    assert steady_until(600.0) - refused_at >= 380.0  # the next one ~200 requests later (~400 s), not 10 s


def test_a_bucket_read_as_a_window_is_forgotten_once_it_refuses_more_than_a_window_would():
    # A 30,000 TPM Azure deployment, requests of ~1,400 tokens: its bucket, dry after the first flood, was
    # read as a 5.5-s window of 62,000 TPM, and every refusal after was waited out as a spent window's,
    # never cut: 32% of the requests refused. A window refuses about once per span; this refused 1 in 4.
    scenario = Scenario("azure-tpm-30k", AccountLimits(rpm=None, tpm=30_000, burst_s=10.0), 0.0, 1.0,
                        {"style": "azure", "headers": False, "request": budgeted_answers, "s_per_token": 0.005},
                        measure="tokens")
    (goodput, refused), = run(scenario, 0)
    assert refused < 0.2 and goodput > 0.95, (goodput, refused)


def _pace_all_admitted(a: Axis, t: float, done) -> tuple[float, list[float]]:
    """Pace ``a`` from ``t``, every send admitted (answered 0.3 s later), until ``done(now)``;
    returns the time then and the send times."""
    sent: list[float] = []
    while not done(t):
        wait = max(a.pause_until - t, a.pacer.wait(t, 1.0))
        if wait > 0.0:
            a.blocked()
            t += wait + 1e-6
        else:
            a.sent(t, 1.0)
            a.admitted(t, t + 0.3, 1.0)
            sent.append(t)
        a.tick(t)
    return t, sent


def _probe_refused_after(span_s: float, *, dry: bool) -> tuple[float, float, float]:
    """An axis paced for 90 s on a charged 600 RPM bucket of a second's burst, whose next probe at
    +50% is then admitted for ``span_s`` more and refused. Returns (the estimate before the
    refusal, after it, and what the probe admitted beyond the burst per second of it)."""
    account = SimulatedAccount(AccountLimits(rpm=600, burst_s=1.0, refusals_count=True), now=0.0)
    a = Axis(RateConfig(window_s=5), start_per_s=1.0, now=0.0)
    admitted, t = _drive_axis(a, account, 90.0), 90.0
    while not (a.phase is Phase.PROBE and a.per_s >= 1.45 * a.estimate) and t < 300.0:  # (probes alternate
        admitted += _drive_axis(a, account, t + 0.05, start=t)  # +50% and +25%, each refused where the bucket ran dry)
        t += 0.05
    end = None

    def probed_for_span(now: float) -> bool:
        nonlocal end
        if end is None and a.phase is Phase.PROBE:
            end = now + span_s
        return end is not None and (now >= end or a.phase is not Phase.PROBE)
    t, sent = _pace_all_admitted(a, t, probed_for_span)
    admitted += sent
    assert a.phase is Phase.PROBE  # not proven yet: under 1.5 bursts beyond the estimate
    start, before = a.prober.started_at, a.estimate
    proved = (len([x for x in admitted if start <= x < t]) - a.burst.units(before)) / (t - start)
    a.sent(t, 1.0)
    a.refused(sent_at=t, now=t + 0.3, units=1.0, dry=dry)
    return before, a.estimate, proved


def test_a_probe_refused_before_its_proof_still_raises_the_estimate_to_what_it_admitted_beyond_a_burst():
    # A charged 395 RPM bucket of a second's burst, 0.3-s answers: its probes were refused about 1.2 bursts beyond
    # the estimate, short of a proof (1.5), and each left the estimate where it was (0.878 of the ceiling). Its
    # refusal says the account ran dry: what the probe admitted, less a full burst at most, was refilled meanwhile
    before, after, proved = _probe_refused_after(1.5, dry=True)
    assert before < proved and after == pytest.approx(proved, rel=0.05)  # the history's grain: about a request
    # refused where a shared pool may have refused it, the account need not have run dry: no bound
    before, pooled, proved = _probe_refused_after(1.5, dry=False)
    assert pooled < 0.95 * proved


def test_a_refused_probes_bound_raises_the_estimate_where_no_span_since_a_dry_moment_was_measured():
    # (thirtieth session) a charged 1,200 RPM bucket, refusals 100 ms away: probes refused after 7 s had admitted
    # 1,234 RPM beyond a burst, but no span since the last dry moment measured anything, and the lane kept an
    # estimate of 1,020 for a minute (0.89 of the ceiling)
    a = Axis(RateConfig(window_s=5), start_per_s=1.0, now=0.0)
    a.restore(8.8, None, now=0.0)  # steady, its estimator never dry: no span to measure from
    a.burst.observe(8.8, per_s=8.8)  # a burst of a second of the ceiling
    t, _ = _pace_all_admitted(a, 0.0, lambda now: a.phase is Phase.PROBE and now - a.prober.started_at >= 3.0)
    start = a.prober.started_at
    a.sent(t, 1.0)
    a.refused(sent_at=t, now=t + 0.1, units=1.0)
    proved = (13.2 * (t - start) - 8.8) / (t - start)  # +50% of 8.8 over the probe, less the burst
    assert a.phase is Phase.STEADY and a.estimate == pytest.approx(proved, rel=0.05) and a.estimate > 9.5


def test_a_lane_on_a_one_second_window_finds_its_ceiling_and_climbs_past_a_low_estimate():
    # Azure OpenAI also counts over 1-s intervals (and OpenAI may enforce 600 RPM as 10 per second).
    # Measured while the climb back swung between half the refused rate and just under it, the
    # estimate came out 20% low (a window loses what it did not admit; a bucket banks it), and a
    # probe 50% above is refused within the second, always, so it stayed there
    account = SimulatedAccount(AccountLimits(rpm=600, limiter="fixed", window_s=1.0), now=0.0)
    a = Axis(RateConfig(window_s=5), start_per_s=1.0, now=0.0)
    admitted = _drive_axis(a, account, 180.0)
    assert len([t for t in admitted if t >= 120.0]) >= 0.9 * 600.0  # the third minute
    assert account.refused <= 0.01 * len(admitted)


def test_a_spent_daily_limit_teaches_the_lane_no_per_minute_limit():
    words = ("* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, "
             "limit: 250, model: gemini-2.5-flash\nPlease retry in 22.9s. GenerateRequestsPerDayPerProjectPerModel")
    c = AdaptiveController(RateConfig(window_s=5), now=0.0)
    c.record(RateSample(0.0, 0.1, OutcomeKind.FATAL, 10, 10, signal=parse_signal(429, words, {})))
    assert c.requests.cap is None and c.export_state()["stated_rpm"] is None  # 250 a day is no 250 a minute


def test_a_client_that_cannot_keep_up_does_not_grow_the_allowance_far_past_what_it_sends():
    # a CPU-bound event loop: each send costs it 4 ms (250 a second at most); it takes what the
    # pacer allows each time it gets a turn, so every turn meets the pacer, yet no rate above about
    # twice 250 a second was ever sent at. (Over HTTP such a lane doubled to 245,760 RPM and its
    # in-flight bound followed: a sliding window's first dry spell met hundreds of queued requests.)
    c = AdaptiveController(RateConfig(window_s=5.0), now=0.0)
    flying: list[float] = []
    t = 0.0
    while t < 30.0:
        for sent in [a for a in flying if a + 0.15 <= t]:
            c.record(RateSample(sent, sent + 0.15, OutcomeKind.SUCCESS, 10, 10))
        flying = [a for a in flying if a + 0.15 > t]
        n = 0
        while (wait := c.acquire(t, 10)) <= 0.0:
            flying.append(t)
            n += 1
        t += max(wait, 0.004 * n)
    achieved = c.client.achieved_rpm(t) / 60.0
    assert achieved >= 0.9 * 250  # the client sent what it could
    assert c.requests.per_s <= 5 * achieved  # and the allowance stayed within two doublings of it (1,024/s)


@pytest.mark.parametrize("retry_after_s, cut_again", [(4.0, False), (1.0, True)])
def test_a_cuts_look_refused_with_a_wait_of_seconds_waits_for_the_window_instead_of_cutting(retry_after_s, cut_again):
    # Azure counts over 10-s intervals and says when one frees ("retry after 4 seconds"): a lone look
    # refused after a cut is a spent window, not a rate still too high; cut again on each look, a lane
    # went from 7,680 RPM to a sixth of its 600 in 2 s and climbed back for a minute (worst seed: 0.56).
    # Retries are rounded up to whole seconds: 1 s is any short wait (a bucket's, a 1-s window's).
    a = Axis(RateConfig(window_s=5), start_per_s=20.0, now=0.0)
    for i in range(60):  # 20/s admitted for 3 s
        a.sent(i / 20.0, 1.0)
        a.admitted(i / 20.0, i / 20.0 + 0.02, 1.0)
    a.sent(3.0, 1.0)
    a.refused(sent_at=3.0, now=3.02, units=1.0, retry_after_s=retry_after_s)
    assert (a.phase, a.per_s) == (Phase.BACKOFF, 10.0)  # halved, then a look
    look = a.pause_until
    a.sent(look, 1.0)
    a.refused(sent_at=look + 0.001, now=look + 0.02, units=1.0, retry_after_s=retry_after_s)  # (its clock, read
    # a moment after the pacer's)
    assert (a.per_s < 10.0) is cut_again
    assert (a.pause_until >= look + retry_after_s) is not cut_again


def test_a_search_refused_while_admitting_far_under_its_floor_waits_for_the_window_instead_of_cutting():
    # A spent window refuses everything until it frees, at any rate; a bucket still admits about its
    # floor. Cut to the floor instead, a lane whose 10-s window freed before it sent again never saw
    # it dry there, and climbed back from a sixth of its ceiling (Azure TPM over 10 s: 0.58 over HTTP)
    a = Axis(RateConfig(window_s=5), start_per_s=20.0, now=0.0)
    for i in range(60):  # 20/s admitted for 3 s: the floor, over a minute's window, is 1/s
        a.sent(i / 20.0, 1.0)
        a.admitted(i / 20.0, i / 20.0 + 0.02, 1.0)
    flood = [3.0 + i * 0.01 for i in range(12)]  # then all refused, sent before the first refusal came back
    for t in flood:
        a.sent(t, 1.0)
    for t in flood:
        a.refused(sent_at=t, now=3.15, units=1.0, retry_after_s=4.0)
    assert (a.phase, a.per_s) == (Phase.BACKOFF, 10.0)  # the first refusal: halved, then a look
    look = a.pause_until
    a.sent(look, 1.0)
    a.refused(sent_at=look, now=look + 0.02, units=1.0, retry_after_s=4.0)
    assert a.per_s == 10.0  # not cut again ...
    assert a.pause_until >= look + 4.0  # ... but paused until the window frees, as the provider said


def _spell(a: Axis, start: float, end: float, free_at: float) -> None:
    """Sends every 0.1 s from ``start``, admitted until ``end``, refused there with a retry until
    ``free_at`` (a spent window, as the provider said), then one admitted at ``free_at``."""
    t = start
    while t < end - 1e-9:
        a.sent(t, 1.0)
        a.admitted(t, t + 0.3, 1.0)
        t += 0.1
    a.sent(end, 1.0)
    a.refused(sent_at=end, now=end + 0.02, units=1.0, retry_after_s=free_at - end - 0.1)
    a.sent(free_at, 1.0)
    a.admitted(free_at, free_at + 0.3, 1.0)


def test_a_stated_limit_stands_against_a_window_read_from_the_lanes_first_requests():
    # a fixed 10-s window that began before the lane's first request resets unseen in the lane's first
    # sends: the dry spell's span reads longer than the window (14 s here), its rate low (0.43 of the
    # limit); a lane on a 7,905 RPM account stated in OpenAI's words held 0.73 of it and probed back for 40 s
    a = Axis(RateConfig(window_s=5), start_per_s=1.0, now=0.0)
    a.known_limit(600.0, now=0.0)
    _spell(a, 0.0, 6.0, free_at=14.0)
    assert (a.phase, round(a.estimate * 60.0)) == (Phase.STEADY, 600)
    assert a.window.known and a.window.from_start
    # a later spell starts after a refusal the lane saw: its reading is this lane's share (other jobs)
    _spell(a, 30.0, 36.0, free_at=44.0)
    assert round(a.estimate * 60.0) < 300 and not a.window.from_start
