"""Provider outcomes: what happened to one request, classified for retry and pacing.

The provider adapter turns an HTTP answer or an exception into an :class:`Outcome`;
:func:`classify` decides the kind from the status code and the error text alone, so
the policy is the same whatever client library produced it.

>>> classify(429, "Rate limit reached for requests").name
'RATE_LIMITED'
>>> classify(429, "You exceeded your current quota, please check your plan").name
'FATAL'
>>> classify(503, "overloaded").name
'OVERLOADED'
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from promptforge_dagster.core.rate.signals import parse_signal


class OutcomeKind(enum.Enum):
    """How the pipeline treats an outcome."""

    SUCCESS = "success"
    RATE_LIMITED = "rate_limited"  # 429: retry after pacing down
    OVERLOADED = "overloaded"  # 503/529/"overloaded": back off, not an account ceiling
    TRANSIENT = "transient"  # 5xx, timeout, connection error: retry with backoff
    PERMANENT = "permanent"  # 400-class: record, never retry
    FATAL = "fatal"  # 401/403, quota exhausted: stop the job


# (Anthropic's spend limit, a 400: "You have reached your specified API usage limits. You will regain access on
# 2026-08-01 at 00:00 UTC.", or "... specified workspace API usage limits"; the LiteLLM proxy's on a key, team or
# user: "Budget has been exceeded! Key=... Current cost: 10.2, Max budget: 10.0", or "ExceededBudget: ...",
# answered 422 by recent proxies and 429 by older ones)
_QUOTA = re.compile(r"insufficient[_ ]quota|exceeded your current quota|billing|credit balance|budget has been "
                    r"exceeded|ExceededBudget|reached your specified (?:workspace )?API usage limits", re.I)
# Gemini words its per-minute refusals as quota ("You exceeded your current quota ... Quota exceeded
# for metric: ..., limit: 15 ... Please retry in 39.6s"): a refusal that says when to retry passes with time.
_PASSES = re.compile(r"retry in|retry after|try again in|quota exceeded for metric|per minute|rate limit", re.I)
_OVERLOAD = re.compile(r"overload", re.I)
# the provider short of capacity: 503, Anthropic's 529 overloaded_error, Groq's 498 capacity_exceeded (its flex
# tier at capacity: "Add jittered backoff and retries", Groq docs, "Flex Processing")
CAPACITY_STATUSES = (498, 503, 529)
# Refusals that do not pass within a job: a daily limit spent (OpenAI: "on requests per day (RPD)";
# Gemini's quota violations name ``GenerateRequestsPerDayPerProjectPerModel``), or a limit of zero
# (Gemini: "limit: 0", a model outside the account's tier). The job stops; a rerun resumes.
# (a metric's "_per_day_per_project" too, and OpenRouter's free models' "Rate limit exceeded: free-models-per-day")
_DAILY = re.compile(r"per[ _-]?day(?![a-z])|PerDay|\((?:RPD|TPD)\)", re.I)
_ZERO_LIMIT = re.compile(r"\blimit:? 0\b(?![.,]\d)", re.I)
# ... or a month's: Cohere's trial keys ("limited to 1,000 API calls a month", its docs), Mistral's monthly token
# limit ("Monthly token limit exceeded", or its per-minute words with ``x-ratelimit-remaining-tokens-month: 0``)
_MONTHLY = re.compile(r"monthly (?:token |request |usage |spend(?:ing)? )?(?:limit|quota)|"
                      r"(?:calls?|requests?|tokens?) (?:per|/|a) ?month\b", re.I)
_MONTH_LEFT = ("x-ratelimit-remaining-tokens-month", "x-ratelimit-remaining-req-month",
               "x-ratelimit-remaining-requests-month")
# A request larger than the limit itself (OpenAI: 429 "Request too large for gpt-4o in organization org-x on tokens
# per min (TPM): Limit 30000, Requested 45000. The input or output tokens must be reduced in order to run
# successfully."): no wait admits it, so it is that line's error, not a refusal to retry (retried, each attempt was
# refused again, and counted against the lane's token rate)
_TOO_LARGE = re.compile(r"Request too large|Limit ([\d,]+), Requested ([\d,]+)", re.I)
# Nor does a refusal that asks for a wait no per-minute limit asks for: Azure OpenAI's free tier answers "have exceeded
# token rate limit of your current AIServices S0 pricing tier. Please retry after 86400 seconds." (and retry-after:
# 86400); waited out, every line would sleep a day, the job silent
LONG_RETRY_S = 3600.0


@dataclass(slots=True)
class Outcome:
    """One request's result as the pipeline sees it.

    ``body`` is the provider's JSON answer on success (an OpenAI chat.completion) or an
    error body; ``headers`` holds the provider's response headers, lower-cased.

    >>> Outcome(OutcomeKind.SUCCESS, 200, tokens_in=10, tokens_out=5).tokens
    15
    """

    kind: OutcomeKind
    status_code: int
    body: dict[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float | None = None
    request_id: str | None = None
    error_type: str | None = None
    message: str | None = None

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


def classify(status_code: int | None, message: str = "", error_type: str | None = None,
             headers: Mapping[str, str] | None = None) -> OutcomeKind:
    """Classify a non-success answer by status code, error text and (a month's quota) headers.

    ``status_code`` None means no HTTP answer (timeout, connection reset): transient.

    >>> [classify(s).name for s in (None, 400, 401, 404, 408, 500, 529)]
    ['TRANSIENT', 'PERMANENT', 'FATAL', 'PERMANENT', 'TRANSIENT', 'TRANSIENT', 'OVERLOADED']
    >>> classify(429, "Tokens rate limit exceeded", headers={"x-ratelimit-remaining-tokens-month": "0"}).name
    'FATAL'
    >>> classify(429, "... have exceeded token rate limit of your current AIServices S0 pricing tier. Please retry "
    ...          "after 86400 seconds.").name, classify(429, "", headers={"retry-after": "86400"}).name
    ('FATAL', 'FATAL')
    """
    text = f"{error_type or ''} {message or ''}"
    if status_code is None:
        return OutcomeKind.TRANSIENT
    if 200 <= status_code < 300:
        return OutcomeKind.SUCCESS
    if status_code == 429:
        if _too_large(text):
            return OutcomeKind.PERMANENT
        if _DAILY.search(text) or _ZERO_LIMIT.search(text) or _month_spent(text, headers) or (
                _QUOTA.search(text) and not _PASSES.search(text)) or _asks_hours(message, headers):
            return OutcomeKind.FATAL
        return OutcomeKind.RATE_LIMITED
    if status_code in (401, 403):
        return OutcomeKind.FATAL
    if status_code == 402 or _QUOTA.search(text):
        return OutcomeKind.FATAL
    if status_code in CAPACITY_STATUSES or _OVERLOAD.search(text):
        return OutcomeKind.OVERLOADED
    if status_code in (408, 409, 425) or status_code >= 500:
        return OutcomeKind.TRANSIENT
    return OutcomeKind.PERMANENT


def _month_spent(text: str, headers: Mapping[str, str] | None) -> bool:
    """Whether a 429 is a month's limit spent: its words say so, or its headers leave none."""
    if _MONTHLY.search(text):
        return True
    lower = {k.lower().removeprefix("llm_provider-"): str(v).strip() for k, v in (headers or {}).items()}
    return any(lower.get(name) == "0" for name in _MONTH_LEFT)


def _too_large(text: str) -> bool:
    """Whether a 429 says the request alone is over the limit (:data:`_TOO_LARGE`)."""
    m = _TOO_LARGE.search(text)
    if m is None:
        return False
    if m.group(1) is None:  # "Request too large"
        return True
    return float(m.group(2).replace(",", "")) > float(m.group(1).replace(",", ""))


def _asks_hours(message: str, headers: Mapping[str, str] | None) -> bool:
    """Whether a 429 asks for a wait longer than :data:`LONG_RETRY_S` (its words or its
    ``retry-after``)."""
    wait = parse_signal(429, message, headers or {}).retry_after_s
    return wait is not None and wait > LONG_RETRY_S


def stop_reason(outcome: Outcome) -> str:
    """The line a job stopped by ``outcome`` (a fatal answer) reports: the provider's words,
    with what they mean when the limit is a daily or a zero one.

    >>> stop_reason(Outcome(OutcomeKind.FATAL, 429, message="Rate limit reached for gpt-4o-mini on requests "
    ...                     "per day (RPD): Limit 200, Used 200, Requested 1. Please try again in 7m12s."))[:49]
    "the provider's daily limit is spent: Rate limit r"
    """
    text = outcome.message or f"HTTP {outcome.status_code}"
    if outcome.status_code == 429 and _DAILY.search(text):
        return f"the provider's daily limit is spent: {text}"
    if outcome.status_code == 429 and _month_spent(text, outcome.headers):
        return f"the provider's monthly limit is spent: {text}"
    if outcome.status_code == 429 and _asks_hours(text, outcome.headers):
        wait = parse_signal(429, text, outcome.headers).retry_after_s or 0.0
        return f"the provider asks to retry after {wait / 3600:.3g} h, a limit no job waits out: {text}"
    if outcome.status_code == 429 and _ZERO_LIMIT.search(text):
        return f"the account's limit for this model is 0: {text}"
    return text


_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|\n\s+File \"")
_CLIENT_PREFIX = re.compile(r"^\s*(?:litellm\.\w+:\s*|\w*(?:Error|Exception)(?::\s*|\s+-\s+))")
_LOCAL_PATH = re.compile(r"(?<![\w:/.~-])(?:[A-Za-z]:)?(?:/[\w.@+-]+){2,}/?")
MAX_MESSAGE_CHARS = 500  # a provider's error message, whole; longer is a dump, not a message


