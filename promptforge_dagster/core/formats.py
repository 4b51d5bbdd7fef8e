"""Input line formats: the OpenAI Batch API line and PromptForge's simple line.

A line becomes either a :class:`PromptRequest` (something to send) or a
:class:`BadLine` (an error record that names the line and the reason). Parsing never
raises for a bad line: the job goes on.

>>> parser = LineParser(JobDefaults(model="openai/gpt-4o-mini"))
>>> req = parser.parse(b'{"id": "a", "prompt": "hi"}', ordinal=0, line_no=1, offset=0)
>>> req.custom_id, req.body["messages"]
('a', [{'role': 'user', 'content': 'hi'}])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

# Per-line error codes (every code: core/job/errors.py).
from promptforge_dagster.core.job.errors import (
    DUPLICATE_ID, INVALID_JSON, INVALID_REQUEST, INVALID_UTF8, LINE_TOO_LONG, MISSING_ID, NOT_AN_OBJECT,
    UNKNOWN_URL, UNSUPPORTED_METHOD,
)
from promptforge_dagster.core.request_policy import MAX_NESTING, RequestPolicy, provider_of

CHAT_COMPLETIONS_URL = "/v1/chat/completions"
# The Batch API endpoints PromptForge runs: url -> endpoint (the request and answer shapes).
ENDPOINTS = {CHAT_COMPLETIONS_URL: "chat", "/v1/embeddings": "embeddings", "/v1/responses": "responses"}
# A Batch line's own keys; any other top-level field is the user's, carried to its result, never sent.
BATCH_KEYS = frozenset({"custom_id", "method", "url", "body"})
# The simple line's one carried field: everything else in a simple line is the request.
SIMPLE_CARRIED = "metadata"
# Anthropic Message Batches lines ({"custom_id", "params"}): the params PromptForge sends, and
# the chat-completions field each becomes (LiteLLM turns it back into Anthropic's request).
ANTHROPIC_PARAMS = {"model": "model", "max_tokens": "max_tokens", "messages": "messages", "system": None,
                    "stop_sequences": "stop", "temperature": "temperature", "top_p": "top_p"}
ANTHROPIC_KEYS = frozenset({"custom_id", "params"})
# Sent with every request so a provider's (or the simulator's) request log can name the prompt.
CUSTOM_ID_HEADER = "X-PromptForge-Custom-Id"
# Batch API endpoints that exist but that PromptForge does not run (yet): named, so the
# error says "unsupported" rather than "unknown".
KNOWN_UNSUPPORTED_URLS = frozenset({"/v1/completions", "/v1/moderations"})


_decoder = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class JobDefaults:
    """Job-level defaults applied to simple lines (and to Batch lines without a model).

    ``model`` is a LiteLLM model string; ``params`` (e.g. ``{"max_tokens": 256}``) fill
    in body keys a line does not set.

    >>> JobDefaults(model="openai/gpt-4o-mini", params={"temperature": 0}).params
    {'temperature': 0}
    """

    model: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PromptRequest:
    """One prompt to send: its position in the input, the request body, which endpoint it
    is for (``chat``, ``embeddings``, ``responses``) and the line's own fields to carry to
    its result (never sent).

    >>> PromptRequest(ordinal=3, line_no=4, offset=120, custom_id="q3", body={}).endpoint
    'chat'
    """

    ordinal: int
    line_no: int
    offset: int
    custom_id: str
    body: dict[str, Any]
    endpoint: str = "chat"
    carry: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class BadLine:
    """An input line that cannot be sent; it becomes one error record in the results.

    ``custom_id`` is the line's own id when it has a usable one, else ``line-N``.

    >>> BadLine(0, 7, 300, "line-7", INVALID_JSON, "line 7: invalid JSON").custom_id
    'line-7'
    """

    ordinal: int
    line_no: int
    offset: int
    custom_id: str
    code: str
    message: str
    carry: dict[str, Any] | None = None  # the line's own fields, when it was an object
    endpoint: str = "chat"  # "anthropic" for a Message Batches line: its error record is in that format


class NotJsonlError(ValueError):
    """The input is not JSONL at all (a PDF, a zip, a CSV...): the job fails at once."""


def qualify_model(model: str, default_provider: str) -> str:
    """A LiteLLM model string with its provider prefix (``gpt-4o`` -> ``openai/gpt-4o``).

    >>> qualify_model("gpt-4o", "openai"), qualify_model("anthropic/claude", "openai")
    ('openai/gpt-4o', 'anthropic/claude')
    """
    return model if "/" in model else f"{default_provider}/{model}"


def line_fallback_id(line_no: int) -> str:
    """The id given to a line that has no usable id of its own.

    >>> line_fallback_id(12)
    'line-12'
    """
    return f"line-{line_no}"


def extract_id(obj: Any) -> str | None:
    """The line's id: ``custom_id`` (Batch format) or ``id`` (simple format).

    Numbers are accepted and turned into strings; anything else is no id.

    >>> extract_id({"custom_id": "a"}), extract_id({"id": 7}), extract_id({"id": ""})
    ('a', '7', None)
    """
    if not isinstance(obj, dict):
        return None
    raw = obj.get("custom_id", obj.get("id"))
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, str) and raw.strip():
        return raw
    return None


def decode_line(raw: bytes) -> tuple[Any, str | None, str | None]:
    """Decode one JSON line: ``(object, error_code, reason)``; object is None on error.

    >>> decode_line(b'{"a": 1}')[0]
    {'a': 1}
    >>> decode_line(b'{"a": ')[1]
    'invalid_json'
    """
    try:
        return _decoder.decode(raw), None, None
    except UnicodeDecodeError as exc:
        return None, INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}"
    except RecursionError:
        return None, INVALID_JSON, "invalid JSON (nested too deeply)"
    except msgspec.DecodeError as exc:
        nul = raw.find(b"\x00")
        if nul >= 0:
            return None, INVALID_JSON, f"invalid JSON (a NUL byte at byte {nul})"
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return None, INVALID_UTF8, f"invalid UTF-8 at byte {uexc.start}"
        return None, INVALID_JSON, f"invalid JSON ({exc})"


class LineParser:
    """Turns raw lines into :class:`PromptRequest` or :class:`BadLine`.

    Duplicate ids are not detected here (that needs the whole file): the caller passes
    ``duplicate=True`` for a line whose id an earlier line has (from the input scan).

    >>> p = LineParser(JobDefaults(model="m"), max_line_bytes=10)
    >>> p.parse(b'{"id": "x", "prompt": "too long"}', 0, 1, 0).code
    'line_too_long'
    """

    def __init__(self, defaults: JobDefaults, max_line_bytes: int = 2 * 1024 * 1024, source: str = "input",
                 policy: RequestPolicy | None = None) -> None:
        self.defaults = defaults
        self.max_line_bytes = max_line_bytes
        self.source = source
        self.policy = policy or RequestPolicy(provider_of(defaults.model))

    def parse(
        self,
        raw: bytes,
        ordinal: int,
        line_no: int,
        offset: int,
        *,
        length: int | None = None,
        duplicate: bool = False,
    ) -> PromptRequest | BadLine:
        """One line -> a request or an error record. Never raises: whatever a line holds,
        a failure to parse, validate or prepare it is that line's error record."""
        try:
            return self._parse(raw, ordinal, line_no, offset, length=length, duplicate=duplicate)
        except Exception as exc:  # noqa: BLE001 - one hostile line must not stop the job
            return self._bad(ordinal, line_no, offset, None, INVALID_REQUEST,
                             f"the line could not be prepared ({type(exc).__name__})")

    def _parse(self, raw: bytes, ordinal: int, line_no: int, offset: int, *, length: int | None,
               duplicate: bool) -> PromptRequest | BadLine:
        size = len(raw) if length is None else length
        if size > self.max_line_bytes:
            return self._bad(
                ordinal, line_no, offset, None, LINE_TOO_LONG,
                f"line is {size} bytes, over the {self.max_line_bytes}-byte cap (--max-line-bytes)",
            )
        obj, code, reason = decode_line(raw)
        # a line that opens few brackets cannot nest deeply: the policy skips its walk (bytes.count is C)
        shallow = raw.count(b"{") + raw.count(b"[") <= MAX_NESTING
        if code is not None:
            return self._bad(ordinal, line_no, offset, None, code, reason or code)
        if not isinstance(obj, dict):
            return self._bad(
                ordinal, line_no, offset, None, NOT_AN_OBJECT,
                f"expected a JSON object, got {type(obj).__name__}",
            )
        custom_id = extract_id(obj)
        if custom_id is None:
            return self._bad(
                ordinal, line_no, offset, None, MISSING_ID,
                'no usable "custom_id" (Batch format) or "id" (simple format)',
            )
        if duplicate:
            return self._bad(
                ordinal, line_no, offset, None, DUPLICATE_ID,
                f"duplicate id {custom_id!r}: an earlier line has it (the first line with an id is the one sent)",
            )
        if "params" in obj and "custom_id" in obj and "body" not in obj and "url" not in obj:
            return self._anthropic_line(obj, custom_id, ordinal, line_no, offset, shallow)
        if "custom_id" in obj or "body" in obj or "url" in obj:
            return self._batch_line(obj, custom_id, ordinal, line_no, offset, shallow)
        return self._simple_line(obj, custom_id, ordinal, line_no, offset, shallow)

    def _batch_line(self, obj: dict, custom_id: str, ordinal: int, line_no: int, offset: int, shallow: bool):
        carry = {k: v for k, v in obj.items() if k not in BATCH_KEYS and k != "id"} or None
        url = obj.get("url")
        endpoint = ENDPOINTS.get(url) if isinstance(url, str) else None
        if endpoint is None:
            supported = ", ".join(ENDPOINTS)
            reason = (
                f"url {url!r} is not supported (only {supported})"
                if url in KNOWN_UNSUPPORTED_URLS
                else f"unknown url {url!r} (expected one of {supported})"
            )
            return self._bad(ordinal, line_no, offset, custom_id, UNKNOWN_URL, reason, carry)
        method = obj.get("method", "POST")
        if not isinstance(method, str) or method.upper() != "POST":
            return self._bad(
                ordinal, line_no, offset, custom_id, UNSUPPORTED_METHOD, f"method {method!r} is not POST", carry
            )
        body = obj.get("body")
        if not isinstance(body, dict):
            return self._bad(ordinal, line_no, offset, custom_id, INVALID_REQUEST, '"body" must be a JSON object',
                             carry)
        return self._request(body, custom_id, ordinal, line_no, offset, endpoint, carry, shallow)

    def _anthropic_line(self, obj: dict, custom_id: str, ordinal: int, line_no: int, offset: int, shallow: bool):
        """A Message Batches line, sent as the chat request it is equivalent to; its result
        is written in Message Batches' result format."""
        carry = {k: v for k, v in obj.items() if k not in ANTHROPIC_KEYS} or None
        params = obj.get("params")

        def bad(reason: str) -> BadLine:
            return self._bad(ordinal, line_no, offset, custom_id, INVALID_REQUEST, reason, carry, "anthropic")

        if not isinstance(params, dict):
            return bad('"params" must be a JSON object')
        for name in params:
            if name not in ANTHROPIC_PARAMS:
                shown = str(name)[:60]
                return bad(f'"params.{shown}" is not a Message Batches parameter PromptForge sends '
                           f"(it sends {', '.join(ANTHROPIC_PARAMS)})")
        if not isinstance(params.get("max_tokens"), int):
            return bad('"params.max_tokens" is required (an integer), as Anthropic requires it')
        body = {ANTHROPIC_PARAMS[k]: v for k, v in params.items() if ANTHROPIC_PARAMS[k]}
        system = params.get("system")
        if system is not None:
            if isinstance(system, list):  # text blocks
                system = "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
            if not isinstance(system, str):
                return bad('"params.system" must be a string or a list of text blocks')
            body["messages"] = [{"role": "system", "content": system}, *(body.get("messages") or [])]
        return self._request(body, custom_id, ordinal, line_no, offset, "anthropic", carry, shallow)

    def _simple_line(self, obj: dict, custom_id: str, ordinal: int, line_no: int, offset: int, shallow: bool):
        carry = {SIMPLE_CARRIED: obj[SIMPLE_CARRIED]} if SIMPLE_CARRIED in obj else None
        body = {k: v for k, v in obj.items() if k not in ("id", "prompt", SIMPLE_CARRIED)}
        if "messages" not in obj and isinstance(obj.get("prompt"), str):
            body["messages"] = [{"role": "user", "content": obj["prompt"]}]
        elif "messages" not in obj:
            return self._bad(
                ordinal, line_no, offset, custom_id, INVALID_REQUEST,
                'a simple line needs "prompt" (a string) or "messages" (a list)', carry,
            )
        return self._request(body, custom_id, ordinal, line_no, offset, "chat", carry, shallow)

    def _request(self, body: dict, custom_id: str, ordinal: int, line_no: int, offset: int, endpoint: str,
                 carry: dict | None, shallow: bool):
        merged = dict(self.defaults.params) if endpoint == "chat" else {}  # job params are chat parameters
        merged.update(body)
        if merged.get("model") in (None, ""):
            merged["model"] = self.defaults.model
        refusal = self.policy.check(merged, "chat" if endpoint == "anthropic" else endpoint,
                                    shallow=shallow and not self.defaults.params)  # job params add nesting
        if refusal is not None:
            return self._bad(ordinal, line_no, offset, custom_id, refusal.code, refusal.reason, carry, endpoint)
        return PromptRequest(ordinal, line_no, offset, custom_id, merged, endpoint, carry)

    def _bad(self, ordinal: int, line_no: int, offset: int, custom_id: str | None, code: str, reason: str,
             carry: dict | None = None, endpoint: str = "chat") -> BadLine:
        return BadLine(
            ordinal, line_no, offset, custom_id or line_fallback_id(line_no), code,
            f"{self.source} line {line_no}: {reason}", carry, endpoint,
        )
