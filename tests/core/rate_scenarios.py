"""The scenarios of the provider matrix the rate engine is judged on (fake clock, 2-minute
phases from a cold start, ``--rate-window 5``), shared by the acceptance tests and the
survey printed by ``benchmarks/rate_matrix.py``."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate.controller import AdaptiveController
from promptforge_dagster.core.rate_controller import FixedRateController
from promptforge_dagster.simulator.account import AccountLimits, parse_schedule
from tests.core.provider_matrix import Request, Trace, run_matrix

PHASE_S = 120.0
WINDOW_S = 5.0


def mixed_sizes(rng: random.Random) -> Request:
    return Request(prompt_tokens=rng.randint(40, 540), max_tokens=32, completion_tokens=20)


def long_answers(rng: random.Random) -> Request:
    return Request(prompt_tokens=200, max_tokens=1000, completion_tokens=rng.randint(200, 800))


def budgeted_answers(rng: random.Random) -> Request:
    """A generous ``max_tokens`` over answers that use a fraction of it (as batch jobs set it)."""
    return Request(prompt_tokens=rng.randint(100, 600), max_tokens=1024, completion_tokens=rng.randint(50, 400))


STEADY_GOAL = (0.95, 0.01)  # issue 13: steady >= 0.95 of the ceiling with <= 1% refused
SHIFT_GOAL = (0.90, 0.02)  # shifting ceilings, per phase; TPM-bound; 6-s answers (goodput only)
LITELLM_CPU_S = 0.0035  # a real client's own cost per request: LiteLLM's CPU per call (the brief's measurement)
HOSTED_TRIP_S = 0.2  # a hosted API's refusal crosses the internet and the provider's gateway (50-300 ms), not the
# 10-30 ms of a server on the same host (the matrix's default)


@dataclass(frozen=True)
class Scenario:
    """``goodput``/``refused`` are what the acceptance test asserts (the worst of 8 seeds);
    ``goal`` is the issue's goal, where the test's bound is looser (a goal missed)."""

    name: str
    limits: AccountLimits
    goodput: float  # the share of the ceiling to reach (requests, or tokens when tpm-bound)
    refused: float  # the largest refused share allowed
    kw: dict[str, Any] = field(default_factory=dict)
    duration: float = PHASE_S
    measure: str = "requests"  # "requests", "tokens" or "concurrency" (share of what the server can serve)
    phases: tuple[tuple[float, float, float], ...] = ()  # (start, end, ceiling) judged separately, else the whole run
    goal: tuple[float, float] | None = None  # (goodput, refused) the issue asks for, when missed
    config: dict[str, Any] = field(default_factory=dict)  # RateConfig settings of the adaptive lane (``hosted``)

    def ceiling(self) -> float:
        return self.limits.tpm if self.measure == "tokens" else (self.limits.rpm or 0.0)


SLIDE = Scenario("answers-slide-2s-6s-1200", AccountLimits(rpm=1200), 0.93, 0.01,
                 {"latency_s": 2.0, "slowdown": lambda t: 1.0 if t < 60 else min(3.0, 1.0 + (t - 60) / 10.0)},
                 duration=240.0, phases=((0.0, 240.0, 1200.0), (120.0, 240.0, 1200.0)), goal=STEADY_GOAL)

SCENARIOS = [
    # token buckets, refusals free (most providers: Anthropic documents a continuously refilled bucket)
    Scenario("bucket-60", AccountLimits(rpm=60), 0.88, 0.05, goal=STEADY_GOAL),
    Scenario("bucket-600", AccountLimits(rpm=600), 0.95, 0.01),
    Scenario("bucket-1200", AccountLimits(rpm=1200), 0.95, 0.01),
    Scenario("bucket-6000-40ms", AccountLimits(rpm=6000), 0.95, 0.01, {"latency_s": 0.04}),
    Scenario("bucket-20000-40ms", AccountLimits(rpm=20000), 0.95, 0.01, {"latency_s": 0.04}),
    # refused requests charged (OpenAI: "unsuccessful requests contribute to your per-minute limit")
    Scenario("bucket-1200-refusals-charged", AccountLimits(rpm=1200, refusals_count=True), 0.95, 0.01),
    # (thirtieth session) a hosted API's refusals take the internet's round trip, and a real client sends ~285 a
    # second: all a lane sends before it hears of a refusal is refused too. A cut's pauses (twice the slowest trip)
    # outlasted 0.5 s, so no span of a search measured anything; the bucket banked its refill over them and
    # "proved" 2.3x its ceiling, and the lane went back and forth for two minutes: 13% refused (now ~2%: the first
    # flood and the probes' refusals, a goal missed; benchmarks/refusal_trip.py)
    Scenario("bucket-600-refusals-in-200ms", AccountLimits(rpm=600), 0.95, 0.025,
             {"refusal_s": HOSTED_TRIP_S, "client_s_per_request": LITELLM_CPU_S}, goal=STEADY_GOAL),
    # (twenty-seventh session) a charged bucket of a second's burst, quick answers, no words: a probe refused
    # after it admitted 1.2 bursts beyond the estimate had still proven more than it, learned only from the
    # refusal (worst of 8 seeds 0.878 before, 0.909 after; 1.1-1.2% refused, a goal missed; an account drawn by the
    # unseen survey)
    Scenario("bucket-395-charged-1s-burst-bare", AccountLimits(rpm=395, burst_s=1.0, refusals_count=True), 0.90,
             0.0125, {"style": "bare", "latency_s": 0.3}, goal=STEADY_GOAL),
    # (twentieth session) a bucket that holds a minute (as Anthropic documents its own), refusals charged, no
    # headers: its first minute's burst read as a window of ~10 s at 5.7x the ceiling, each refusal waited out as a
    # spent window's for three of those spans (7.7% refused); a window refuses only once its quota is used
    Scenario("bucket-1000-holds-a-minute-charged", AccountLimits(rpm=1000, refusals_count=True, burst_s=60.0),
             0.95, 0.04, goal=STEADY_GOAL),
    # window counters: sliding 60 s and fixed per minute (gateways, Gemini's per-minute quotas)
    Scenario("sliding-1200", AccountLimits(rpm=1200, limiter="sliding"), 0.95, 0.03, goal=STEADY_GOAL),
    # (a job that starts late in a minute measures the first, partial minute as the whole: 2.5x too high,
    # and each later minute refuses from its quota's end, a refusal per look; the worst seed of 8 2.1%)
    Scenario("fixed-1200", AccountLimits(rpm=1200, limiter="fixed"), 0.95, 0.03, goal=STEADY_GOAL),
    # (twenty-first session) a fixed minute that charges refusals, in Anthropic's words (its limit stated, no
    # headers, answers of 2 s): the cold start's flood spends the minute, and each refusal at the stated limit cut
    # the lane on, to 8 RPM, where a step of 8 requests takes a minute: 7 seeds of 8 sent nothing more for the
    # rest of the run (0.50). Cut under a quarter of its ceiling, a step is now timed (5 s)
    # (twenty-third session) ... and the lane still cut on each refusal while the minute was spent, eleven times, and
    # climbed back until 95 s (0.78): under a known ceiling, an account that admits next to nothing is a spent window
    Scenario("anthropic-300-fixed-minute-charged", AccountLimits(rpm=300, limiter="fixed", refusals_count=True), 0.90,
             0.05, {"style": "anthropic", "latency_s": 2.0}, goal=STEADY_GOAL),
    # a sliding minute whose refusals state the limit (OpenAI's words, no headers): the cold start's flood
    # spends the minute at once, and the lane waits it out as told; once the flood ages out, it climbs to the
    # limit (it held the rate the flood's echo allowed, 0.66 of it, for the rest of that minute: 0.815)
    Scenario("openai-300-sliding-message-only", AccountLimits(rpm=300, limiter="sliding"), 0.95, 0.03,
             {"style": "openai"}, goal=STEADY_GOAL),
    Scenario("sliding-1200-charged-openai-headers", AccountLimits(rpm=1200, limiter="sliding", refusals_count=True),
             0.95, 0.01, {"style": "openai", "headers": True}),
    # how refusals are worded
    Scenario("openai-600-headers", AccountLimits(rpm=600), 0.95, 0.01, {"style": "openai", "headers": True}),
    Scenario("openai-600-message-only", AccountLimits(rpm=600), 0.95, 0.01, {"style": "openai"}),
    # Groq (docs, "Rate Limits"): OpenAI's words, but x-ratelimit-limit-requests states the requests per day
    Scenario("groq-300-headers-state-a-day", AccountLimits(rpm=300), 0.95, 0.01, {"style": "groq", "headers": True}),
    Scenario("groq-1200-headers-state-a-day", AccountLimits(rpm=1200), 0.95, 0.01, {"style": "groq", "headers": True}),
    Scenario("azure-600", AccountLimits(rpm=600), 0.95, 0.01, {"style": "azure", "headers": True}),
    Scenario("anthropic-600-headers", AccountLimits(rpm=600), 0.95, 0.01, {"style": "anthropic", "headers": True}),
    Scenario("gemini-600-fixed", AccountLimits(rpm=600, limiter="fixed"), 0.95, 0.02, {"style": "gemini"},
             goal=STEADY_GOAL),
    # (twenty-first session) a 10-s window counter whose refusals state the minute's limit (OpenAI's words, no
    # headers; a gateway counting as Azure does), the job starting anywhere in a window: the first dry spell, read
    # from the lane's first requests, spans a reset the lane never saw (1.4x too long), and that lower bound was
    # taken under the stated limit (0.908); the stated limit now stands against it. One seed, refused at the limit
    # while the flood's window was spent and told "try again in 1.558s", cut to 158 RPM and climbed back for 10 s
    # (0.939): a retry to a fraction of a second, ten of the limit's intervals long, is now waited out. The worst
    # seed waits for the window its flood spent (0.949)
    Scenario("openai-6000-10s-fixed-message-only", AccountLimits(rpm=6000, limiter="fixed", window_s=10.0), 0.94,
             0.01, {"style": "openai"}, goal=STEADY_GOAL),
    # Azure OpenAI evaluates RPM over 1- or 10-s intervals (PROVIDERS.md): a window counter, not a minute
    # (begun anywhere in one, a cut's look refused "retry after N seconds" waits as told: the worst seed of
    # 8 reads its first window 1.36x too long, 0.86; cut again on each look instead it was 0.56). Twenty-second
    # session: a probe's spent window is read again, above the estimate too, over its own span (worst 0.871 -> 0.914)
    Scenario("azure-600-10s-window", AccountLimits(rpm=600, limiter="fixed", window_s=10.0), 0.90, 0.025,
             {"style": "azure", "headers": True}, goal=STEADY_GOAL),
    # A probe past a 1-s window's quota is refused within a second; after one such, a proven probe reaches no further
    # than halfway to the rate refused (twenty-fourth session: worst seed 0.856 -> 0.863)
    Scenario("azure-600-1s-window", AccountLimits(rpm=600, limiter="fixed", window_s=1.0), 0.86, 0.01,
             {"style": "azure", "headers": True}, goal=STEADY_GOAL),
    # (seventeenth session) Mistral states a minute's counts in its own header names; Bedrock names the limit
    # it throttles on (requests or tokens) and states nothing else
    Scenario("mistral-600-headers", AccountLimits(rpm=600), 0.95, 0.01, {"style": "mistral", "headers": True}),
    Scenario("vertex-600", AccountLimits(rpm=600), 0.95, 0.01, {"style": "vertex"}),
    Scenario("bare-600", AccountLimits(rpm=600), 0.95, 0.01, {"style": "bare"}),
    # TPM charged at admission on prompt + max_tokens, mixed prompt sizes
    Scenario("tpm-120k-openai-mixed", AccountLimits(rpm=None, tpm=120_000), 0.90, 0.02,
             {"style": "openai", "request": mixed_sizes}, measure="tokens"),
    Scenario("tpm-120k-bare-mixed", AccountLimits(rpm=None, tpm=120_000), 0.90, 0.02,
             {"request": mixed_sizes}, measure="tokens"),
    Scenario("tpm-120k-bedrock-mixed", AccountLimits(rpm=None, tpm=120_000), 0.90, 0.02,
             {"style": "bedrock", "request": mixed_sizes}, measure="tokens"),
    # token limits that count other than prompt + max_tokens, by their own names (Anthropic's ITPM and
    # OTPM, a bucket holding a minute; Gemini's TPM on input tokens, a fixed minute)
    Scenario("anthropic-itpm-60k-headers", AccountLimits(rpm=None, tpm=60_000, tokens_basis="input", burst_s=60.0),
             0.90, 0.02, {"style": "anthropic", "headers": True, "request": budgeted_answers, "s_per_token": 0.005},
             measure="tokens"),
    # ... whose prompts count 1/0.6 of the client's estimate (characters / 4 reads CJK text or code low)
    Scenario("anthropic-itpm-60k-prompts-estimated-low",
             AccountLimits(rpm=None, tpm=60_000, tokens_basis="input", burst_s=60.0), 0.90, 0.02,
             {"style": "anthropic", "headers": True, "request": budgeted_answers, "s_per_token": 0.005,
              "prompt_estimate": 0.6}, measure="tokens"),
    Scenario("anthropic-otpm-16k-headers", AccountLimits(rpm=None, tpm=16_000, tokens_basis="output", burst_s=60.0),
             0.90, 0.02, {"style": "anthropic", "headers": True, "request": budgeted_answers, "s_per_token": 0.005},
             measure="tokens"),
    Scenario("gemini-tpm-input-120k-fixed", AccountLimits(rpm=None, tpm=120_000, tokens_basis="input", limiter="fixed"),
             0.90, 0.02, {"style": "gemini", "request": budgeted_answers, "s_per_token": 0.005}, measure="tokens"),
    # Azure OpenAI's TPM, if counted over 10-s intervals as its RPM is (its words and remaining-* headers)
    Scenario("azure-tpm-120k-10s-window", AccountLimits(rpm=None, tpm=120_000, limiter="fixed", window_s=10.0),
             0.93, 0.03, {"style": "azure", "headers": True, "request": mixed_sizes}, measure="tokens",
             goal=SHIFT_GOAL),
    # a busy shared pool refuses a share of requests whatever the rate (Vertex AI's dynamic shared quota):
    # no client avoids those, so the goal on refusals is the pool's share plus the steady 1%
    # (twenty-fifth session) each refusal cut a cold start and stepped a steady lane back, whose estimate was then
    # measured at its own lowered rate: 3% cut one from 480 to 60 RPM in 14 s (0.05). Vertex's words say a shared
    # pool's: one with no other among the latest answers now teaches nothing, searching or steady (0.05 -> 0.70)
    Scenario("vertex-1200-pool-1pct", AccountLimits(rpm=1200, pool_refusals=0.01), 0.90, 0.045, {"style": "vertex"},
             goal=(0.95, 0.02)),
    Scenario("vertex-1200-pool-3pct", AccountLimits(rpm=1200, pool_refusals=0.03), 0.70, 0.09, {"style": "vertex"},
             goal=(0.95, 0.04)),
    # (twenty-sixth session) Vertex AI under a project's quota: the quota's 429 names its metric ("Quota exceeded for
    # aiplatform.googleapis.com/..._requests_per_minute_...") and the busy pool keeps its words; once a refusal named
    # the limit, one in the pool's words is the pool's (1%: worst of 8 seeds 0.59 -> 0.99; 3%: 0.54 -> 0.72, its
    # worst seeds cut by the pool before the limit was ever named)
    Scenario("vertex-quota-1200-pool-1pct", AccountLimits(rpm=1200, pool_refusals=0.01), 0.95, 0.022,
             {"style": "vertex-quota"}, goal=(0.95, 0.02)),
    Scenario("vertex-quota-1200-pool-3pct", AccountLimits(rpm=1200, pool_refusals=0.03), 0.70, 0.045,
             {"style": "vertex-quota"}, goal=(0.95, 0.04)),
    # (sixteenth session) a busy Azure region: its peak-load 429s ("experiencing high demand", retry after 6 s)
    # are no quota's; the deployment's own limit is counted per 10 s as Azure does
    Scenario("azure-600-peak-load-3pct", AccountLimits(rpm=600, pool_refusals=0.03), 0.95, 0.055,
             {"style": "azure", "headers": True}, goal=(0.95, 0.04)),
    Scenario("openai-1200-headers-pool-3pct", AccountLimits(rpm=1200, pool_refusals=0.03), 0.85, 0.045,
             {"style": "openai", "headers": True}, goal=(0.95, 0.04)),
    # long answers: Little's law, not a fixed in-flight bound
    Scenario("answers-6s-3000", AccountLimits(rpm=3000), 0.90, 0.01, {"latency_s": 6.0}),
    # (twenty-eighth session) a fast account, 6-s answers: the first 1,000 in flight hold the lane under its rate
    # until answers show more; a span between refusals sent so was read as the ceiling (0.59 of it): worst of 8
    # seeds 0.842 before, 0.898 after (a fixed bucket told the limit 0.957: the first 6 s bring no answer)
    Scenario("answers-6s-16282-1s-burst", AccountLimits(rpm=16282, burst_s=1.0), 0.88, 0.01,
             {"style": "bedrock", "latency_s": 6.0}, goal=STEADY_GOAL),
    # ... and 20-s answers (a reasoning model) on a 20,000 RPM account: refused before any answer came back, the
    # lane sat at the 1,000 in flight allowed a server that queues without a word, then again when the answers to
    # that stretch showed little (0.645 before; a fixed bucket told the limit: 0.838, its first 20 s bring nothing)
    Scenario("answers-20s-20000", AccountLimits(rpm=20000, burst_s=1.0), 0.75, 0.01, {"latency_s": 20.0},
             goal=STEADY_GOAL),
    # a client of ~9,100 RPM (CPU per send) on a hosted API's 10,000 RPM account with 20-s answers: never refused,
    # so before the first answers only the in-flight bound holds it; on a hosted API there is none but Little's
    # law (the goal: within 5% of a fixed bucket told the limit, 0.754; held to 1,000 in flight it was 0.637)
    Scenario("answers-20s-10000-client-bound-hosted", AccountLimits(rpm=10000, burst_s=1.0), 0.70, 0.01,
             {"style": "openai", "latency_s": 20.0, "client_s_per_request": 60.0 / 9100}, config={"hosted": True}),
    Scenario("answers-grow-with-tokens-1200", AccountLimits(rpm=1200), 0.88, 0.012,
             {"latency_s": 0.2, "s_per_token": 0.02, "request": long_answers}, goal=(0.90, 0.01)),
    # a self-hosted server: concurrency, a queue, latency that grows with load
    Scenario("vllm-concurrency-32", AccountLimits(rpm=None, concurrency=32, queue=8), 0.90, 0.01,
             {"style": "vllm", "latency_s": 1.0}, measure="concurrency"),
    # (seventeenth session) ... and with no gateway (vLLM served directly): nothing refused, past its batch requests
    # wait and answers slow; the client gives up after --timeout (120 s). A lane that kept climbing held 20,000 in
    # its queue, and every request timed out from the third minute on (0.05 of it). Until the nineteenth session
    # the first flood, 20,000 sent in 10 s before any slow answer showed the queue, timed out once (64% of the
    # run's attempts); the watch now reads the answers going flat while the sends still climb
    Scenario("vllm-no-gateway-32", AccountLimits(rpm=None, concurrency=32, queue=10**6), 0.95, 0.01,
             {"style": "vllm", "latency_s": 1.0, "timeout_s": 120.0}, duration=300.0, measure="concurrency",
             phases=((0.0, 300.0, 0.0), (180.0, 300.0, 0.0))),
    # (nineteenth session) a hosted API whose answers slide from 2 s to 6 s over 20 s, whatever the lane sends: its
    # in flight grows with them as a queue's would; read as a queue, the lane was held at 0.42 of its rate (last 2
    # minutes 0.506). Goodput counts answers: a fixed bucket told the limit gets 0.978 of the whole run
    SLIDE,
    # ... the same called at the provider's own endpoint (core/rate/hosted.py): its answers' times teach no queue
    replace(SLIDE, name="answers-slide-2s-6s-1200-hosted", goodput=0.95, goal=None, config={"hosted": True}),
    Scenario("shifting-900-300-1200", AccountLimits(rpm=900, schedule=parse_schedule("0:900,120:300,240:1200")),
             0.80, 0.02, duration=360.0, phases=((0.0, 120.0, 900.0), (120.0, 240.0, 300.0), (240.0, 360.0, 1200.0)),
             goal=SHIFT_GOAL),
]


def controller(**kw) -> AdaptiveController:
    return AdaptiveController(RateConfig(window_s=WINDOW_S, **kw), now=0.0)


def judge(s: Scenario, trace: Trace, start: float, end: float, ceiling: float) -> tuple[float, float]:
    """(goodput share, refused share) over [start, end)."""
    if s.measure == "tokens":
        share = trace.token_share(start, end, ceiling)
    elif s.measure == "concurrency":  # share of what the server serves: batch slots / answer time
        per_minute = s.limits.concurrency / s.kw.get("latency_s", 0.3) * 60.0
        share = trace.goodput_share(start, end, per_minute)
    else:
        share = trace.goodput_share(start, end, ceiling)
    return share, trace.refused_share(start, end)


WINDOW_PHASES = 0.618  # seed k starts k x this (mod 1) of a window into a fixed window: 8 seeds spread over it


def limits_of(s: Scenario, seed: int) -> AccountLimits:
    """The account of ``s`` for ``seed``: a fixed window begins anywhere before the job's first
    request (aligned with it, a cut lands early in a window and the account's evidence is kind)."""
    if s.limits.limiter != "fixed":
        return s.limits
    return replace(s.limits, window_phase_s=s.limits.window_s * (seed * WINDOW_PHASES % 1.0))


def run(s: Scenario, seed: int, make: Callable[[], Any] | None = None) -> list[tuple[float, float]]:
    """Each phase's (goodput, refused) for ``seed``; by default an adaptive lane set as ``s.config`` says."""
    trace = run_matrix(make() if make else controller(**s.config), limits_of(s, seed), s.duration, seed=seed, **s.kw)
    phases = s.phases or ((0.0, s.duration, s.ceiling()),)
    return [judge(s, trace, a, b, c) for a, b, c in phases]


def fixed_told(share: float, s: Scenario) -> Callable[[], FixedRateController]:
    """A fixed token bucket told ``share`` of the true limit (what users configure today)."""
    rpm = s.limits.rpm * share if s.limits.rpm else None
    tpm = s.limits.tpm * share if s.limits.tpm else None
    return lambda: FixedRateController(rpm, now=0.0, tpm=tpm)


class ThreeJobs:
    """Three independent jobs (no sharing) on one account: each send attempt goes to the jobs
    in turn, each answer back to the job that sent it. ``known``: each job is told that others
    pace on its lane, as lane sharing (the default) tells it."""

    def __init__(self, known: bool = False):
        self.jobs = [controller() for _ in range(3)]
        for job in self.jobs if known else ():
            job.shared_by(3)
        self._turn = 0
        self._sender = {}

    def acquire(self, now, est_tokens, max_tokens=0):
        waits = []
        for _ in range(3):
            job = self.jobs[self._turn % 3]
            self._turn += 1
            wait = job.acquire(now, est_tokens, max_tokens)
            if wait == 0.0:
                self._sender[now] = job
                return 0.0
            waits.append(wait)
        return min(waits)

    def record(self, sample):
        self._sender.pop(sample.sent_at, self.jobs[0]).record(sample)

    def in_flight_limit(self):
        return sum(j.in_flight_limit() for j in self.jobs)
