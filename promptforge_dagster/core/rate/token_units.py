"""What one request costs against a token limit, counted as that limit counts.

Providers count tokens differently (the bases in :mod:`~promptforge_dagster.core.rate.messages`):
OpenAI and Azure OpenAI charge the prompt plus ``max_tokens`` when a request arrives;
Anthropic's ITPM counts the prompt's tokens, its OTPM the answer's (reserved as
``max_tokens``, settled to the answer), and Gemini's TPM the input tokens. A tokens axis
paces and measures in its limit's own units, so a stated limit is exact and a measured
one is not blurred by a cost that does not move with it (an answer that uses a fifth of a
1,024-token budget). The basis comes from evidence: the refusal that opened the axis names
it, or OpenAI's ``x-ratelimit-limit-tokens`` says it; a refusal that names none is counted
as OpenAI counts.

Until a tokens axis opens, what was sent is kept in each basis (the axis then starts from
its own history: its floor is what the account admitted, not nothing).

>>> u = TokenUnits(RateConfig())
>>> [u.of(1200, 1000, b) for b in (ADMISSION, INPUT, OUTPUT)]   # 200 prompt tokens, 1,000 budgeted
[1200.0, 200.0, 1000.0]
>>> u.answered((200, 250), prompt_estimate=200); u.of(1200, 1000, OUTPUT)   # what answers use
250.0
"""

from __future__ import annotations

from typing import Mapping

from promptforge_dagster.core.rate.machine import new_estimator
from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate.estimator import HORIZON_S, CeilingEstimator
from promptforge_dagster.core.rate.messages import ADMISSION, INPUT, OUTPUT, TOKEN_BASES, TOKENS
from promptforge_dagster.core.rate.signals import RateSignal

ANSWER_EWMA = 0.05  # weight of one answer in the running mean of answer tokens (about the last 20-40)
UNOPENED_HORIZON_S = 120.0  # history kept per count before a tokens axis opens: its floor reads a minute
# (a whole horizon's, 600 s, in three counts was ~8 MB a lane at 100 sends/s, for most lanes never used)


class TokenUnits:
    """The basis a lane's tokens axis counts in, and each request's cost in it."""

    def __init__(self, config: RateConfig) -> None:
        self.basis = ADMISSION
        self._histories = {b: new_estimator(config, UNOPENED_HORIZON_S) for b in TOKEN_BASES}
        self._answer_mean: float | None = None  # answer tokens, as the provider counted them
        self._prompt_scale = 1.0  # the provider's count of a prompt over our estimate of it

    def of(self, est_tokens: int, max_tokens: int, basis: str | None = None) -> float:
        """A request's cost: ``est_tokens`` is the prompt's estimate plus ``max_tokens``.
        Counted at admission, the estimate stands (OpenAI estimates from characters too);
        counted in input tokens, it is scaled to what the provider counted for earlier prompts."""
        basis = basis or self.basis
        if basis == INPUT:
            return max(1.0, (est_tokens - max_tokens) * self._prompt_scale)
        if basis == OUTPUT:  # reserved as max_tokens, settled to the answer: on average, what answers use
            return max(1.0, self._answer_mean if self._answer_mean is not None else float(max_tokens))
        return float(max(1, est_tokens))

    def answered(self, usage: tuple[int, int] | None, prompt_estimate: int) -> None:
        """An answer's ``usage`` (prompt, answer tokens as the provider counted them), for a
        prompt we estimated at ``prompt_estimate`` tokens."""
        if usage is None:
            return
        prompt, answer = usage
        m = self._answer_mean
        self._answer_mean = float(answer) if m is None else m + ANSWER_EWMA * (answer - m)
        if prompt > 0 and prompt_estimate > 0:
            self._prompt_scale += ANSWER_EWMA * (prompt / prompt_estimate - self._prompt_scale)

    def sent(self, now: float, est_tokens: int, max_tokens: int) -> None:
        """A send before any tokens axis paced: kept in every basis."""
        for basis, history in self._histories.items():
            history.sent(now, self.of(est_tokens, max_tokens, basis))

    def history(self, basis: str) -> CeilingEstimator:
        """What was sent in ``basis``, for the tokens axis that opens on it (kept as long as any
        axis keeps its history from then on)."""
        history = self._histories[basis]
        history.keep(HORIZON_S)
        return history

    def rate(self, basis: str, now: float, span: float) -> float | None:
        """Units of ``basis`` sent per second over the last ``span`` seconds."""
        sent = self._histories[basis].sent_between(now - span, now)
        return sent / span if span > 0 and sent > 0 else None


def stated_token_limits(signal: RateSignal) -> Mapping[str, float]:
    """Token limits an answer states, per minute, by basis: OpenAI's header (admission),
    Anthropic's ITPM and OTPM headers, and a refusal message's value with its basis.

    >>> from promptforge_dagster.core.rate.signals import parse_signal
    >>> stated_token_limits(parse_signal(200, "", {"anthropic-ratelimit-output-tokens-limit": "8000"}))
    {'output': 8000.0}
    """
    h, out = signal.headers, {}
    for basis, value in ((ADMISSION, h.limit_tokens), (INPUT, h.limit_input_tokens), (OUTPUT, h.limit_output_tokens)):
        if value:
            out[basis] = float(value)
    if signal.limit == TOKENS and signal.limit_value and signal.token_basis:
        out[signal.token_basis] = float(signal.limit_value)
    return out
