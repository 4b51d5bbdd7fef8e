"""A refusal's message, as each provider words it: which limit, its value, when to retry.

Read from the text only, never guessed: a field the provider did not state stays None (the
status and headers are read in :mod:`~promptforge_dagster.core.rate.signals`). Sources, one
per provider:

* OpenAI (rate-limits guide; 429s seen in the wild): ``Rate limit reached for gpt-4o in
  organization org-x on requests per min (RPM): Limit 500, Used 500, Requested 1. Please
  try again in 120ms.``; older ``on tokens_usage_based per min``; ``x-ratelimit-*`` headers.
* Azure OpenAI (Microsoft Learn, quota): ``... have exceeded call rate limit of your
  current ... pricing tier. Please retry after 6 seconds.`` (``token rate limit`` for TPM);
  ``retry-after`` header; newer, ``Rate limit is exceeded. Try again in 2 seconds.``, with
  ``x-ratelimit-limit-requests`` counting 10 s (:mod:`~promptforge_dagster.core.rate.headers`).
* Anthropic (docs, "Rate limits"): ``rate_limit_error``, ``... of 50 requests per minute``
  or ``input tokens per minute`` (ITPM) or ``output tokens per minute`` (OTPM, estimated from
  ``max_tokens`` and adjusted to the answer); in its other wording, which states no value,
  ``Number of request tokens has exceeded your per-minute rate limit`` (the prompt's: ITPM),
  ``Number of output tokens ...``, ``Number of requests ...`` (quoted by SDK users and error
  handbooks, 2024-2026); ``anthropic-ratelimit-*`` and ``retry-after`` headers.
* Gemini / Vertex AI: ``RESOURCE_EXHAUSTED``; Gemini's message may name ``Quota exceeded for
  metric: ..._requests, limit: 15`` and ``Please retry in 39.6s``. Vertex's shared pool says
  neither; a project's own quota on Vertex names its metric, with no value: ``Quota exceeded for
  aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model``
  (or ``online_prediction_requests_per_base_model``, counted per minute: Vertex AI quotas page).
* Azure OpenAI's peak-load throttling, a 429 that is no quota's: "The system is currently
  experiencing high demand and cannot process your request. Your request exceeds the maximum
  usage size allowed during peak load. Please retry after 6 seconds." (Microsoft Q&A, 2026:
  "not caused by your configured RPM/TPM quota"): the provider's ``capacity``.
* The LiteLLM proxy, a gateway in front of any of these, limits its virtual keys itself
  (``proxy/hooks/parallel_request_limiter_v3.py``): "Rate limit exceeded for key: K. Limit
  type: requests. Current limit: 10, Remaining: 0. Limit resets at: ..." (a key's
  ``rpm_limit``, over ``LITELLM_RATE_LIMIT_WINDOW_SIZE``, 60 s by default; its ``tokens`` are
  the tokens used, in none of the bases below, so no value is kept); the older limiter,
  "Crossed TPM / RPM / Max Parallel Request Limit. current rpm: 1, rpm limit: 1, current tpm:
  348, tpm limit: ...", names the one crossed by its counts.
* Amazon Bedrock (AWS re:Post, "Bedrock throttling error"; ``ThrottlingException``, "exceeding the
  account quotas", botocore's reference): "Too many requests, please wait before trying again. You
  have sent too many requests.  Wait before trying again.", "Your request rate is too high. Reduce
  the frequency of requests." (its RPM), "Too many tokens, please wait before trying again." (its
  TPM, reserved at the start as the prompt plus ``max_tokens``: the admission basis); no value, no
  rate headers.
* Mistral (its API's errors and headers, mistralai/client-ts#169): 429 "Requests rate limit
  exceeded" / "Tokens rate limit exceeded" (``rate_limited``, code 1300), with
  ``x-ratelimit-limit-req-minute`` and ``x-ratelimit-*-tokens-minute`` headers
  (:mod:`~promptforge_dagster.core.rate.headers`); "Service tier capacity exceeded for this model."
  (``service_tier_capacity_exceeded``) is its capacity, no quota's.
* Cohere (its docs, "Rate limits"; trial keys): "You are using a Trial key, which is limited to 10
  API calls / minute."; OpenRouter's free models: "Rate limit exceeded: free-models-per-min."
* Self-hosted (vLLM behind a gateway, TGI, Ollama): ``Model is overloaded`` (TGI's 429), ``queue
  is full``, ``too many concurrent requests``, ``maximum pending requests exceeded`` (Ollama's
  503): a concurrency limit, with no per-minute value.
  Gemini's 503 "The model is overloaded. Please try again later." is Google's capacity.

>>> parse_message("Rate limit reached for gpt-4o in organization org-1 on requests per min (RPM): Limit 500, "
...               "Used 500, Requested 1. Please try again in 120ms.")
('requests', 500.0, 0.12, None)
"""

