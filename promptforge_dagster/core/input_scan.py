"""The pre-pass over an input: is it JSONL at all, how many prompts, which ids repeat.

Duplicate detection must see the whole file, yet memory must not grow with it beyond
compressed bitmaps. The first pass hashes each id to 32 bits into a roaring bitmap (about
2 bytes per prompt); only when 32-bit hashes collide does a second pass look again, at
the colliding ids only, keyed by a 64-bit digest in a 64-bit roaring bitmap (two distinct
ids of one job share a 64-bit digest with odds of about n^2 / 2^65: 3 in a million for a
10M-line job). The first line with an id wins; later lines with that id become
``duplicate_id`` errors. The result is a bitmap of duplicate ordinals, so a file
concatenated with itself costs bits, not a dict entry per line.

>>> from promptforge_dagster.core.reader import PromptReader
>>> src = b'{"id": "a"}\\n{"id": "b"}\\n{"id": "a"}\\n'
>>> lines = lambda: PromptReader(lambda s, n: src[s:s + n], len(src))
>>> index = scan_input(lines)
>>> index.prompt_lines, list(index.duplicates)
(3, [2])
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import msgspec
from pyroaring import BitMap, BitMap64

from promptforge_dagster.core.formats import NotJsonlError, extract_id
from promptforge_dagster.core.reader import BOM, RawLine

SNIFF_BYTES = 64 * 1024
SNIFF_LINES = 20

_MAGIC = {
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a zip archive (or an Office document)",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"SQLite format 3": "an SQLite database",
    b"PAR1": "a Parquet file",
    b"\x7fELF": "an executable",
}

# Byte-order marks of encodings other than UTF-8, longest first (UTF-32 LE starts like UTF-16 LE).
_FOREIGN_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32 (little-endian)", "UTF-32LE"),
    (b"\x00\x00\xfe\xff", "UTF-32 (big-endian)", "UTF-32BE"),
    (b"\xff\xfe", "UTF-16 (little-endian)", "UTF-16LE"),
    (b"\xfe\xff", "UTF-16 (big-endian)", "UTF-16BE"),
)


class _Ids(msgspec.Struct):
    custom_id: Any = None
    id: Any = None


_id_decoder = msgspec.json.Decoder(_Ids)


@dataclass(frozen=True, slots=True)
class InputIndex:
    """What the scan learned: the count of non-blank lines and the duplicate lines (their
    ordinals; the first line with an id is not among them).

    >>> index = InputIndex(prompt_lines=3, duplicates=BitMap([2]), input_generation=7)
    >>> InputIndex.decode(index.encode()) == index
    True
    """

    prompt_lines: int
    duplicates: BitMap = field(default_factory=BitMap)
    input_generation: int | None = None

    def encode(self) -> bytes:
        """``scan.json``: a few numbers and one serialized bitmap (bounded by the bitmap)."""
        return msgspec.json.encode({
            "input_generation": self.input_generation, "prompt_lines": self.prompt_lines,
            "duplicates_roaring_b64": base64.b64encode(self.duplicates.serialize()).decode()})

    @classmethod
    def decode(cls, data: bytes) -> "InputIndex":
        doc = msgspec.json.decode(data)
        return cls(int(doc["prompt_lines"]), BitMap.deserialize(base64.b64decode(doc["duplicates_roaring_b64"])),
                   doc.get("input_generation"))


def sniff(head: bytes, source: str) -> None:
    """Raise :class:`NotJsonlError` when ``head`` (the first bytes) cannot be JSONL.

    A file whose first lines are partly broken is still JSONL (bad lines become error
    records); a file with no JSON object among its first lines, or binary content, is not.

    >>> sniff(b'{"id": 1}\\n', "in.jsonl")
    >>> sniff(b'%PDF-1.7 ...', "in.pdf")
    Traceback (most recent call last):
    ...
    promptforge_dagster.core.formats.NotJsonlError: in.pdf is not JSONL: it looks like a PDF document
    """
    for bom, name, codec in _FOREIGN_BOMS:
        if head.startswith(bom):
            raise NotJsonlError(f"{source} is {name} text; JSONL must be UTF-8: convert it first, "
                                f"e.g. iconv -f {codec} -t UTF-8 IN > OUT")
    body = head[len(BOM):] if head.startswith(BOM) else head
    for magic, what in _MAGIC.items():
        if body.startswith(magic):
            raise NotJsonlError(f"{source} is not JSONL: it looks like {what}")
    if body[:2] in (b"{\x00", b"\x00{"):
        raise NotJsonlError(f"{source} looks like UTF-16 text without a byte-order mark; JSONL must be UTF-8: "
                            "convert it first, e.g. iconv -f UTF-16LE -t UTF-8 IN > OUT")
    lines = [ln for ln in body.split(b"\n") if ln.strip()]
    if len(body) >= SNIFF_BYTES and lines and not body.endswith(b"\n"):
        lines = lines[:-1] or lines  # the last line may be cut mid-way
    lines = lines[:SNIFF_LINES]
    if not lines:
        return
    for ln in lines:
        try:
            if isinstance(msgspec.json.decode(ln.rstrip(b"\r")), dict):
                return
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            continue
    preview = lines[0][:60].decode("utf-8", "replace")
    raise NotJsonlError(
        f"{source} is not JSONL: none of its first {len(lines)} lines is a JSON object "
        f"(line 1 starts {preview!r})"
    )


def line_id(line: RawLine) -> str | None:
    """The id of a raw line, or None when it has none (or is not valid JSON).

    >>> line_id(RawLine(0, 1, 0, b'{"custom_id": "x", "body": {}}', 30))
    'x'
    """
    try:
        ids = _id_decoder.decode(line.data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None  # the line becomes its own error record when parsed
    return extract_id({"custom_id": ids.custom_id} if ids.custom_id is not None else {"id": ids.id})


def hash32(text: str) -> int:
    """The 32-bit id hash of the first pass (collisions are looked at again later)."""
    return hash(text) & 0xFFFFFFFF


def hash64(text: str) -> int:
    """The 64-bit digest the second pass keys colliding ids by."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def scan_input(
    lines: Callable[[], Iterable[RawLine]],
    max_line_bytes: int | None = None,
    *,
    id_hash: Callable[[str], int] = hash32,
    input_generation: int | None = None,
    beat: Callable[[], Any] | None = None,
    beat_every: int = 4096,
) -> InputIndex:
    """Count prompt lines and find duplicate ids with two streaming passes at most.

    ``lines`` opens a fresh iteration of the input each time it is called; ``beat`` is
    called every ``beat_every`` lines (the attempt's heartbeat: a long scan keeps its lease).
    """
    seen = BitMap()
    collided = BitMap()
    count = 0
    for line in lines():
        count += 1
        if beat is not None and count % beat_every == 0:
            beat()
        if max_line_bytes is not None and line.length > max_line_bytes:
            continue
        lid = line_id(line)
        if lid is None:
            continue
        h = id_hash(lid)
        if h in seen:
            collided.add(h)
        else:
            seen.add(h)
    del seen
    duplicates = BitMap()
    if collided:
        first = BitMap64()
        for n, line in enumerate(lines(), 1):
            if beat is not None and n % beat_every == 0:
                beat()
            if max_line_bytes is not None and line.length > max_line_bytes:
                continue
            lid = line_id(line)
            if lid is None or id_hash(lid) not in collided:
                continue
            key = hash64(lid)
            if key in first:
                duplicates.add(line.ordinal)
            else:
                first.add(key)
    return InputIndex(prompt_lines=count, duplicates=duplicates, input_generation=input_generation)
