"""Which limit a refusal that names none hit: requests, until the sizes say tokens.

A bare 429 (no message, no headers) is charged to requests: pacing requests paces their
tokens too. A request limit does not care about size; a token limit does. So once enough
silent refusals were seen, refused requests clearly larger than admitted ones are evidence
of a token limit, and from then on silent refusals are charged to tokens.

>>> s = SilentLimit()
>>> for _ in range(30):
...     s.admitted(100)
>>> [s.refused(400) for _ in range(8)][-2:]
['requests', 'tokens']
"""

from __future__ import annotations

from promptforge_dagster.core.rate.messages import REQUESTS, TOKENS

SIZE_EVIDENCE_REFUSALS = 8  # silent refusals seen before their sizes are read as evidence
SIZE_EVIDENCE_RATIO = 1.25  # refused requests this much larger than admitted ones: tokens are what is limited
SIZE_EWMA = 0.05  # weight of one request in the running mean sizes (about the last 20-40 requests)


def _mean(mean: float | None, value: float) -> float:
    return float(value) if mean is None else mean + SIZE_EWMA * (value - mean)


class SilentLimit:
    def __init__(self) -> None:
        self.limit = REQUESTS  # what refusals that name no limit are charged to
        self._size_ok: float | None = None  # running mean tokens of admitted requests
        self._size_refused: float | None = None  # ... of refusals that named no limit
        self._seen = 0

    def admitted(self, est_tokens: float) -> None:
        self._size_ok = _mean(self._size_ok, est_tokens)

    def refused(self, est_tokens: float) -> str:
        """A refusal naming no limit, of a request of ``est_tokens``: the limit it is charged to."""
        self._seen += 1
        self._size_refused = _mean(self._size_refused, est_tokens)
        if (self.limit == REQUESTS and self._seen >= SIZE_EVIDENCE_REFUSALS and self._size_ok
                and self._size_refused > SIZE_EVIDENCE_RATIO * self._size_ok):
            self.limit = TOKENS  # large requests are refused, small ones pass: a token limit
        return self.limit