from __future__ import annotations

import re

from promptforge_dagster.core.rate.headers import parse_duration

REQUESTS, TOKENS, CONCURRENCY = "requests", "tokens", "concurrency"
CAPACITY = "capacity"  # the provider's own capacity, not the account's limit: waited out, lowers nothing
# What a token limit counts (its basis), as each provider documents it:
ADMISSION = "admission"  # the prompt plus max_tokens, estimated when the request arrives (OpenAI, Azure OpenAI)
INPUT = "input"  # the prompt's tokens (Anthropic's ITPM; Gemini's input_token_count)
OUTPUT = "output"  # the answer's tokens, reserved as max_tokens and settled to the answer (Anthropic's OTPM)
TOKEN_BASES = (ADMISSION, INPUT, OUTPUT)

_OPENAI = re.compile(r"on (requests|tokens)(?:_usage_based)? per min(?:ute)?(?: \((?:RPM|TPM)\))?:\s*Limit ([\d,]+)",
                     re.I)
_OPENAI_RETRY = re.compile(r"try again in ((?:\d+(?:\.\d+)?(?:ms|h|m|s))+)", re.I)
_AZURE = re.compile(r"exceeded (call|token) rate limit", re.I)
_RETRY_SECONDS = re.compile(r"(?:retry|try again) (?:after|in) (\d+(?:\.\d+)?) ?(ms|milliseconds?|s|sec|seconds?)\b",
                            re.I)
_ANTHROPIC = re.compile(r"rate limit for your organization.*? of ([\d,]+) (requests|input tokens|output tokens|tokens)"
                        r" per minute", re.I | re.S)
# Google's quotas name their metric: Gemini's "Quota exceeded for metric: ..._requests, limit: 15", a Vertex AI
# project's own "Quota exceeded for aiplatform.googleapis.com/..._requests_per_minute_per_project..." (no value;
# a quota that follows the rate, not the shared pool's)
_GOOGLE_QUOTA = re.compile(r"Quota exceeded for (?:metric: )?\S*?(requests|token_count|tokens)(?:\S*?, limit: ([\d,]+))?",
                           re.I)
# Anthropic's wording that names the limit and states no value ("request tokens": the prompt's, ITPM)
_ANTHROPIC_NUMBER = re.compile(r"Number of (requests|request tokens|input tokens|output tokens) has exceeded your",
                               re.I)
_GEMINI_DELAY = re.compile(r'"?retryDelay"?\s*[:=]\s*"(\d+(?:\.\d+)?)s"', re.I)
_SAYS_TOKENS = re.compile(r"tokens?(?:_usage_based)? per min|\(TPM\)|\bTPM\b|tokens-per-min", re.I)
_SAYS_REQUESTS = re.compile(r"requests? per min|\(RPM\)|\bRPM\b|requests-per-min", re.I)
# A refusal asking for a lower rate while naming no limit: OpenAI's ``slow_down`` 429 ("traffic grew too fast,
# even within your RPM and TPM limits": retry at a lower rate), a gateway's "slow down", "rate increased too
# quickly": the request rate is what it refuses, whatever the headers show left
_SLOW_DOWN = re.compile(r"slow[ _-]?down|rate increased too quickly|reduce your (?:request )?rate", re.I)
# The LiteLLM proxy's own key limits, as its limiter words them (now, and in its older limiter)
_LITELLM_PROXY = re.compile(r"Limit type: (requests|tokens|max_parallel_requests)\. Current limit: (\d+)", re.I)
_LITELLM_PROXY_V1 = re.compile(r"current rpm: (\d+), rpm limit: (\d+), current tpm: (\d+), tpm limit: (\d+)", re.I)
# A 429 of the provider's capacity, not the account's limit (Azure OpenAI's peak-load throttling, Mistral's
# service tier at capacity)
_CAPACITY = re.compile(r"experiencing high demand|allowed during peak load|service[ _]tier[ _]capacity[ _]exceeded",
                       re.I)
