"""Invariant: outcomes are classified by status and error text into the retry policy's
kinds, and rate-limit headers of every supported style are read (or ignored) safely."""

import pytest

from promptforge_dagster.core.outcome import OutcomeKind, classify
from promptforge_dagster.core.rate.headers import parse_duration, parse_rate_headers

K = OutcomeKind


@pytest.mark.parametrize(
    "status, message, kind",
    [
        (429, "Rate limit reached for requests", K.RATE_LIMITED),
        (429, "You exceeded your current quota, please check your plan and billing details.", K.FATAL),
        (429, "insufficient_quota", K.FATAL),
        (429, "Rate limit reached for gpt-4o-mini in organization org-1 on requests per day (RPD): Limit 200, "
              "Used 200, Requested 1. Please try again in 7m12s.", K.FATAL),  # the day's limit, not a minute's
        (429, "You exceeded your current quota, please check your plan and billing details.\n* Quota exceeded for "
              "metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 250, model: "
              "gemini-2.5-flash\nPlease retry in 22.9s. {'quotaId': 'GenerateRequestsPerDayPerProjectPerModel-FreeTier'}",
         K.FATAL),
        (429, "* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, "
              "limit: 0, model: gemini-2.5-pro\nPlease retry in 20.0s.", K.FATAL),  # not in the account's tier
        (429, "* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, "
              "limit: 15, model: gemini-2.0-flash\nPlease retry in 39.6s. {'quotaId': "
              "'GenerateRequestsPerMinutePerProjectPerModel-FreeTier'}", K.RATE_LIMITED),
        # Anthropic's spend limit, a 400: the job stops (a rerun resumes once access is back)
        (400, "You have reached your specified API usage limits. You will regain access on 2026-08-01 at 00:00 UTC.",
         K.FATAL),
        # the LiteLLM proxy's spend limit: does not pass within a job (422 now, 429 from older proxies)
        (429, "Budget has been exceeded! Key=batch-key Current cost: 10.2, Max budget: 10.0", K.FATAL),
        (422, "Budget has been exceeded! Team=ml Current cost: 51.0, Max budget: 50.0", K.FATAL),
        # ... and its per-key rate limit, which does
        (429, "Rate limit exceeded for key: batch-key. Limit type: requests. Current limit: 10, Remaining: 0. Limit "
              "resets at: 2026-12-03 10:00:00 UTC", K.RATE_LIMITED),
        (429, "Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_day_per_project_per_base_"
              "model with base model: gemini-1.5-pro. Please submit a quota increase request.", K.FATAL),  # a day's
        # OpenRouter's free models: a day's, in its own words (the "high balance" tier says nothing more)
        (429, "Rate limit exceeded: free-models-per-day-high-balance.", K.FATAL),
        (429, "Rate limit exceeded: free-models-per-min.", K.RATE_LIMITED),
        # Bedrock's ThrottlingException: a minute's TPM passes, a day's does not
        (429, "Too many tokens, please wait before trying again.", K.RATE_LIMITED),
        (429, "Too many tokens per day, please wait before trying again.", K.FATAL),
        # a month's limit: Cohere's trial keys, Mistral's monthly tokens
        (429, "You are using a Trial key, which is limited to 10 API calls / minute.", K.RATE_LIMITED),
        (429, "You are using a Trial key, which is limited to 1,000 API calls a month.", K.FATAL),
        (429, "Monthly token limit exceeded", K.FATAL),
        (429, "Tokens rate limit exceeded", K.RATE_LIMITED),
        # a request larger than the limit itself: that line's error (no wait admits it)
        (429, "Request too large for gpt-4o in organization org-1 on tokens per min (TPM): Limit 30000, Requested "
              "45000. The input or output tokens must be reduced in order to run successfully.", K.PERMANENT),
        (429, "Rate limit reached for gpt-4o in organization org-1 on tokens per min (TPM): Limit 30000, Used 29000, "
              "Requested 1200. Please try again in 2.4s.", K.RATE_LIMITED),
        (401, "Incorrect API key", K.FATAL),
        (403, "forbidden", K.FATAL),
        (400, "Invalid value for 'messages'", K.PERMANENT),
        (404, "model not found", K.PERMANENT),
        (422, "unprocessable", K.PERMANENT),
        (500, "internal", K.TRANSIENT),
        (502, "bad gateway", K.TRANSIENT),
        (503, "Service Unavailable", K.OVERLOADED),
        (529, "Overloaded", K.OVERLOADED),
        (498, "capacity_exceeded", K.OVERLOADED),  # Groq's flex tier at capacity: retried, not a bad request
        (500, "the engine is overloaded", K.OVERLOADED),
        (408, "timeout", K.TRANSIENT),
        (None, "connection reset", K.TRANSIENT),
    ],
)
def test_classification(status, message, kind):
    assert classify(status, message) is kind


