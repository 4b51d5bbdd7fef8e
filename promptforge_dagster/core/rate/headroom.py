"""Room the headers showed: a refusal while the account had room is not its limit's.

OpenAI and Anthropic send what is left of each per-minute limit on every answer
(``x-ratelimit-remaining-requests`` / ``-tokens``; ``anthropic-ratelimit-requests-remaining``,
``-tokens-remaining``), as of the moment the request was admitted. A refusal that names no
limit, of a request sent just after an admitted one's headers showed room (twice what this
lane sent in between, and more than the refused request needed), did not hit those limits: a
shared pool refused it (Vertex AI's "dynamic shared quota" answers 429 whatever the account's
use; a provider's capacity behind an OpenAI-style gateway). It is counted as not admitted and
lowers nothing. A lane that cut on each such refusal halved its rate every few dozen requests:
3% of them held a 1,200 RPM lane with OpenAI's headers to 0.09 of its ceiling (fake clock).

Guards keep a real limit's refusals learned from: the reading must be fresh (taken within a
second before the refused request went: a bucket refills a sixtieth of its minute meanwhile,
and a reading after the send never speaks for it, a window may have reset); other clients of
the account would have to spend more of it than this lane did in that second, and all that
was left; a token limit the headers state must show room too (one they do not state would
name itself: OpenAI's and Anthropic's messages do); and such refusals must stay rare: once
more than a tenth of the latest answers were refused, they are a limit's the headers do not
show (a gateway's own limit in front of the provider).

>>> h = Headroom()
>>> h.read(10.0, remaining_requests=30, limit_requests=1000, remaining_tokens=9_000, limit_tokens=100_000)
>>> h.had_room(10.3, requests_since=lambda t: 5, tokens_since=lambda t: 500.0, units=100.0)
True
>>> h.had_room(10.3, requests_since=lambda t: 20, tokens_since=lambda t: 500.0, units=100.0)  # spent since
False
>>> h.had_room(12.0, requests_since=lambda t: 5, tokens_since=lambda t: 500.0, units=100.0)   # no fresh reading
False
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from promptforge_dagster.core.rate.headers import RateSignals

ROOM_KEPT = 0.5  # of what a reading showed left, this much still left after this lane's sends since: other
# clients would have to spend more than this lane did, within FRESH_S, for the refusal to be the limit's
ROOM_MIN = 2  # ... and at least this many requests (a reading of one left says little)
FRESH_S = 1.0  # a reading speaks for requests sent this long after it (a bucket refills a sixtieth of its
# minute meanwhile; a window could reset, so a reading after the send never speaks for it)
HOLD_S = 60.0  # readings kept: a refusal answered this long after its send is judged as any
GRAIN_S = 0.25  # ... one per grain (the latest), a few hundred at most whatever the rate
RECENT = 32  # the latest answers whose refusals are counted
DENSE = 0.1  # more of them refused than this: a limit the headers do not show


class Headroom:
    """Feed it the headers of admitted answers (``read``) and every answer (``answered``);
    ``had_room`` says whether a refusal that named no limit came while the account had room."""

    def __init__(self) -> None:
        self._readings: deque[tuple[float, int, int | None]] = deque()  # (admitted at, requests left,
        # tokens left: None when no token limit was stated)
        self._recent: deque[bool] = deque(maxlen=RECENT)

    def read(self, at: float, *, remaining_requests: int | None, limit_requests: int | None,
             remaining_tokens: int | None, limit_tokens: int | None) -> None:
        """An admitted request's headers (as of ``at``, when it was sent): what was left of the
        per-minute request limit and of the token limit, if stated. Without a per-minute request
        limit and its count, or with a token limit stated without its count, nothing is read."""
        if remaining_requests is None or limit_requests is None or (limit_tokens and remaining_tokens is None):
            return
        tokens_left = remaining_tokens if limit_tokens else None
        reading = (at, remaining_requests, tokens_left)
        if self._readings and self._readings[-1][0] // GRAIN_S == at // GRAIN_S:
            if at >= self._readings[-1][0]:
                self._readings[-1] = reading
        else:
            self._readings.append(reading)
        while self._readings and self._readings[0][0] < self._readings[-1][0] - HOLD_S:
            self._readings.popleft()

    def admitted(self, sent_at: float, h: RateSignals) -> None:
        """An admitted answer, sent at ``sent_at``, and its headers: what was left of the
        per-minute request limit and of the token limits (Anthropic's tokens left are of its
        most restrictive one)."""
        self.answered(False)
        if h.remaining_requests is None:  # (most answers, without headers: nothing to read, on the hot path)
            return
        token_limits = [v for v in (h.limit_tokens, h.limit_input_tokens, h.limit_output_tokens) if v]
        self.read(sent_at, remaining_requests=h.remaining_requests, limit_requests=h.requests_per_minute,
                  remaining_tokens=h.remaining_tokens, limit_tokens=min(token_limits, default=None))

    def answered(self, refused: bool) -> None:
        self._recent.append(refused)

    @property
    def counting(self) -> bool:
        """The headers state what is left of the limits: they, not a refusal's words, say whose it is."""
        return bool(self._readings)

    def had_room(self, sent_at: float, *, requests_since: Callable[[float], int],
                 tokens_since: Callable[[float], float | None], units: float) -> bool:
        """Whether the request sent at ``sent_at`` (``units`` tokens) went while the limits had
        room: ``requests_since(t)`` / ``tokens_since(t)`` are what this lane sent from ``t`` to
        then (None: not known)."""
        if sum(self._recent) > DENSE * RECENT:
            return False
        reading = max((r for r in self._readings if sent_at - FRESH_S <= r[0] <= sent_at), default=None)
        if reading is None:
            return False
        at, requests_left, tokens_left = reading
        room = requests_left - requests_since(at)
        if room < max(ROOM_MIN, ROOM_KEPT * requests_left):
            return False
        if tokens_left is None:
            return True
        tokens = tokens_since(at)
        return tokens is not None and tokens_left - tokens >= max(2.0 * units, ROOM_KEPT * tokens_left)