# Limits named with no value: Bedrock's ThrottlingException (its RPM, or its TPM; "... tokens per day" is a day's,
# stopped by ``outcome.classify``), Mistral's 1300, OpenRouter's free models' minute
_NAMED = re.compile(r"Too many (requests|tokens), please wait|Your (request) rate is too high|"
                    r"\b(Requests|Tokens) rate limit exceeded|Rate limit exceeded: [\w-]*-per-min\b", re.I)
# Cohere's trial keys: "limited to 10 API calls / minute"
_CALLS_PER_MINUTE = re.compile(r"limited to ([\d,]+) API calls? (?:/|per) ?min(?:ute)?", re.I)
# vLLM/TGI and their gateways when the batch queue is full; a bare "overloaded" (Anthropic's 529,
# OpenAI's 503) is the provider's capacity, not this account's concurrency, and is not matched.
# (Ollama's full queue, a 503: "server busy, please try again.  maximum pending requests exceeded", OLLAMA_MAX_QUEUE)
_CONCURRENCY = re.compile(r"queue is full|queue full|too many (?:concurrent|pending|parallel) "
                          r"requests|concurren(?:cy|t) limit|max(?:imum)? concurrent|server is busy|"
                          r"maximum pending requests exceeded", re.I)


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def parse_message(message: str) -> tuple[str | None, float | None, float | None, str | None]:
    """``(limit, per-minute value, retry seconds, token basis)`` from a refusal's message text.
    A token limit's value is kept only with its basis: a count of unknown kind is no cap.

    >>> parse_message("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
    ...               "2024-10-21 have exceeded call rate limit of your current OpenAI S0 pricing tier. "
    ...               "Please retry after 6 seconds.")
    ('requests', None, 6.0, None)
    >>> parse_message("This request would exceed the rate limit for your organization (abc) of 40,000 "
    ...               "input tokens per minute.")
    ('tokens', 40000.0, None, 'input')
    >>> parse_message("Quota exceeded for metric: generativelanguage.googleapis.com/"
    ...               "generate_content_free_tier_requests, limit: 15, model: gemini-2.0-flash. Please retry in 39.6s.")
    ('requests', 15.0, 39.6, None)
    >>> parse_message("Rate limit is exceeded. Try again in 2 seconds.")   # Azure OpenAI's newer wording
    (None, None, 2.0, None)
    >>> parse_message("Number of request tokens has exceeded your per-minute rate limit "
    ...               "(https://docs.anthropic.com/en/api/rate-limits); see the response headers for current usage.")
    ('tokens', None, None, 'input')
    >>> parse_message("Number of requests has exceeded your per-minute rate limit")
    ('requests', None, None, None)
    >>> parse_message("Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute_per_"
    ...               "project_per_base_model with base model: gemini-1.5-pro. Please submit a quota increase request.")
    ('requests', None, None, None)
    >>> parse_message("The system is currently experiencing high demand and cannot process your request. Your "
    ...               "request exceeds the maximum usage size allowed during peak load. Please retry after 6 seconds.")
    ('capacity', None, 6.0, None)
    >>> parse_message("Rate limit exceeded for key: team-a. Limit type: requests. Current limit: 10, Remaining: 0. "
    ...               "Limit resets at: 2026-12-03 10:00:00 UTC")     # the LiteLLM proxy's key limit
    ('requests', 10.0, None, None)
    >>> parse_message("LiteLLM Rate Limit Handler for rate limit type = key. Crossed TPM / RPM / Max Parallel Request "
    ...               "Limit. current rpm: 3, rpm limit: 100, current tpm: 9100, tpm limit: 9000")[0]
    'tokens'
    >>> parse_message("Too many tokens, please wait before trying again.")      # Amazon Bedrock's TPM
    ('tokens', None, None, 'admission')
    >>> parse_message("Your request rate is too high. Reduce the frequency of requests.")[0]     # ... its RPM
    'requests'
    >>> parse_message("Tokens rate limit exceeded")[:2]          # Mistral's, and its capacity:
    ('tokens', None)
    >>> parse_message("Service tier capacity exceeded for this model.")[0]
    'capacity'
    >>> parse_message("You are using a Trial key, which is limited to 10 API calls / minute.")[:2]   # Cohere's
    ('requests', 10.0)
    >>> parse_message("Rate limit exceeded: free-models-per-min.")[0]      # OpenRouter's
    'requests'
    >>> parse_message("the server's queue is full")
    ('concurrency', None, None, None)
    >>> parse_message("Request rate increased too quickly. Please scale requests more smoothly over time.")
    ('requests', None, None, None)
    """
    limit = value = retry = basis = None
    if _CAPACITY.search(message):
        limit = CAPACITY
    elif m := _OPENAI.search(message):
        limit, value = m.group(1).lower(), _number(m.group(2))
        basis = ADMISSION if limit == TOKENS else None
    elif m := _ANTHROPIC.search(message):
        kind = m.group(2).lower()
        limit = REQUESTS if kind == "requests" else TOKENS
        basis = INPUT if kind.startswith("input") else OUTPUT if kind.startswith("output") else None
        value = _number(m.group(1)) if limit == REQUESTS or basis else None
    elif m := _ANTHROPIC_NUMBER.search(message):
        kind = m.group(1).lower()
        limit = REQUESTS if kind == "requests" else TOKENS
        basis = OUTPUT if kind.startswith("output") else INPUT if limit == TOKENS else None
    elif m := _LITELLM_PROXY.search(message):
        kind = m.group(1).lower()
        limit = REQUESTS if kind == "requests" else TOKENS if kind == "tokens" else CONCURRENCY
        value = _number(m.group(2)) if limit == REQUESTS else None
    elif m := _LITELLM_PROXY_V1.search(message):
        rpm, rpm_limit, tpm, tpm_limit = (int(g) for g in m.groups())
        limit = REQUESTS if rpm >= rpm_limit else TOKENS if tpm >= tpm_limit else CONCURRENCY
        value = float(rpm_limit) if limit == REQUESTS else None
    elif m := _GOOGLE_QUOTA.search(message):
        limit = REQUESTS if m.group(1).lower() == "requests" else TOKENS
        basis = INPUT if limit == TOKENS and "input_token" in m.group(0).lower() else None
        value = _number(m.group(2)) if m.group(2) and (limit == REQUESTS or basis) else None
    elif m := _CALLS_PER_MINUTE.search(message):
        limit, value = REQUESTS, _number(m.group(1))
    elif m := _NAMED.search(message):
        limit = TOKENS if "".join(g or "" for g in m.groups()).lower() == "tokens" else REQUESTS
        basis = ADMISSION if limit == TOKENS and m.group(1) else None  # Bedrock reserves the prompt + max_tokens
    elif m := _AZURE.search(message):
        limit = REQUESTS if m.group(1).lower() == "call" else TOKENS
        basis = ADMISSION if limit == TOKENS else None  # Azure estimates from the prompt and max tokens
    elif _CONCURRENCY.search(message):
        limit = CONCURRENCY
    elif bool(_SAYS_TOKENS.search(message)) != bool(_SAYS_REQUESTS.search(message)):  # names one limit, no value
        limit = TOKENS if _SAYS_TOKENS.search(message) else REQUESTS
    elif _SLOW_DOWN.search(message):
        limit = REQUESTS
    if m := _OPENAI_RETRY.search(message):
        retry = parse_duration(m.group(1))
    elif m := _RETRY_SECONDS.search(message):
        retry = float(m.group(1)) / (1000.0 if m.group(2).lower().startswith("m") else 1.0)
    elif m := _GEMINI_DELAY.search(message):
        retry = float(m.group(1))
    return limit, value, retry, basis
