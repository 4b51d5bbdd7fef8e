"""Limits the provider stated, taken as its word, each in the basis it counts.

A tokens axis opens on OpenAI's header or on a refusal's message (Anthropic states its ITPM
and OTPM on every answer, binding or not), and is capped by what is stated in the basis it
counts. A request limit is taken per minute when a refusal's message says so, or a header's
reset does not say otherwise (:attr:`RateSignals.requests_per_minute`); once a message
stated it, a header's other count is of another period (Groq's ``x-ratelimit-limit-requests``
counts a day).

A count of nothing left with its reset (``remaining: 0``) pauses the lane until the reset.

>>> from promptforge_dagster.core.rate.controller import AdaptiveController
>>> from promptforge_dagster.core.rate.signals import parse_signal
>>> c = AdaptiveController(now=0.0)
>>> learn(c, parse_signal(200, "", {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "599",
...                                 "x-ratelimit-reset-requests": "100ms"}), now=0.0)
>>> round(c.requests.cap * 60), c.tokens is None
(600, True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptforge_dagster.core.rate.messages import ADMISSION, REQUESTS, TOKENS
from promptforge_dagster.core.rate.signals import RateSignal
from promptforge_dagster.core.rate.token_units import stated_token_limits

if TYPE_CHECKING:
    from promptforge_dagster.core.rate.controller import AdaptiveController


def learn(c: AdaptiveController, signal: RateSignal, now: float, sent_at: float | None = None) -> None:
    """What one answer (``signal``) stated about the lane's limits, learned by ``c``. A reset
    given as a duration counts from when the provider admitted the request (sent at
    ``sent_at``), not from the answer: a 30 RPM lane that paused 2 s from each answer, 0.3 s
    after its send, ran at 0.87 of the limit (with 6-s answers it would run at a quarter)."""
    h = signal.headers
    said = signal.limit_value if signal.limit == REQUESTS else None
    if said:
        c.rpm_said = said
    header = h.requests_per_minute
    if header and c.rpm_said is not None and header != c.rpm_said:
        header = None  # the message named the minute's limit: this count is another period's
    rpm = said or header
    if rpm:
        c.requests.known_limit(float(rpm), now)
    tpm = stated_token_limits(signal)
    if c.tokens is None:
        opened_by = signal.token_basis if signal.limit == TOKENS and signal.limit_value else None
        basis = opened_by or (ADMISSION if h.limit_tokens else None)
        if basis is not None:
            c.units.basis = basis
            c.tokens = c.token_axis(tpm[basis] / 60.0, now)
    if c.tokens is not None and c.units.basis in tpm:
        c.tokens.known_limit(tpm[c.units.basis], now)
    for remaining, reset in ((h.remaining_requests, h.reset_requests_s), (h.remaining_tokens, h.reset_tokens_s)):
        if remaining == 0 and reset:  # the provider says the window is spent until reset
            since = now if h.resets_read_at_receipt or sent_at is None else min(now, sent_at)
            c.pause(since, reset, cap=c.cfg.window_s)
