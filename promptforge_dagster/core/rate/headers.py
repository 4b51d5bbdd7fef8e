"""Rate-limit signals read from provider response headers.

OpenAI style (``x-ratelimit-limit-requests``, ``-remaining-*``, ``-reset-*`` with
durations like ``6m0s``), Anthropic style (``anthropic-ratelimit-requests-limit``,
``...-reset`` as an RFC 3339 time), Mistral's (``x-ratelimit-limit-req-minute``) and
``retry-after`` / ``retry-after-ms``. Every
field is optional: a provider that sends no headers yields an empty
:class:`RateSignals`.

>>> s = parse_rate_headers({"retry-after-ms": "1500", "x-ratelimit-limit-requests": "600",
...                         "x-ratelimit-reset-tokens": "6m0s"})
>>> s.retry_after_s, s.limit_requests, s.reset_tokens_s
(1.5, 600, 360.0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Mapping

from promptforge_dagster.core.rate.window import MINUTE_S

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
PER_MINUTE_MAX_S = 120.0  # a stated request count whose reset implies a longer period is no per-minute limit
RESET_GRAIN_S = 1.0  # a reset may read this much long (Anthropic's are times to the second)


@dataclass(frozen=True, slots=True)
class RateSignals:
    """What headers said about the account's limits; None where they said nothing."""

    retry_after_s: float | None = None
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None  # prompt + max_tokens at admission (OpenAI's x-ratelimit-limit-tokens)
    remaining_tokens: int | None = None  # of the most restrictive token limit
    reset_tokens_s: float | None = None
    limit_input_tokens: int | None = None  # Anthropic's ITPM
    limit_output_tokens: int | None = None  # Anthropic's OTPM
    resets_read_at_receipt: bool = False  # True: the resets were times of day (Anthropic's), read when the
    # answer came; else durations from when the provider admitted the request (OpenAI's), up to an answer's time earlier
    requests_unreset: bool = False  # True: ``x-ratelimit-limit-requests`` came with no reset, so its period is not
    # known: Azure OpenAI's counts 10 s (8 for a 48 RPM deployment), OpenAI always sends its reset (and LiteLLM's
    # copy of Anthropic's per-minute count, beside the original, is Anthropic's)

    @property
    def requests_per_minute(self) -> int | None:
        """``limit_requests`` when it counts per minute. A per-minute count used ``u`` of
        ``limit`` is full again within ``u / limit`` of a minute; a reset much longer says the
        count is of a longer period (Groq's ``x-ratelimit-limit-requests`` is the requests per
        *day*, reset ``u x 86,400 / limit`` s), and it is no per-minute limit.

        >>> RateSignals(limit_requests=60, remaining_requests=59, reset_requests_s=1.0).requests_per_minute
        60
        >>> RateSignals(limit_requests=14400, remaining_requests=14370, reset_requests_s=179.56).requests_per_minute
        >>> RateSignals(limit_requests=14400, remaining_requests=14399, reset_requests_s=6.0).requests_per_minute

        A count with no reset at all is of no known period either (Azure OpenAI's is of 10 s:
        ``x-ratelimit-limit-requests: 8`` beside ``x-ratelimit-limit-tokens: 8000``, the
        TPM of a deployment allowed 48 RPM); Anthropic's is per minute, as its docs say:

        >>> parse_rate_headers({"x-ratelimit-limit-requests": "8", "x-ratelimit-remaining-requests": "7",
        ...                     "x-ratelimit-limit-tokens": "8000"}).requests_per_minute
        >>> parse_rate_headers({"anthropic-ratelimit-requests-limit": "50"}).requests_per_minute
        50
        >>> parse_rate_headers({"llm_provider-anthropic-ratelimit-requests-limit": "50",   # ... copied by LiteLLM
        ...                     "x-ratelimit-limit-requests": "50"}).requests_per_minute
        50
        """
        limit, reset = self.limit_requests, self.reset_requests_s
        if self.requests_unreset:
            return None
        if limit is None or reset is None:
            return limit
        if self.remaining_requests is None:
            return limit if reset <= MINUTE_S + RESET_GRAIN_S else None
        used = max(1, limit - self.remaining_requests)
        return limit if max(0.0, reset - RESET_GRAIN_S) * limit / used <= PER_MINUTE_MAX_S else None

    @property
    def empty(self) -> bool:
        return all(getattr(self, f) is None for f in self.__slots__
                   if f not in ("resets_read_at_receipt", "requests_unreset"))


