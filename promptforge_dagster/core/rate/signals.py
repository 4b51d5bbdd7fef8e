"""What one answer says about the account's limits: the limit a refusal names, its value,
when to retry, and the rate headers, as one :class:`RateSignal`.

The message is read by :func:`~promptforge_dagster.core.rate.messages.parse_message` (each
provider's wording, with its source), the headers by
:mod:`~promptforge_dagster.core.rate.headers`; here the status decides which apply, and a
message's retry delay goes before the headers' ``retry-after``.

>>> s = parse_signal(429, "Rate limit reached for gpt-4o in organization org-1 on tokens per min (TPM): "
...                  "Limit 30000, Used 29100, Requested 1200. Please try again in 1.2s.", {})
>>> s.limit, s.limit_value, s.retry_after_s
('tokens', 30000.0, 1.2)
>>> parse_signal(429, "", {}).limit is None
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from promptforge_dagster.core.rate.headers import RateSignals, parse_rate_headers
from promptforge_dagster.core.rate.messages import CONCURRENCY, parse_message

# TGI's full queue: 429 "Model is overloaded" (its router's max_concurrent_requests). Only as a 429: Gemini's 503
# "The model is overloaded. Please try again later." (status UNAVAILABLE) is Google's capacity, and read as a
# concurrency limit it shrank the lane's in-flight bound at every 503
_TGI_FULL = re.compile(r"model is overloaded", re.I)
# Vertex AI's pay-as-you-go 429, its shared pool's ("Resource exhausted, please try again later": its docs, "Error
# code 429"); a project's own quota names its metric ("Quota exceeded for aiplatform.googleapis.com/...")
_POOLED = re.compile(r"resource exhausted[.,]? please try again later", re.I)


@dataclass(frozen=True, slots=True)
class RateSignal:
    """One answer's rate information: ``limit`` it names (requests, tokens, concurrency or
    None), that limit's per-minute value when stated (a token limit's in its ``token_basis``),
    the retry delay when stated, and the parsed headers.

    >>> RateSignal().says_nothing
    True
    """

    limit: str | None = None
    limit_value: float | None = None
    retry_after_s: float | None = None
    headers: RateSignals = field(default_factory=RateSignals)
    token_basis: str | None = None  # what the token limit named counts (``TOKEN_BASES``), when the message says
    pooled: bool = False  # worded as a shared pool's refusal (Vertex AI's pay-as-you-go): maybe no limit's

    @property
    def says_nothing(self) -> bool:
        return self.limit is None and self.retry_after_s is None and self.headers.empty


def parse_signal(status: int | None, message: str | None, headers: Mapping[str, str],
                 now_epoch: float | None = None) -> RateSignal:
    """Everything one answer says about the account's limits (any status; success answers
    carry headers only).

    >>> parse_signal(429, "", {"retry-after": "2", "anthropic-ratelimit-requests-limit": "50"}).retry_after_s
    2.0
    >>> parse_signal(503, "Service Unavailable: the server's queue is full", {}).limit
    'concurrency'
    >>> parse_signal(529, "Overloaded", {}).limit is None
    True
    >>> parse_signal(429, "Model is overloaded", {}).limit      # TGI's full queue
    'concurrency'
    >>> parse_signal(503, "server busy, please try again.  maximum pending requests exceeded", {}).limit  # Ollama's
    'concurrency'
    >>> parse_signal(503, "The model is overloaded. Please try again later.", {}).limit is None   # Gemini's capacity
    True
    >>> parse_signal(429, "Resource exhausted, please try again later.", {}).pooled   # Vertex AI's shared pool
    True
    >>> parse_signal(429, "Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute_per_"
    ...              "project_per_base_model with base model: gemini-1.5-pro.", {}).pooled   # a project's own quota
    False
    """
    parsed = parse_rate_headers(headers, now_epoch) if headers else RateSignals()
    limit = value = retry = basis = None
    if status is not None and status >= 400 and message:
        limit, value, retry, basis = parse_message(message)
        if limit is None and status == 429 and _TGI_FULL.search(message):
            limit = CONCURRENCY
    if retry is None:
        retry = parsed.retry_after_s
    pooled = bool(status == 429 and message and limit is None and _POOLED.search(message))
    return RateSignal(limit, value, retry, parsed, basis, pooled)
