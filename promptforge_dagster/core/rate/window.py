"""The window a counter counts over, read from the end of a dry spell.

A window counter (a sliding or fixed window: Gemini's per-minute quotas, Azure OpenAI's RPM
evaluated over 1- or 10-s intervals) admits everything until the window's quota is used,
then nothing until the window frees. So a dry spell that ends says two things: the window
is about as long as from the first request it admitted to the first one it admitted again,
and the ceiling is what it admitted before it went dry, over that span. Until one is read
the window is a minute, the longest span per-minute limits are counted over.

Only a shorter span is taken: a lane that sends without pause finds the oldest request of a
window one window back, so a later dry spell reads at least the span already known, plus
however long the pause lasted (it says nothing new).

>>> w = WindowLearner()
>>> w.went_dry(first_admitted=0.0, dry_at=5.0)
>>> w.resumed(sent_at=10.0, admitted=lambda t0, t1: 100.0)   # 100 admitted, free again after 10 s
10.0
>>> w.span_s, w.known
(10.0, True)
"""

from __future__ import annotations

from typing import Callable

MINUTE_S = 60.0  # the span per-minute limits are counted over: what was admitted in it is always safe again
MIN_WINDOW_S = 1.0  # the shortest interval a provider documents counting over (Azure OpenAI: 1 s)
READ_BACK_S = 0.05  # the send history's grain: the first admitted request is read to this


class WindowLearner:
    def __init__(self) -> None:
        self.span_s = MINUTE_S
        self.known = False  # a dry spell ended as a window's does: the account counts over ``span_s``
        self._fill: tuple[float, float] | None = None

    def went_dry(self, first_admitted: float | None, dry_at: float) -> None:
        """A dry spell began: the window's quota went to what was admitted from
        ``first_admitted`` (the oldest request admitted within a window) to ``dry_at``."""
        if first_admitted is not None:
            self._fill = (first_admitted, dry_at)

    def resumed(self, sent_at: float, admitted: Callable[[float, float], float | None]) -> float | None:
        """A request sent at ``sent_at`` was admitted after the dry spell: the window freed.
        Returns the ceiling per second this window shows (None if the fill was not seen)."""
        if self._fill is None:
            return None
        start, dry_at = self._fill
        self._fill = None
        self.span_s = min(self.span_s, max(MIN_WINDOW_S, sent_at - start))
        self.known = True
        filled = admitted(start - READ_BACK_S, dry_at) or 0.0
        return filled / self.span_s if filled > 0.0 else None
