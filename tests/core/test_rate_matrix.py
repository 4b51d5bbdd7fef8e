"""Acceptance: the rate engine across the provider matrix (tests/core/rate_scenarios.py),
on a fake clock, 2-minute phases from a cold start with --rate-window 5, 8 seeds each.
Where a scenario's bound is looser than the issue's goal, the goal is named beside it and
the miss is recorded in docs/BENCHMARKS.md. Also: a client that cannot keep up is not the
provider (it lowers nothing and reaches what a bucket told the exact limit reaches), and a
concurrency-limited server is learned as a concurrency ceiling."""

from dataclasses import replace

import pytest

from promptforge_dagster.simulator.account import AccountLimits
from tests.core.provider_matrix import run_matrix
from tests.core.rate_scenarios import SCENARIOS, Scenario, ThreeJobs, controller, fixed_told, limits_of, run

SEEDS = range(8)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_goodput_and_refusals_across_seeds(scenario: Scenario):
    for seed in SEEDS:
        for i, (goodput, refused) in enumerate(run(scenario, seed)):
            assert goodput >= scenario.goodput, (scenario.name, seed, i, goodput)
            assert refused <= scenario.refused, (scenario.name, seed, i, refused)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_minute_read_as_a_shorter_window_costs_a_refusal_per_look_while_it_is_spent(seed):
    """A fixed minute that resets soon after the job starts is read as a window of that span
    (8.8 s, 23.6 s), so each later minute's quota is spent early and the lane waits out the
    rest. Its own sends age out of the span read, but the window does not free: after two
    such pauses the pauses double, and each look goes alone. Looking every 0.55 s, a burst at
    the rate each time, three seeds of 8 refused 85-97 requests in the seconds that admitted
    nothing (engine of 798d38f); now 3-20."""
    s = next(x for x in SCENARIOS if x.name == "fixed-1200")
    trace = run_matrix(controller(), limits_of(s, seed), s.duration, seed=seed, **s.kw)
    spent = [k for k in range(15, int(s.duration)) if not trace.ok.get(k)]  # after the first minute's flood
    assert sum(trace.refused.get(k, 0) for k in spent) <= 25, spent


SMALL_ACCOUNTS_RPM = (5, 10, 30)  # Gemini's free tier allows 5-15 RPM; Anthropic's first tier 50


@pytest.mark.parametrize("rpm", SMALL_ACCOUNTS_RPM)
@pytest.mark.parametrize("limiter", ["bucket", "sliding", "fixed"])
@pytest.mark.parametrize("style", ["openai", "anthropic"])
def test_a_small_account_that_states_its_limit_in_headers_is_paced_at_it(style, limiter, rpm):
    """Under the 60 RPM a lane starts at, told the limit by the first answer's headers: the
    lane goes no faster than it, from the last send (not 8 s after it on a 5 RPM account: a
    refusal, then 2 RPM for the rest of the run, read as a 32-s window of one request), and
    a spent count waits until its reset counted from the send (not from the answer: 0.87 of
    30 RPM). The engine of 25e1339 missed 13 of these 18."""
    s = Scenario(f"{style}-{rpm}-{limiter}", AccountLimits(rpm=rpm, **({} if limiter == "bucket" else
                                                                     {"limiter": limiter})),
                 0.95, 0.0, {"style": style, "headers": True})
    for seed in SEEDS:
        goodput, refused = run(s, seed)[0]
        assert goodput >= s.goodput and refused <= s.refused, (seed, goodput, refused)


@pytest.mark.parametrize("rpm", SMALL_ACCOUNTS_RPM)
@pytest.mark.parametrize("limiter", ["sliding", "fixed"])
@pytest.mark.parametrize("style", ["openai", "gemini"])
def test_a_small_window_whose_refusal_states_its_limit_and_retry_costs_one_refusal(style, limiter, rpm):
    """No headers; the 429 states the minute's limit and when to retry (OpenAI's message,
    Gemini's). The first refusal both tells the limit and says the window is spent: it is
    waited out as told (the engine of 25e1339 took it for one sent before the rate changed,
    sent on at the limit into the spent window and was refused again), and looked at a tenth of
    a second past the retry Gemini rounds to a tenth. One refusal in the run: 9-17% of the
    10-60 requests 2 minutes hold at 5-30 RPM (1.6-4.8% at 25e1339, some seeds 0.85 of the limit)."""
    limits = AccountLimits(rpm=rpm, limiter=limiter)
    s = Scenario(f"{style}-{rpm}-{limiter}", limits, 0.95, 1.0, {"style": style})
    for seed in SEEDS:
        trace = run_matrix(controller(), limits_of(s, seed), s.duration, seed=seed, **s.kw)
        refusals = sum(trace.refused.values())
        assert refusals <= 1 and trace.goodput_share(0.0, s.duration, rpm) >= s.goodput, (seed, refusals)


