"""Token limits are counted as each provider counts them: OpenAI and Azure the prompt plus
max_tokens at admission, Anthropic's ITPM the prompt, its OTPM the answer (reserved as
max_tokens, settled to the answer), Gemini's TPM the input. A limit stated in one count is
never taken as a cap in another (Anthropic states its ITPM and OTPM on every answer)."""

import pytest

from promptforge_dagster.core.outcome import OutcomeKind
from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate.controller import AdaptiveController
from promptforge_dagster.core.rate.phases import Phase
from promptforge_dagster.core.rate.estimator import CeilingEstimator
from promptforge_dagster.core.rate.messages import ADMISSION, INPUT, OUTPUT
from promptforge_dagster.core.rate.signals import parse_signal
from promptforge_dagster.core.rate.token_units import TokenUnits, stated_token_limits
from promptforge_dagster.core.rate_controller import RateSample
from promptforge_dagster.simulator.account import AccountLimits, Admission, SimulatedAccount
from promptforge_dagster.simulator.styles import message_of, refusal, success_headers

ANTHROPIC_ANSWER = {  # what Anthropic sends on every answer (tier 1 of a Sonnet model)
    "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "49",
    "anthropic-ratelimit-input-tokens-limit": "30000", "anthropic-ratelimit-input-tokens-remaining": "29000",
    "anthropic-ratelimit-output-tokens-limit": "8000", "anthropic-ratelimit-output-tokens-remaining": "7000",
    "anthropic-ratelimit-tokens-limit": "8000", "anthropic-ratelimit-tokens-remaining": "7000",
}


def otpm_refusal() -> str:
    return ("This request would exceed the rate limit for your organization (org) of 8,000 output tokens per "
            "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.")


@pytest.mark.parametrize("message, basis, value", [
    ("Rate limit reached for gpt-4o in organization org-1 on tokens per min (TPM): Limit 30000, Used 29000, "
     "Requested 1500. Please try again in 2s.", ADMISSION, 30000.0),
    ("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded "
     "token rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds.", ADMISSION, None),
    ("This request would exceed the rate limit for your organization (o) of 40,000 input tokens per minute.",
     INPUT, 40000.0),
    (otpm_refusal(), OUTPUT, 8000.0),
    ("* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count, "
     "limit: 250000, model: gemini-2.0-flash\nPlease retry in 3.0s.", INPUT, 250000.0),
    ("This request would exceed your organization's rate limit of 90,000 tokens per minute.", None, None),
    # Anthropic's other wording, no value stated: "request tokens" are the prompt's (ITPM)
    ("Number of request tokens has exceeded your per-minute rate limit (https://docs.anthropic.com/en/api/rate-limits)"
     "; see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, "
     "or try again later.", INPUT, None),
    ("Number of output tokens has exceeded your per-minute rate limit", OUTPUT, None),
    # a Vertex AI project's own quota, named by its metric
    ("Quota exceeded for aiplatform.googleapis.com/generate_content_input_tokens_per_minute_per_base_model with "
     "base model: gemini-1.5-pro. Please submit a quota increase request.", INPUT, None),
])
def test_a_token_refusal_says_what_its_limit_counts(message, basis, value):
    signal = parse_signal(429, message, {})
    assert (signal.limit, signal.token_basis, signal.limit_value) == ("tokens", basis, value)


def test_anthropics_answer_headers_state_its_limits_by_what_they_count_and_its_tokens_limit_is_none_of_them():
    signal = parse_signal(200, "", ANTHROPIC_ANSWER)
    assert signal.headers.limit_tokens is None  # "the most restrictive" of ITPM and OTPM: of no one count
    assert dict(stated_token_limits(signal)) == {INPUT: 30000.0, OUTPUT: 8000.0}
    assert signal.headers.remaining_tokens == 7000  # ... yet it still says when the account is spent


def test_a_requests_cost_in_each_count_and_the_input_count_follows_what_the_provider_counted():
    u = TokenUnits(RateConfig())
    assert (u.of(1200, 1000, ADMISSION), u.of(1200, 1000, INPUT), u.of(1200, 1000, OUTPUT)) == (1200, 200, 1000)
    for _ in range(200):  # the provider counts each 200-token estimate as 320 and answers 150 tokens
        u.answered((320, 150), prompt_estimate=200)
    assert u.of(1200, 1000, INPUT) == pytest.approx(320, rel=0.01)
    assert u.of(1200, 1000, OUTPUT) == pytest.approx(150, rel=0.01)
    assert u.of(1200, 1000, ADMISSION) == 1200  # OpenAI estimates from characters too: ours stands


def answer(c: AdaptiveController, at: float, headers: dict, *, usage=(200, 200)) -> None:
    c.record(RateSample(at - 0.5, at, OutcomeKind.SUCCESS, 400, 1200, signal=parse_signal(200, "", headers),
                        max_tokens=1000, usage=usage))


def test_anthropics_output_token_limit_stated_on_every_answer_is_no_cap_on_prompt_plus_max_tokens():
    c = AdaptiveController(RateConfig(window_s=5), now=0.0)
    for i in range(20):
        answer(c, 1.0 + i * 0.1, ANTHROPIC_ANSWER)
    assert c.tokens is None  # was: a cap of 8,000 tokens a minute on 1,200-token requests (6.7 requests a minute)
    assert c.requests.cap == pytest.approx(50 / 60.0)


