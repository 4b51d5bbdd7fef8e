"""How each provider answers a refusal: status, body and headers, as their docs and SDKs show.

Shared by the HTTP simulator and the fake-clock model, so both speak like real providers.
Sources: OpenAI rate-limits guide and 429s users posted; Microsoft Learn "Azure OpenAI
quotas and limits" and Q&A answers; Anthropic docs "Rate limits" and "Errors"; Google
"Gemini API rate limits" and Vertex AI "Error code 429" (a project's own quota names its
metric: "Quota exceeded for aiplatform.googleapis.com/...", cocoindex-io/cocoindex#1151);
Groq docs "Rate Limits" (an OpenAI-compatible API whose ``x-ratelimit-limit-requests`` is
requests per *day*); AWS re:Post "Bedrock throttling error"; Mistral's API answers
(mistralai/client-ts#169); vLLM/TGI router and server code (a full queue answers 429 "Model
is overloaded" or 503).

>>> from promptforge_dagster.simulator.account import Admission
>>> status, body, headers = refusal("openai", Admission(False, "requests", 0.12, {}, 500.0, 500.0))
>>> status, body["error"]["message"][-60:]
(429, 'Limit 500, Used 500, Requested 1. Please try again in 120ms.')
>>> refusal("bare", Admission(False, "requests", 1.0))
(429, None, {})
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

STYLES = ("openai", "azure", "anthropic", "gemini", "vertex", "vertex-quota", "vllm", "groq", "bedrock", "mistral",
          "bare")
VERTEX_QUOTA_METRICS = {"requests": "generate_content_requests_per_minute_per_project_per_base_model",
                        "tokens": "generate_content_input_tokens_per_minute_per_base_model"}


POOL_MESSAGE = "Resource exhausted, please try again later."
AZURE_PEAK_MESSAGE = ("The system is currently experiencing high demand and cannot process your request. Your request "
                      "exceeds the maximum usage size allowed during peak load. Please retry after 6 seconds. For "
                      "improved latency reliability, consider switching to Provisioned Throughput.")  # Microsoft Q&A
BEDROCK_MESSAGES = {"requests": "Too many requests, please wait before trying again. You have sent too many requests."
                                "  Wait before trying again.",
                    "tokens": "Too many tokens, please wait before trying again."}
GROQ_DAILY_REQUESTS = 14_400  # the requests per day in Groq's docs' header example (x-ratelimit-limit-requests)
DAY_S = 86_400.0
AZURE_COUNT_S = 10.0  # Azure OpenAI's x-ratelimit-*-requests count 10 s: a 48 RPM deployment (8,000 TPM) answered
# "x-ratelimit-limit-requests: 8", "x-ratelimit-limit-tokens: 8000" (microsoft/copilot-camp#551, 2025); a 300 RPM
# one showed 50 remaining before its first request (Microsoft Q&A 2156987); its TPM headers count a minute


def _ms(seconds: float) -> str:
    return f"{max(1, int(seconds * 1000))}ms" if seconds < 1 else f"{seconds:.3f}s"


def refusal(style: str, adm: Any, *, model: str = "sim-model", now_epoch: float = 0.0,
            headers: bool = True, tokens_basis: str = "admission",
            requests_today: int = 0) -> tuple[int, dict | None, dict[str, str]]:
    """``(status, JSON body or None, headers)`` of a refused request in ``style``.

    ``headers`` False leaves out every rate-limit header (``retry-after`` included);
    ``tokens_basis`` is what the account's TPM limit counts (``account.TOKEN_BASES``), which
    Anthropic names in its message and headers; ``requests_today`` what Groq's daily count
    has counted."""
    kind = adm.limit or "requests"
    limit = int(adm.limit_value) if adm.limit_value else None
    used = int(adm.used) if adm.used is not None else limit
    retry = max(0.001, adm.retry_after_s)
    h = dict(adm.headers) if headers else {}
    if kind == "too_large":  # OpenAI's words (a 429); the other styles word it as their token limit's refusal
        if style in ("openai", "groq"):
            message = (f"Request too large for {model} in organization org-sim on tokens per min (TPM): Limit {limit}, "
                       f"Requested {used}. The input or output tokens must be reduced in order to run successfully.")
            return 429, {"error": {"message": message, "type": "tokens", "param": None,
                                   "code": "rate_limit_exceeded"}}, {}
        kind, used = "tokens", limit
    if kind == "pool" and style == "azure":  # a busy region, in Azure OpenAI's words (its peak-load throttling)
        return 429, {"error": {"code": "429", "message": AZURE_PEAK_MESSAGE}}, {"retry-after": "6"} if headers else {}
    if kind == "pool":  # a busy shared pool, in Vertex AI's words (its docs, "Error code 429"): any other style
        return 429, {"error": {"code": 429, "message": POOL_MESSAGE, "status": "RESOURCE_EXHAUSTED"}}, {}
    if kind == "concurrency":
        if style == "vllm":
            return 503, {"error": {"message": "Service Unavailable: the server's queue is full", "type": "server_error",
                                   "code": 503}}, {}
        return 429, {"error": "Model is overloaded", "error_type": "overloaded"}, {}
    if style == "openai":
        unit = "RPM" if kind == "requests" else "TPM"
        requested = 1 if kind == "requests" else "?"
        message = (f"Rate limit reached for {model} in organization org-sim on {kind} per min ({unit}): "
                   f"Limit {limit}, Used {used}, Requested {requested}. Please try again in {_ms(retry)}.")
        if headers:
            h["retry-after-ms"] = str(max(1, int(math.ceil(retry * 1000))))
        return 429, {"error": {"message": message, "type": kind, "param": None, "code": "rate_limit_exceeded"}}, h
    if style == "azure":
        seconds = max(1, int(math.ceil(retry)))
        what = "call rate limit" if kind == "requests" else "token rate limit"
        message = (f"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 "
                   f"have exceeded {what} of your current OpenAI S0 pricing tier. Please retry after {seconds} "
                   "seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further "
                   "increase the default rate limit.")
        az = {}
        if headers:
            az = azure_headers(h)
            az["retry-after"] = str(seconds)
        return 429, {"error": {"code": "429", "message": message}}, az
    if style == "anthropic":
        unit = "requests" if kind == "requests" else _ANTHROPIC_TOKENS[tokens_basis].replace("-", " ")
        message = (f"This request would exceed the rate limit for your organization (sim-org) of {limit:,} {unit} "
                   "per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see "
                   "the response headers for current usage. Please reduce the prompt length or the maximum "
                   "tokens requested, or try again later.")
        ah: dict[str, str] = {}
        if headers:
            ah = anthropic_headers(adm.headers, now_epoch, tokens_basis)
            ah["retry-after"] = str(max(1, int(math.ceil(retry))))
        return 429, {"type": "error", "error": {"type": "rate_limit_error", "message": message}}, ah
    if style == "groq":  # OpenAI's words, a minute's limit named; headers of the day's requests
        unit = "RPM" if kind == "requests" else "TPM"
        requested = 1 if kind == "requests" else "?"
        message = (f"Rate limit reached for model `{model}` in organization `org_sim` service tier `on_demand` on "
                   f"{kind} per minute ({unit}): Limit {limit}, Used {used}, Requested {requested}. Please try "
                   f"again in {go_duration(retry)}. Need more tokens? Upgrade to Dev Tier today at "
                   "https://console.groq.com/settings/billing")
        gh: dict[str, str] = {}
        if headers:
            gh = {**groq_headers(h, requests_today), "retry-after": str(max(1, int(math.ceil(retry))))}
        return 429, {"error": {"message": message, "type": kind, "code": "rate_limit_exceeded"}}, gh
    if style == "gemini":
        metric = "generate_content_paid_tier_requests" if kind == "requests" else "generate_content_input_token_count"
        message = ("You exceeded your current quota, please check your plan and billing details. For more "
                   "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n"
                   f"* Quota exceeded for metric: generativelanguage.googleapis.com/{metric}, limit: {limit}, "
                   f"model: {model}\nPlease retry in {retry:.1f}s.")
        return 429, {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED"}}, {}
    if style == "vertex":
        return 429, {"error": {"code": 429, "message": "Resource exhausted. Please try again later. Please refer to "
                               "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
                               "status": "RESOURCE_EXHAUSTED"}}, {}
    if style == "vertex-quota":  # a project's own quota (Vertex AI's quota framework) names its metric (a 429 users
        # posted: cocoindex-io/cocoindex#1151); its shared pool's refusals keep the pay-as-you-go words (above)
        message = (f"Quota exceeded for aiplatform.googleapis.com/{VERTEX_QUOTA_METRICS[kind]} with base model: "
                   f"{model}. Please submit a quota increase request. "
                   "https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai.")
        return 429, {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED"}}, {}
    if style == "bedrock":  # its ThrottlingException (AWS re:Post, "Bedrock throttling error"): no value, no headers
        return 429, {"message": BEDROCK_MESSAGES[kind]}, {}
    if style == "mistral":  # its 1300, the limit named, no value; a minute's counts in its headers
        message = "Requests rate limit exceeded" if kind == "requests" else "Tokens rate limit exceeded"
        return 429, {"object": "error", "message": message, "type": "rate_limited", "param": None,
                     "code": "1300"}, mistral_headers(h) if headers else {}
    if style == "bare":
        return 429, None, {}
    raise ValueError(f"unknown provider style {style!r} (one of {', '.join(STYLES)})")


# Anthropic's names for a token limit by what it counts: input tokens (ITPM), output tokens (OTPM);
# ``anthropic-ratelimit-tokens-*`` carries "the most restrictive limit currently in effect".
_ANTHROPIC_TOKENS = {"input": "input-tokens", "output": "output-tokens", "admission": "tokens"}


def anthropic_headers(openai_style: dict[str, str], now_epoch: float, tokens_basis: str = "input") -> dict[str, str]:
    """The account's state as Anthropic reports it: ``anthropic-ratelimit-*`` with RFC 3339
    resets; a token limit under its own name (input or output tokens) and as ``tokens``, the
    most restrictive one.

    >>> sorted(anthropic_headers({"x-ratelimit-limit-tokens": "8000"}, 0.0, "output"))[:2]
    ['anthropic-ratelimit-output-tokens-limit', 'anthropic-ratelimit-output-tokens-remaining']
    """
    out: dict[str, str] = {}
    token_names = {_ANTHROPIC_TOKENS[tokens_basis], "tokens"}
    for kind, names in (("requests", {"requests"}), ("tokens", token_names)):
        if f"x-ratelimit-limit-{kind}" not in openai_style:
            continue
        reset = _seconds(openai_style.get(f"x-ratelimit-reset-{kind}", "0s"))
        when = (datetime.fromtimestamp(now_epoch, timezone.utc) + timedelta(seconds=reset)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for name in sorted(names):
            prefix = f"anthropic-ratelimit-{name}"
            out[f"{prefix}-limit"] = openai_style[f"x-ratelimit-limit-{kind}"]
            out[f"{prefix}-remaining"] = openai_style.get(f"x-ratelimit-remaining-{kind}", "0")
            out[f"{prefix}-reset"] = when
    return out


def go_duration(seconds: float) -> str:
    """A duration as Go prints it, as Groq's headers and messages do.

    >>> go_duration(179.56), go_duration(7.66), go_duration(0.25), go_duration(3723.0)
    ('2m59.56s', '7.66s', '250ms', '1h2m3s')
    """
    if seconds < 1.0:
        return f"{max(1, round(seconds * 1000))}ms"
    hours, rest = divmod(seconds, 3600.0)
    minutes, secs = divmod(rest, 60.0)
    text = f"{secs:.2f}".rstrip("0").rstrip(".") + "s"
    if minutes or hours:
        text = f"{int(minutes)}m" + text
    return (f"{int(hours)}h" + text) if hours else text


def groq_headers(openai_style: dict[str, str], requests_today: int) -> dict[str, str]:
    """Groq's ``x-ratelimit-*`` (its docs, "Rate Limits", the headers table): the tokens'
    are per minute (TPM); ``x-ratelimit-limit-requests`` is the requests per *day* (RPD), its
    remaining and reset of the day's count (reset: until it is full again, as "2m59.56s").

    >>> groq_headers({"x-ratelimit-limit-requests": "30", "x-ratelimit-limit-tokens": "6000"}, 30)
    {'x-ratelimit-limit-tokens': '6000', 'x-ratelimit-limit-requests': '14400', 'x-ratelimit-remaining-requests': '14370', 'x-ratelimit-reset-requests': '3m0s'}
    """
    out = {k: v for k, v in openai_style.items() if k.endswith("-tokens")}
    used = min(GROQ_DAILY_REQUESTS, requests_today)
    out["x-ratelimit-limit-requests"] = str(GROQ_DAILY_REQUESTS)
    out["x-ratelimit-remaining-requests"] = str(GROQ_DAILY_REQUESTS - used)
    out["x-ratelimit-reset-requests"] = go_duration(used * DAY_S / GROQ_DAILY_REQUESTS)
    return out


def success_headers(style: str, openai_style: dict[str, str], now_epoch: float,
                    tokens_basis: str = "admission", requests_today: int = 0) -> dict[str, str]:
    """Rate headers on a successful answer: OpenAI's and Azure's ``x-ratelimit-*``,
    Anthropic's ``anthropic-ratelimit-*``, Groq's (requests per day), Mistral's (a minute's);
    Gemini, Vertex, Bedrock, vLLM and bare send none."""
    if style in ("openai",):
        return dict(openai_style)
    if style == "groq":
        return groq_headers(openai_style, requests_today)
    if style == "azure":
        return azure_headers(openai_style)
    if style == "anthropic":
        return anthropic_headers(openai_style, now_epoch, tokens_basis)
    if style == "mistral":
        return mistral_headers(openai_style)
    return {}


def mistral_headers(openai_style: dict[str, str]) -> dict[str, str]:
    """Mistral's rate headers (mistralai/client-ts#169): a minute's request and token counts,
    the minute in their names, no resets.

    >>> mistral_headers({"x-ratelimit-limit-requests": "720", "x-ratelimit-remaining-requests": "717",
    ...                  "x-ratelimit-reset-requests": "1s"})
    {'x-ratelimit-limit-req-minute': '720', 'x-ratelimit-remaining-req-minute': '717'}
    """
    names = {f"x-ratelimit-{field}-{kind}": f"x-ratelimit-{field}-{short}-minute"
             for field in ("limit", "remaining") for kind, short in (("requests", "req"), ("tokens", "tokens"))}
    return {names[k]: v for k, v in openai_style.items() if k in names}


def azure_headers(openai_style: dict[str, str]) -> dict[str, str]:
    """Azure OpenAI's rate headers from the account's per-minute ones: the token limit and
    what is left of it per minute; the request limit per :data:`AZURE_COUNT_S` and, as an
    approximation (the account keeps no 10-s count), a sixth of what is left of the minute's;
    no resets.

    >>> azure_headers({"x-ratelimit-limit-requests": "48", "x-ratelimit-remaining-requests": "47",
    ...                "x-ratelimit-reset-requests": "1s", "x-ratelimit-limit-tokens": "8000"})
    {'x-ratelimit-limit-tokens': '8000', 'x-ratelimit-limit-requests': '8', 'x-ratelimit-remaining-requests': '7'}
    """
    share = AZURE_COUNT_S / 60.0
    out = {k: v for k, v in openai_style.items() if k in ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens")}
    if (limit := openai_style.get("x-ratelimit-limit-requests")) is not None:
        out["x-ratelimit-limit-requests"] = str(max(1, round(int(limit) * share)))
    if (left := openai_style.get("x-ratelimit-remaining-requests")) is not None:
        out["x-ratelimit-remaining-requests"] = str(int(int(left) * share))
    return out


def _seconds(text: str) -> float:
    from promptforge_dagster.core.rate.headers import parse_duration

    return parse_duration(text) or 0.0


def message_of(body: dict | None) -> str:
    """The text a client library surfaces from an error body (``error.message``, or the raw
    ``error`` string), as LiteLLM and the SDKs do."""
    if not body:
        return ""
    err = body.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or "")
    return str(err or body.get("message") or "")  # (Bedrock's and Mistral's: the message at the top)
