"""What a pipeline run is given and what it reports: the provider interface, the run's
validated knobs, its live counters, and the token estimate pacing charges per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from promptforge_dagster.core.formats import PromptRequest
from promptforge_dagster.core.outcome import Outcome


class Provider(Protocol):
    """Sends one request; never raises for a provider error (it returns an Outcome)."""

    async def complete(self, request: PromptRequest) -> Outcome: ...


# A part is written once its oldest result waited FLUSH_AT of the flush interval, looked at FLUSH_TICKS times an
# interval: a write begins within 0.75 of it and lands within it (at 0.75 it began up to the whole interval late)
FLUSH_TICKS = 4
FLUSH_AT = 0.5


@dataclass
class PipelineConfig:
    """Knobs of one run. Validated on construction.

    >>> PipelineConfig(max_in_flight=0)
    Traceback (most recent call last):
    ...
    ValueError: max_in_flight must be at least 1
    """

    max_in_flight: int | None = None  # an optional cap; the bound itself follows rate x latency (core/rate/concurrency.py)
    buffer_records: int = 1000  # a part is written when this many records wait
    flush_interval_s: float = 2.0  # ... or when the oldest has waited this long
    max_attempts: int = 5  # transient failures per prompt before it is recorded as failed
    max_rate_limited: int = 30  # 429s per prompt before it is recorded as failed
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    read_batch: int = 512  # lines pulled from the reader per hop to its thread
    default_max_tokens: int = 256  # completion estimate when a body sets no max_tokens
    max_cost_usd: float | None = None  # stop cleanly (resumable) once this run has spent this much

    def __post_init__(self) -> None:
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if self.max_cost_usd is not None and not self.max_cost_usd > 0:
            raise ValueError(f"--max-cost must be a positive amount in USD, got {self.max_cost_usd}")
        if self.buffer_records < 1:
            raise ValueError("buffer_records must be at least 1")
        if not 0 < self.flush_interval_s <= 2.0:
            raise ValueError("flush_interval_s must be in (0, 2]")
        if self.max_attempts < 1 or self.max_rate_limited < 1:
            raise ValueError("max_attempts and max_rate_limited must be at least 1")


@dataclass
class JobStats:
    """Live counters of one run, read by progress reporting and telemetry."""

    total: int | None = None
    skipped: int = 0  # already done by an earlier attempt
    succeeded: int = 0
    failed: int = 0
    input_errors: int = 0
    sent: int = 0
    rate_limited: int = 0
    retries: int = 0
    in_flight: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0  # this run's spending, where the price is known
    started_at: float = 0.0
    finished_at: float | None = None
    fatal: str | None = None
    commit_errors: int = 0  # checkpoint commits that failed for a transient reason (the next one retries)
    last_commit_error: str | None = None
    errors_by_code: dict[str, int] = field(default_factory=dict)
    dropped_deployments: dict[str, str] = field(default_factory=dict)  # deployment id -> why it was dropped
    earlier: dict[str, int] = field(default_factory=dict)  # sends, refusals, retries, attempts before this one

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    def rpm(self, now: float) -> float:
        elapsed = (self.finished_at or now) - self.started_at
        return self.sent * 60.0 / elapsed if elapsed > 0 else 0.0


def estimate_tokens(body: dict[str, Any], default_max_tokens: int, endpoint: str = "chat") -> int:
    """A cheap upper-ish estimate of a request's tokens: characters / 4 plus max_tokens.

    >>> estimate_tokens({"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50}, 256)
    151
    >>> estimate_tokens({"input": ["x" * 40, "y" * 40]}, 256, "embeddings")   # no answer tokens
    21
    """
    chars = 0
    for m in body.get("messages", ()):
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    chars += len(part["text"])
    given = body.get("input")  # embeddings and responses lines
    if isinstance(given, str):
        chars += len(given)
    elif isinstance(given, list):
        for item in given:
            if isinstance(item, str):
                chars += len(item)
            elif isinstance(item, list):  # token ids
                chars += 4 * len(item)
            elif isinstance(item, dict) and isinstance(item.get("content"), str):
                chars += len(item["content"])
    return chars // 4 + 1 + answer_budget(body, default_max_tokens, endpoint)


def answer_budget(body: dict[str, Any], default_max_tokens: int, endpoint: str = "chat") -> int:
    """The answer's share of :func:`estimate_tokens`: the tokens the line lets the answer use.

    >>> answer_budget({"max_tokens": 50}, 256), answer_budget({}, 256), answer_budget({"input": "x"}, 256, "embeddings")
    (50, 256, 0)
    """
    if endpoint == "embeddings":
        return 0  # an embedding answers no tokens
    completion = body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
    if not isinstance(completion, int) or isinstance(completion, bool) or completion < 0:
        completion = default_max_tokens
    return completion