def test_a_refusal_of_output_tokens_paces_answers_as_they_are_counted():
    c = AdaptiveController(RateConfig(window_s=5), now=0.0)
    for i in range(20):
        answer(c, 1.0 + i * 0.1, {})
    c.record(RateSample(3.0, 3.1, OutcomeKind.RATE_LIMITED, 1200, 1200, signal=parse_signal(429, otpm_refusal(), {}),
                        max_tokens=1000))
    assert c.units.basis == OUTPUT and c.tokens.cap * 60.0 == pytest.approx(8000.0)
    sent, t = 0, 20.0
    while t < 80.0:  # a minute of asking, after any pause
        if c.acquire(t, 1200, max_tokens=1000) == 0.0:
            sent += 1
        t += 0.01
    assert 35 <= sent <= 40  # 8,000 output tokens a minute of 200-token answers (not 8,000 / 1,200 = 6.7)
    assert c.snapshot()["tpm_counts"] == OUTPUT


def test_the_pause_allowed_between_sends_of_a_measurement_counts_requests_not_tokens():
    e = CeilingEstimator(min_sends=12, min_span_s=1.0, refusal_weight=0.0)
    t = 0.0
    while t < 21.0:  # a 1,000-token request every 0.8 s: a slow lane of large requests
        e.sent(t, 1000.0)
        t += 0.8
    assert e.refused(0.0, 1000.0) is None
    est = e.refused(20.0, 1000.0)
    assert est is not None and est.per_s == pytest.approx(1250.0, rel=0.05)


@pytest.mark.parametrize("basis, charged_after_answer", [("admission", 1300), ("input", 300), ("output", 200)])
def test_the_simulated_account_counts_tokens_as_its_basis_says(basis, charged_after_answer):
    limits = AccountLimits(rpm=None, tpm=60_000, burst_s=60.0, tokens_basis=basis)
    acct = SimulatedAccount(limits, now=0.0)
    assert acct.admit(0.0, limits.token_charge(300, 1000)).ok
    acct.release(0.0, limits.token_refund(1000, 200))  # a 200-token answer
    assert acct._tok.remaining(0.0) == pytest.approx(60_000 - charged_after_answer)


def test_the_simulator_names_anthropics_token_limits_as_anthropic_does():
    limits = AccountLimits(rpm=None, tpm=8000, burst_s=60.0, tokens_basis="output")
    adm = SimulatedAccount(limits, now=0.0).admit(0.0, limits.token_charge(100, 4000))
    status, body, headers = refusal("anthropic", Admission(False, "tokens", 1.0, adm.headers, 8000.0, 8000.0),
                                    now_epoch=1e9, tokens_basis="output")
    signal = parse_signal(status, message_of(body), headers, 1e9)
    assert (signal.token_basis, signal.limit_value) == (OUTPUT, 8000.0)
    answered = success_headers("anthropic", adm.headers, 1e9, "output")
    assert {"anthropic-ratelimit-output-tokens-limit", "anthropic-ratelimit-tokens-limit"} <= set(answered)
    assert "anthropic-ratelimit-input-tokens-limit" not in answered


def test_a_tokens_axis_opened_by_a_flood_of_refusals_starts_from_what_the_account_admitted_before_it():
    c = AdaptiveController(RateConfig(window_s=5, rpm_hint=6000), now=0.0)  # requests never hold it back here
    bare = parse_signal(429, "Too many tokens per min for this key", {})  # names tokens, states nothing
    for i in range(50):  # 10 requests of 2,000 tokens a second for 5 s, all admitted
        assert c.acquire(0.1 * i, 2000) == 0.0
        c.record(RateSample(0.1 * i, 0.1 * i + 0.3, OutcomeKind.SUCCESS, 2000, 2000))
    for i in range(30):  # then the account is dry: what is sent over the next second is refused
        at = 5.0 + i * 0.03
        if c.acquire(at, 2000) == 0.0:
            c.record(RateSample(at, at + 0.02, OutcomeKind.RATE_LIMITED, 2000, 2000, signal=bare))
    admitted_per_s = 50 * 2000 / 60.0  # what the account admitted over the last minute, per second
    assert c.tokens.per_s >= 0.9 * admitted_per_s  # was: cut to 1 token a second, a request every half hour



def test_the_refusal_that_opens_a_tokens_axis_is_its_own_first_and_starts_its_dry_spell():
    c = AdaptiveController(RateConfig(window_s=5, rpm_hint=6000), now=0.0)
    azure = parse_signal(429, "Requests to the ChatCompletions_Create Operation have exceeded token rate limit of "
                              "your current OpenAI S0 pricing tier. Please retry after 5 seconds.", {})
    for i in range(50):  # 10 requests of 2,000 tokens a second for 5 s, all admitted: 20,000 tokens a second
        assert c.acquire(0.1 * i, 2000) == 0.0
        c.record(RateSample(0.1 * i, 0.1 * i + 0.3, OutcomeKind.SUCCESS, 2000, 2000))
    c.acquire(5.0, 2000)
    c.record(RateSample(5.0, 5.02, OutcomeKind.RATE_LIMITED, 2000, 2000, signal=azure))
    # refused at the rate it was sending (not opened at half of it, searching on as if never refused: a
    # 10-s window counter then doubled into its dry spell and read no window from it)
    assert c.tokens.phase is Phase.BACKOFF and c.tokens.per_s <= 0.5 * 20_000 * 1.01
    assert c.tokens.window.last_refused == 5.0 and c.tokens.decreases == 1
