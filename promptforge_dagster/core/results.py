"""Result records in the OpenAI Batch output format, part files, and the final assembly.

Every input line ends as exactly one output line ``{"id", "custom_id", "response",
"error"}``. While a job runs, records are written in small immutable *part* files, each
line an envelope ``{"o": ordinal, "ti", "to", "cost", "lat", "r": record}``. At the end,
:func:`assemble` streams the parts into ``results.jsonl``, keeping the first record of
each ordinal, and computes ``summary.json``.

>>> rec = error_record("job", 4, "line-5", "invalid_json", "in.jsonl line 5: invalid JSON")
>>> rec["custom_id"], rec["response"], rec["error"]["code"]
('line-5', None, 'invalid_json')
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import msgspec
from pyroaring import BitMap

from promptforge_dagster.core.outcome import Outcome

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def record_id(job_id: str, ordinal: int) -> str:
    """A deterministic ``batch_req_...`` id, the same on every attempt of a job.

    >>> record_id("j", 0) == record_id("j", 0), record_id("j", 0) == record_id("j", 1)
    (True, False)
    """
    digest = hashlib.blake2b(f"{job_id}\x00{ordinal}".encode(), digest_size=12).hexdigest()
    return f"batch_req_{digest}"


def with_carry(record: dict[str, Any], carry: dict[str, Any] | None) -> dict[str, Any]:
    """The record plus the line's own fields (after the Batch output's four; they never
    replace one of those).

    >>> with_carry({"id": "b", "custom_id": "c", "response": None, "error": None}, {"metadata": {"k": 1}, "id": "x"})
    {'id': 'b', 'custom_id': 'c', 'response': None, 'error': None, 'metadata': {'k': 1}}
    """
    if carry:
        record.update({k: v for k, v in carry.items() if k not in record and k not in ("result", "response")})
    return record


# Anthropic's names for a chat answer's finish_reason, and its error types by HTTP status.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}


def anthropic_message(body: Any) -> dict[str, Any]:
    """A chat completion as the Anthropic Message a Message Batches result holds.

    >>> m = anthropic_message({"id": "x", "model": "claude", "choices": [{"message": {"content": "hi"},
    ...     "finish_reason": "length"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
    >>> m["content"], m["stop_reason"], m["usage"]
    ([{'type': 'text', 'text': 'hi'}], 'max_tokens', {'input_tokens': 3, 'output_tokens': 1})
    """
    body = body if isinstance(body, dict) else {}
    choices = body.get("choices") or [{}]
    first = choices[0] if isinstance(choices[0], dict) else {}
    text = (first.get("message") or {}).get("content")
    usage = body.get("usage") or {}
    return {"id": body.get("id"), "type": "message", "role": "assistant", "model": body.get("model"),
            "content": [{"type": "text", "text": text}] if isinstance(text, str) else [],
            "stop_reason": STOP_REASONS.get(first.get("finish_reason"), first.get("finish_reason")),
            "stop_sequence": None,
            "usage": {"input_tokens": usage.get("prompt_tokens") or 0, "output_tokens": usage.get("completion_tokens") or 0}}


def anthropic_record(job_id: str, ordinal: int, custom_id: str, *, message: dict[str, Any] | None = None,
                     code: str | None = None, text: str = "", status: int | None = None) -> dict[str, Any]:
    """A Message Batches result line (``custom_id`` + ``result``: succeeded or errored), plus
    PromptForge's ``id`` and ``error`` ({code, message} or null) that status, rerun-failed
    and the summary read for every format.

    >>> anthropic_record("j", 0, "a", code="invalid_json", text="bad")["result"]["error"]["error"]["type"]
    'invalid_request_error'
    """
    if message is not None:
        result: dict[str, Any] = {"type": "succeeded", "message": message}
    else:
        kind = ANTHROPIC_ERRORS.get(status or 400, "api_error")
        result = {"type": "errored", "error": {"type": "error", "error": {"type": kind, "message": text}}}
    return {"id": record_id(job_id, ordinal), "custom_id": custom_id, "result": result,
            "error": None if code is None else {"code": code, "message": text}}


def success_record(job_id: str, ordinal: int, custom_id: str, outcome: Outcome,
                   carry: dict[str, Any] | None = None, endpoint: str = "chat") -> dict[str, Any]:
    """The record of a successful request."""
    if endpoint == "anthropic":
        return with_carry(anthropic_record(job_id, ordinal, custom_id, message=anthropic_message(outcome.body)), carry)
    return with_carry({
        "id": record_id(job_id, ordinal),
        "custom_id": custom_id,
        "response": {"status_code": outcome.status_code, "request_id": outcome.request_id, "body": outcome.body},
        "error": None,
    }, carry)


def failure_record(job_id: str, ordinal: int, custom_id: str, code: str, outcome: Outcome,
                   carry: dict[str, Any] | None = None, endpoint: str = "chat") -> dict[str, Any]:
    """The record of a request that was answered (or attempted) and failed for good."""
    message = outcome.message or f"HTTP {outcome.status_code}"
    if endpoint == "anthropic":
        return with_carry(anthropic_record(job_id, ordinal, custom_id, code=code, text=message,
                                           status=outcome.status_code or 500), carry)
    response = None
    if outcome.status_code:
        body = outcome.body or {"error": {"message": message, "type": outcome.error_type, "code": None}}
        response = {"status_code": outcome.status_code, "request_id": outcome.request_id, "body": body}
    return with_carry({
        "id": record_id(job_id, ordinal),
        "custom_id": custom_id,
        "response": response,
        "error": {"code": code, "message": message},
    }, carry)


def error_record(job_id: str, ordinal: int, custom_id: str, code: str, message: str,
                 carry: dict[str, Any] | None = None, endpoint: str = "chat") -> dict[str, Any]:
    """The record of an input line that could not be sent."""
    if endpoint == "anthropic":
        return with_carry(anthropic_record(job_id, ordinal, custom_id, code=code, text=message), carry)
    return with_carry({"id": record_id(job_id, ordinal), "custom_id": custom_id, "response": None,
                       "error": {"code": code, "message": message}}, carry)


@dataclass(slots=True)
class Envelope:
    """A record plus what the summary needs, as stored in part files."""

    ordinal: int
    record: dict[str, Any]
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float | None = None
    latency_ms: float | None = None

    def encode(self) -> bytes:
        return _encoder.encode(
            {"o": self.ordinal, "ti": self.tokens_in, "to": self.tokens_out, "cost": self.cost,
             "lat": self.latency_ms, "r": self.record}
        )

    @staticmethod
    def decode(line: bytes) -> "Envelope":
        d = _decoder.decode(line)
        return Envelope(d["o"], d["r"], d.get("ti", 0), d.get("to", 0), d.get("cost"), d.get("lat"))


def encode_part(envelopes: Iterable[Envelope]) -> bytes:
    """A part file's bytes: one envelope per line."""
    return b"".join(e.encode() + b"\n" for e in envelopes)


def decode_part(data: bytes) -> Iterator[Envelope]:
    """The envelopes of a part file. A torn last line (no newline) is ignored: parts are
    written atomically, so it can only come from a foreign writer."""
    for line in data.split(b"\n"):
        if line.strip():
            try:
                yield Envelope.decode(line)
            except msgspec.DecodeError:
                continue


class LatencyHistogram:
    """Constant-memory latency quantiles: log buckets 5% wide, from 1 ms to hours.

    >>> h = LatencyHistogram()
    >>> for ms in range(1, 101): h.add(float(ms))
    >>> 47 <= h.quantile(0.5) <= 53, 90 <= h.quantile(0.95) <= 100
    (True, True)
    """

    _STEP = math.log(1.05)

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0

    def add(self, ms: float) -> None:
        b = int(math.log(max(ms, 1.0)) / self._STEP)
        self.counts[b] = self.counts.get(b, 0) + 1
        self.n += 1

    def quantile(self, q: float) -> float | None:
        if not self.n:
            return None
        rank = q * self.n
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return round(math.exp((b + 0.5) * self._STEP), 1)
        return None


@dataclass
class Summary:
    """Counts by outcome, tokens, cost and latency over the final results."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    errors_by_code: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def add(self, env: Envelope) -> None:
        self.total += 1
        error = env.record.get("error")
        if error:
            self.failed += 1
            code = str(error.get("code") or "unknown")
            self.errors_by_code[code] = self.errors_by_code.get(code, 0) + 1
        else:
            self.succeeded += 1
        self.tokens_in += env.tokens_in
        self.tokens_out += env.tokens_out
        if env.cost is not None:
            self.cost_usd = (self.cost_usd or 0.0) + env.cost
        if env.latency_ms is not None:
            self.latency.add(env.latency_ms)

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompts": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "errors_by_code": dict(sorted(self.errors_by_code.items())),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
            "latency_ms": {
                "p50": self.latency.quantile(0.5),
                "p95": self.latency.quantile(0.95),
                "p99": self.latency.quantile(0.99),
            },
        }


class IncompleteResults(Exception):
    """The parts do not cover every input line: the job cannot be published yet."""


def assemble(
    part_bytes: Iterable[bytes],
    expected: int,
    write_line: Callable[[bytes], None],
) -> Summary:
    """Stream parts into the final results, each ordinal once (the first record kept).

    Memory is the emitted-ordinals bitmap plus one part at a time.

    >>> out = []
    >>> e = Envelope(0, {"id": "x", "custom_id": "a", "response": None, "error": None})
    >>> s = assemble([encode_part([e]), encode_part([e])], 1, out.append)
    >>> len(out), s.total
    (1, 1)
    """
    emitted = BitMap()
    summary = Summary()
    for data in part_bytes:
        for env in decode_part(data):
            if env.ordinal in emitted or env.ordinal >= expected:
                continue
            emitted.add(env.ordinal)
            write_line(_encoder.encode(env.record) + b"\n")
            summary.add(env)
    if len(emitted) != expected:
        missing = BitMap(range(expected)) - emitted
        first = list(missing[:5]) if len(missing) else []
        raise IncompleteResults(
            f"results cover {len(emitted)} of {expected} input lines (missing ordinals start {first})"
        )
    return summary