def public_message(text: str) -> str:
    """What a result line may say about a failure: the provider's own words, without the
    client library's traceback, class-name prefixes or local file paths.

    >>> public_message('litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached')
    'Rate limit reached'
    >>> public_message('Connection error.\\nTraceback (most recent call last):\\n  File "/app/x.py", line 3')
    'Connection error.'
    >>> public_message('cannot open /home/ci/.venv/lib/litellm/main.py; see https://x.ai/docs/limits')
    'cannot open <path>; see https://x.ai/docs/limits'
    """
    match = _TRACEBACK.search(text)
    if match:
        text = text[:match.start()]
    text = " ".join(text.split())
    previous = None
    while previous != text:
        previous, text = text, _CLIENT_PREFIX.sub("", text, count=1)
    text = _LOCAL_PATH.sub("<path>", text).strip()
    return text[:MAX_MESSAGE_CHARS] or "no message"


def usage_tokens(usage: Any) -> tuple[int, int]:
    """(input, output) tokens of an answer's ``usage``, whichever endpoint's shape it has:
    chat (``prompt_tokens``/``completion_tokens``), embeddings (``prompt_tokens`` only),
    responses (``input_tokens``/``output_tokens``).

    >>> usage_tokens({"prompt_tokens": 5, "completion_tokens": 3}), usage_tokens({"input_tokens": 7, "output_tokens": 2})
    ((5, 3), (7, 2))
    >>> usage_tokens({"prompt_tokens": 4, "total_tokens": 4}), usage_tokens(None)
    ((4, 0), (0, 0))
    """
    if not isinstance(usage, dict):
        return 0, 0

    def count(*names: str) -> int:
        for name in names:
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return 0

    return count("prompt_tokens", "input_tokens"), count("completion_tokens", "output_tokens")
