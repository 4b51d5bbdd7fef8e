"""One prompt's retries: which failed answer ends its line, and how long it waits before
the next try.

A refusal (429) is retried up to ``max_rate_limited`` times: the controller paces the whole
lane down, and this prompt also waits out its own refusal (``retry-after`` if the provider
gave one). A transient failure (5xx, timeout, connection error) is retried up to
``max_attempts`` times with jittered exponential backoff, never sooner than ``retry-after``.
A permanent one (4xx) is never retried. Fatal answers (bad key, no quota) stop the job and
are the pipeline's to handle, not this policy's.

>>> import random
>>> from promptforge_dagster.core.outcome import OutcomeKind
>>> from promptforge_dagster.core.pipeline_config import PipelineConfig
>>> r = Retries(PipelineConfig(max_attempts=2))
>>> r.failed(OutcomeKind.TRANSIENT) is None      # first transient failure: retry
True
>>> r.failed(OutcomeKind.TRANSIENT)              # second: the line is recorded as failed
'retries_exhausted'
>>> r.failed(OutcomeKind.PERMANENT, error_type="missing_credentials")
'missing_credentials'
>>> r = Retries(PipelineConfig(backoff_base_s=0.5))
>>> r.failed(OutcomeKind.TRANSIENT) is None and 0.25 <= r.delay(OutcomeKind.TRANSIENT, None, random.Random(1)) <= 0.5
True
>>> r.delay(OutcomeKind.TRANSIENT, 3.0, random.Random(1))   # never sooner than the provider said
3.0
>>> r = Retries(PipelineConfig(max_attempts=5000, backoff_cap_s=30.0))
>>> all(r.failed(OutcomeKind.TRANSIENT) is None for _ in range(2000))   # a user's --max-attempts 5000
True
>>> 15.0 <= r.delay(OutcomeKind.TRANSIENT, None, random.Random(1)) <= 30.0   # at the cap, not an overflow
True
"""

from __future__ import annotations

import random

from promptforge_dagster.core.doubling import doubled
from promptforge_dagster.core.job.errors import (
    MISSING_CREDENTIALS, PROVIDER_ERROR, RATE_LIMITED, RETRIES_EXHAUSTED,
)
from promptforge_dagster.core.outcome import OutcomeKind
from promptforge_dagster.core.pipeline_config import PipelineConfig

REFUSAL_BACKOFF_STEPS_MAX = 4  # a refused prompt's own wait stops doubling here (the lane's pacer does the rest)


class Retries:
    """The count of one prompt's failed tries, by kind."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.attempts = 0  # transient failures
        self.rate_limited = 0  # refusals

    def failed(self, kind: OutcomeKind, error_type: str | None = None) -> str | None:
        """Count a failed answer: the error code that ends this prompt's line, or None to retry."""
        if kind is OutcomeKind.PERMANENT:
            return MISSING_CREDENTIALS if error_type == MISSING_CREDENTIALS else PROVIDER_ERROR
        if kind is OutcomeKind.RATE_LIMITED:
            self.rate_limited += 1
            return RATE_LIMITED if self.rate_limited >= self.config.max_rate_limited else None
        self.attempts += 1
        return RETRIES_EXHAUSTED if self.attempts >= self.config.max_attempts else None

    def delay(self, kind: OutcomeKind, retry_after_s: float | None, rng: random.Random) -> float:
        """How long this prompt waits before its next try."""
        if kind is OutcomeKind.RATE_LIMITED:
            return retry_after_s or self._backoff(min(self.rate_limited, REFUSAL_BACKOFF_STEPS_MAX), rng)
        return max(self._backoff(self.attempts, rng), retry_after_s or 0.0)

    def _backoff(self, attempt: int, rng: random.Random) -> float:
        cap = doubled(self.config.backoff_base_s, attempt - 1, cap=self.config.backoff_cap_s)
        return rng.uniform(cap / 2, cap)