def test_a_month_spent_is_read_from_mistrals_headers_and_says_so():
    """Mistral words its monthly token limit as its minute's ("Tokens rate limit exceeded");
    only ``x-ratelimit-remaining-tokens-month: 0`` tells the month is spent: the job stops
    (a rerun resumes) instead of retrying each line until its attempts run out."""
    from promptforge_dagster.core.outcome import Outcome, stop_reason

    month = {"llm_provider-x-ratelimit-remaining-tokens-month": "0"}
    assert classify(429, "Tokens rate limit exceeded", headers=month) is K.FATAL
    assert classify(429, "Tokens rate limit exceeded", headers={"x-ratelimit-remaining-tokens-month": "9"}) \
        is K.RATE_LIMITED
    reason = stop_reason(Outcome(K.FATAL, 429, headers=month, message="Tokens rate limit exceeded"))
    assert reason == "the provider's monthly limit is spent: Tokens rate limit exceeded"


def test_a_refusal_that_asks_for_hours_stops_the_job_and_says_so():
    """Azure OpenAI's free tier: "Please retry after 86400 seconds." Waited out, every line
    would sleep a day with the job silent; it stops with that line (a rerun resumes)."""
    from promptforge_dagster.core.outcome import Outcome, stop_reason

    text = ("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-05-01-preview have "
            "exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 86400 seconds.")
    assert classify(429, text) is K.FATAL
    assert classify(429, text.replace("86400", "6")) is K.RATE_LIMITED
    assert classify(429, "Rate limit exceeded", headers={"retry-after": "86400"}) is K.FATAL
    assert classify(429, "Rate limit exceeded", headers={"retry-after": "60"}) is K.RATE_LIMITED
    assert stop_reason(Outcome(K.FATAL, 429, message=text)).startswith(
        "the provider asks to retry after 24 h, a limit no job waits out: Requests to")


def test_openai_headers_with_litellm_prefix():
    s = parse_rate_headers({
        "llm_provider-x-ratelimit-limit-requests": "500",
        "llm_provider-x-ratelimit-remaining-requests": "499",
        "llm_provider-x-ratelimit-reset-requests": "120ms",
        "llm_provider-x-ratelimit-limit-tokens": "30000",
        "llm_provider-x-ratelimit-remaining-tokens": "29000",
        "llm_provider-x-ratelimit-reset-tokens": "2s",
    })
    assert (s.limit_requests, s.remaining_requests, s.reset_requests_s) == (500, 499, 0.12)
    assert (s.limit_tokens, s.remaining_tokens, s.reset_tokens_s) == (30000, 29000, 2.0)


def test_anthropic_headers_and_reset_timestamp():
    s = parse_rate_headers({
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:30Z",
        "retry-after": "30",
    }, now_epoch=1767225600.0)  # 2026-01-01T00:00:00Z
    assert s.limit_requests == 50 and s.remaining_requests == 0
    assert s.reset_requests_s == pytest.approx(30.0)
    assert s.retry_after_s == 30.0


def test_retry_after_ms_wins_over_seconds_and_garbage_is_ignored():
    assert parse_rate_headers({"retry-after": "5", "retry-after-ms": "250"}).retry_after_s == 0.25
    s = parse_rate_headers({"retry-after": "soon", "x-ratelimit-limit-requests": "many"})
    assert s.retry_after_s is None and s.limit_requests is None
    assert parse_rate_headers({}).empty


def test_durations():
    assert parse_duration("6m0s") == 360.0
    assert parse_duration("1h") == 3600.0
    assert parse_duration("15ms") == pytest.approx(0.015)
    assert parse_duration("3x") is None