@pytest.mark.parametrize("rpm", [10, 30])
def test_a_small_account_that_charges_refusals_and_says_nothing_is_not_dug_into_debt(rpm):
    """A bare 429 that names nothing, refusals charged, under the 60 RPM a lane starts at. Each
    request refused while the account is in debt deepens it, so each look must wait longer
    than the last. The engine of 25e1339 reached 0.15 and 0.13 of these ceilings: "held" a rate
    for one request, it stepped back instead of halving; its first refusal read the young
    lane's one admitted request as nothing admitted; and a dry spell of one admitted request
    was read as a 37-s window of one. Goal missed: 0.95 with 1% (0.5 here, docs/BENCHMARKS.md)."""
    s = Scenario(f"bare-{rpm}-charged", AccountLimits(rpm=rpm, refusals_count=True), 0.5, 0.40)
    for seed in SEEDS:
        goodput, refused = run(s, seed)[0]
        assert goodput >= s.goodput and refused <= s.refused, (seed, goodput, refused)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_client_bound_job_reaches_what_a_bucket_told_the_exact_limit_reaches(seed):
    """The client manages ~250 requests/s (CPU per send); the account allows 30,000 RPM."""
    s = Scenario("client-bound", AccountLimits(rpm=30_000), 0.0, 1.0, {"client_s_per_request": 0.004,
                                                                       "latency_s": 0.05})
    adaptive = run(s, seed)[0][0]
    fixed = run(s, seed, fixed_told(1.0, s))[0][0]
    assert adaptive >= 0.95 * fixed, (adaptive, fixed)
    c = controller()
    run_matrix(c, s.limits, 60.0, seed=seed, **s.kw)
    snap = c.snapshot()
    assert snap["rate_limited"] == 0 and snap["learned_rpm_ceiling"] is None  # nothing was refused: nothing learned
    assert snap["client_bound_rpm"] and 0.9 * 15_000 <= snap["client_bound_rpm"] <= 1.1 * 15_000  # 250/s


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_a_client_bound_job_on_a_hosted_api_with_long_answers_is_not_held_to_a_blind_in_flight_bound(seed):
    """20-s answers, a client of ~9,100 RPM on a 10,000 RPM account: nothing is ever refused, so
    only the lane's in-flight bound holds it before the first answers (1,000 in flight is 3,000
    RPM at 20 s). A hosted API's lane has no such bound; a server of unknown kind keeps it."""
    s = next(x for x in SCENARIOS if x.name == "answers-20s-10000-client-bound-hosted")
    hosted = run(s, seed)[0][0]
    unknown = run(replace(s, config={}), seed)[0][0]
    fixed = run(s, seed, fixed_told(1.0, s))[0][0]
    assert hosted >= 0.95 * fixed and unknown < 0.9 * fixed, (hosted, unknown, fixed)


def test_a_full_queue_is_learned_as_a_concurrency_ceiling_not_a_rate():
    c = controller()
    run_matrix(c, AccountLimits(rpm=None, concurrency=16, queue=4), 60.0, style="vllm", latency_s=0.5)
    snap = c.snapshot()
    assert snap["concurrency_ceiling"] is not None and 12 <= snap["concurrency_ceiling"] <= 30
    assert snap["concurrency_source"] == "queue full"
    assert snap["in_flight_limit"] <= 30


def test_a_fixed_bucket_told_half_the_limit_gets_half_and_adaptive_beats_it():
    s = SCENARIOS[2]  # bucket-1200
    half = run(s, 0, fixed_told(0.5, s))[0][0]
    assert 0.45 <= half <= 0.55 and run(s, 0)[0][0] >= 0.95


@pytest.mark.parametrize("style, headers, known, bound", [
    ("openai", True, False, 0.02), ("openai", False, False, 0.02), ("bare", False, False, 0.03),
    ("anthropic", True, False, 0.02), ("vertex", False, True, 0.02), ("vertex", False, False, 0.09),
])
def test_three_jobs_on_one_account_share_a_stated_limit_without_flooding(style, headers, known, bound):
    """A stated limit is the account's: three jobs that each read it do not each take it all
    (Anthropic's "retry-after: 1", a whole second rounded up, is no spent window: each job
    steps back to its share; paused 1 s on each refusal instead, they refused 3%). 8 seeds:
    where 429s name no limit, one refuses 2.59% (the goal is 2%: the busy-pool detector takes
    the others' load for a pool's; benchmarks/three_jobs.py, docs/BENCHMARKS.md). In Vertex's
    words (a shared pool's), jobs that do not know of each other take each other's load for
    the pool's: 4 of 8 seeds refuse 6-8.2% (missed; lane sharing, the default, tells them apart)."""
    limits = AccountLimits(rpm=1800)
    for seed in SEEDS:
        trace = run_matrix(ThreeJobs(known), limits, 120.0, seed=seed, style=style, headers=headers)
        assert trace.goodput_share(60.0, 120.0, 1800) >= 0.90, seed
        assert trace.refused_share(60.0, 120.0) <= bound, (seed, trace.refused_share(60.0, 120.0))