def parse_duration(text: str) -> float | None:
    """Parse ``1s``, ``20ms``, ``6m0s``, ``1h2m3.5s`` or a bare number of seconds.

    >>> parse_duration("1h2m3.5s"), parse_duration("20ms"), parse_duration("7"), parse_duration("x")
    (3723.5, 0.02, 7.0, None)
    """
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def _seconds_until(stamp: str, now_epoch: float | None) -> float | None:
    if now_epoch is None:
        return None
    try:
        when = datetime.fromisoformat(stamp.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, when.timestamp() - now_epoch)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


# Mistral's names, a minute's count stated in the name (mistralai/client-ts#169: "x-ratelimit-limit-req-minute: 720",
# "x-ratelimit-remaining-tokens-minute"); its token limit counts the prompt and the answer, in none of the bases
# the engine keeps, so only what is left of it is read
_MISTRAL = {"requests": "req", "tokens": "tokens"}


def parse_rate_headers(headers: Mapping[str, str], now_epoch: float | None = None) -> RateSignals:
    """Read rate-limit headers (keys any case; LiteLLM's ``llm_provider-`` prefix allowed).

    ``now_epoch`` (wall-clock seconds) turns Anthropic's reset timestamps into durations.

    >>> parse_rate_headers({"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-tokens-limit": "8000",
    ...                     "anthropic-ratelimit-tokens-remaining": "0", "retry-after": "3"})
    RateSignals(retry_after_s=3.0, limit_requests=50, remaining_requests=None, reset_requests_s=None, limit_tokens=None, remaining_tokens=0, reset_tokens_s=None, limit_input_tokens=None, limit_output_tokens=None, resets_read_at_receipt=False, requests_unreset=False)
    >>> m = parse_rate_headers({"x-ratelimit-limit-req-minute": "720", "x-ratelimit-remaining-req-minute": "717",
    ...                         "x-ratelimit-limit-tokens-minute": "5000000",
    ...                         "x-ratelimit-remaining-tokens-minute": "4999911"})
    >>> m.requests_per_minute, m.remaining_requests, m.limit_tokens, m.remaining_tokens    # Mistral's
    (720, 717, None, 4999911)
    """
    h: dict[str, str] = {}
    for k, v in headers.items():
        key = k.lower()
        if key.startswith("llm_provider-"):
            key = key[len("llm_provider-"):]
        h.setdefault(key, str(v))
    retry_after = None
    if "retry-after-ms" in h:
        ms = _int(h["retry-after-ms"])
        retry_after = ms / 1000.0 if ms is not None else None
    if retry_after is None and "retry-after" in h:
        retry_after = parse_duration(h["retry-after"])
        if retry_after is None:
            retry_after = _seconds_until_http_date(h["retry-after"], now_epoch)

    def pick(kind: str, field: str) -> str | None:
        return (h.get(f"x-ratelimit-{field}-{kind}") or h.get(f"anthropic-ratelimit-{kind}-{field}")
                or h.get(f"x-ratelimit-{field}-{_MISTRAL[kind]}-minute"))

    def reset(kind: str) -> float | None:
        raw = h.get(f"x-ratelimit-reset-{kind}")
        if raw is not None:
            return parse_duration(raw)
        raw = h.get(f"anthropic-ratelimit-{kind}-reset")
        return _seconds_until(raw, now_epoch) if raw is not None else None

    # Token limits by what they count: OpenAI's ``x-ratelimit-limit-tokens`` the prompt plus
    # max_tokens at admission; Anthropic's input tokens (ITPM) and output tokens (OTPM), and its
    # ``tokens-*`` "the most restrictive" of the two (of no one basis: its limit is not read, its
    # remaining and reset still say when the account is spent).
    return RateSignals(
        retry_after_s=retry_after,
        limit_requests=_int(pick("requests", "limit")),
        remaining_requests=_int(pick("requests", "remaining")),
        reset_requests_s=reset("requests"),
        limit_tokens=_int(h.get("x-ratelimit-limit-tokens")),
        remaining_tokens=_int(pick("tokens", "remaining")),
        reset_tokens_s=reset("tokens"),
        limit_input_tokens=_int(h.get("anthropic-ratelimit-input-tokens-limit")),
        limit_output_tokens=_int(h.get("anthropic-ratelimit-output-tokens-limit")),
        resets_read_at_receipt=any(f"anthropic-ratelimit-{k}-reset" in h for k in ("requests", "tokens")),
        requests_unreset=("x-ratelimit-limit-requests" in h and "x-ratelimit-reset-requests" not in h
                          and "anthropic-ratelimit-requests-limit" not in h),  # (LiteLLM copies Anthropic's, no reset)
    )


def _seconds_until_http_date(value: str, now_epoch: float | None) -> float | None:
    from email.utils import parsedate_to_datetime

    if now_epoch is None:
        return None
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now_epoch)
    except (TypeError, ValueError):
        return None
