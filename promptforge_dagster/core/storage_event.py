"""Eventarc CloudEvents for GCS uploads: parse, validate, decide. Pure.

Eventarc delivers ``google.cloud.storage.object.v1.finalized`` in binary content mode
(``ce-*`` headers, the object's metadata as the JSON body) or structured mode (one JSON
document, ``application/cloudevents+json``). At least once: the same event may come
again, so the job it makes is keyed by object generation (``core/job_planning.job_key``).

>>> headers = {"ce-id": "1", "ce-type": FINALIZED, "ce-specversion": "1.0",
...            "ce-source": "//storage.googleapis.com/projects/_/buckets/in-bucket"}
>>> ev = parse_event(headers, b'{"bucket": "in-bucket", "name": "inputs/a.jsonl", "generation": "7", "size": "120"}')
>>> ev.object.name, ev.object.generation
('inputs/a.jsonl', 7)
>>> decide(ev, bucket="in-bucket", prefix="inputs/").action
'record'
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Mapping

from promptforge_dagster.core.job_planning import UNREADABLE_CATEGORIES, UploadedObject

FINALIZED = "google.cloud.storage.object.v1.finalized"
SOURCE_PREFIX = "//storage.googleapis.com/projects/_/buckets/"
MAX_NAME_BYTES = 1024  # GCS's own limit on object names
MAX_INT64 = 2 ** 63 - 1  # GCS generations and sizes are int64, sent as decimal strings
_DECIMAL = re.compile(r"[0-9]{1,19}")


def strict_int(value: Any, what: str, *, minimum: int) -> int:
    """An int64 as GCS sends it: a decimal string (or a JSON integer); nothing else.

    >>> strict_int("1700000000123", "generation", minimum=1)
    1700000000123
    >>> strict_int(7.9, "generation", minimum=1)
    Traceback (most recent call last):
    ...
    promptforge_dagster.core.storage_event.BadEvent: object generation must be a decimal integer, got 7.9
    """
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = int(value)
    else:
        raise BadEvent(f"object {what} must be a decimal integer, got {str(value)[:40]!r}"
                       if isinstance(value, str) else
                       f"object {what} must be a decimal integer, got {str(value)[:40]}")
    if not minimum <= number <= MAX_INT64:
        raise BadEvent(f"object {what} must be from {minimum} to {MAX_INT64}")
    return number


def check_name(name: str) -> None:
    """Object names: at most GCS's 1,024 bytes, no control, format (bidi) or separator characters.

    >>> check_name("inputs/batch 1.jsonl")
    >>> check_name("inputs/\u202egnp.jsonl")
    Traceback (most recent call last):
    ...
    promptforge_dagster.core.storage_event.BadEvent: object name holds a control or bidi character (U+202E)
    """
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise BadEvent("object name is too long")
    for c in name:
        if unicodedata.category(c) in UNREADABLE_CATEGORIES:
            raise BadEvent(f"object name holds a control or bidi character (U+{ord(c):04X})")


class BadEvent(ValueError):
    """The request is not a valid storage CloudEvent; the message says why (HTTP 400)."""


@dataclass(frozen=True)
class StorageEvent:
    id: str
    type: str
    source: str
    object: UploadedObject


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def parse_event(headers: Mapping[str, str], body: bytes) -> StorageEvent:
    h = _lower(headers)
    try:
        doc = json.loads(body or b"null", parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadEvent(f"body is not JSON: {str(exc)[:120]}") from None
    except RecursionError:
        raise BadEvent("body is not JSON: nested too deeply") from None
    if h.get("content-type", "").startswith("application/cloudevents+json"):
        if not isinstance(doc, dict):
            raise BadEvent("structured CloudEvent must be a JSON object")
        meta = {k: doc.get(k) for k in ("id", "type", "source", "specversion")}
        data = doc.get("data")
    else:
        meta = {k: h.get(f"ce-{k}") for k in ("id", "type", "source", "specversion")}
        data = doc
    missing = [k for k, v in meta.items() if not v]
    if missing:
        raise BadEvent(f"not a CloudEvent: missing {', '.join(missing)}")
    if meta["specversion"] != "1.0":
        raise BadEvent(f"unsupported CloudEvents specversion {meta['specversion']!r}")
    if meta["type"] != FINALIZED:
        raise BadEvent(f"unexpected event type {meta['type']!r} (want {FINALIZED})")
    if not str(meta["source"]).startswith(SOURCE_PREFIX):
        raise BadEvent(f"unexpected event source {meta['source']!r}")
    if not isinstance(data, dict):
        raise BadEvent("event data must be the object's metadata (a JSON object)")
    bucket, name = data.get("bucket"), data.get("name")
    if not isinstance(bucket, str) or not bucket or not isinstance(name, str) or not name:
        raise BadEvent("event data names no bucket or object")
    if str(meta["source"])[len(SOURCE_PREFIX):] != bucket:
        raise BadEvent("event source and data name different buckets")
    check_name(name)
    check_name(bucket)
    generation = strict_int(data.get("generation"), "generation", minimum=1)
    size = strict_int(data.get("size", "0"), "size", minimum=0)
    return StorageEvent(str(meta["id"]), str(meta["type"]), str(meta["source"]),
                        UploadedObject(bucket, name, generation, size))


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


@dataclass(frozen=True)
class Decision:
    action: str  # "record" or "ignore"
    reason: str | None = None


def decide(event: StorageEvent, *, bucket: str, prefix: str, output_prefix: str | None = None) -> Decision:
    """Only uploads under the input prefix of the configured bucket become jobs; never
    anything under the output prefix (results must not become jobs).

    >>> ev = StorageEvent("1", FINALIZED, SOURCE_PREFIX + "other", UploadedObject("other", "inputs/a.jsonl", 1, 1))
    >>> decide(ev, bucket="in-bucket", prefix="inputs/")
    Decision(action='ignore', reason="bucket 'other' is not the input bucket 'in-bucket'")
    """
    obj = event.object
    if obj.bucket != bucket:
        return Decision("ignore", f"bucket {obj.bucket!r} is not the input bucket {bucket!r}")
    if not obj.name.startswith(prefix):
        return Decision("ignore", f"object {obj.name!r} is outside the input prefix {prefix!r}")
    if output_prefix is not None and obj.name.startswith(output_prefix.lstrip("/")):
        return Decision("ignore", f"object {obj.name!r} is under the output prefix {output_prefix!r}")
    if any(part in ("..", ".") for part in obj.name.split("/")):
        return Decision("ignore", f"object {obj.name!r} has '.' or '..' path segments")
    return Decision("record")
