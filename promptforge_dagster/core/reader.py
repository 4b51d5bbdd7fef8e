"""Streaming JSONL reader over any byte source, in bounded chunks, at flat memory.

The source is a ``read_range(start, length) -> bytes`` function, so the same reader
serves local files, pinned GCS object generations, decompressed ``.jsonl.gz`` streams
(``size`` None: read until a read comes back empty) and in-memory test data. Each
non-blank line comes out as a :class:`RawLine` with its ordinal (index among non-blank
lines), physical line number and byte offset; a resumed job starts at a saved
``ReadPosition`` instead of the top of the file.

>>> data = b'{"id": 1}\\r\\n\\n{"id": 2}\\n'
>>> [(l.ordinal, l.line_no, l.offset, l.data) for l in PromptReader(lambda s, n: data[s:s + n], len(data))]
[(0, 1, 0, b'{"id": 1}'), (1, 3, 12, b'{"id": 2}')]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Iterator

BOM = b"\xef\xbb\xbf"
DEFAULT_CHUNK_BYTES = 1024 * 1024

ReadRange = Callable[[int, int], bytes]


@dataclass(frozen=True, slots=True)
class ReadPosition:
    """Where to start reading: byte offset of a line start, its ordinal and line number.

    >>> ReadPosition().offset
    0
    """

    offset: int = 0
    ordinal: int = 0
    line_no: int = 1


@dataclass(frozen=True, slots=True)
class RawLine:
    """One non-blank input line. ``data`` is cut to ``max_line_bytes``; ``length`` is the true size.

    >>> RawLine(0, 1, 0, b"{}", 2).length
    2
    """

    ordinal: int
    line_no: int
    offset: int
    data: bytes
    length: int


class PromptReader:
    """Iterates the non-blank lines of a JSONL byte source in bounded chunks.

    Memory is bounded by ``chunk_bytes + max_line_bytes`` whatever the file size: a line
    longer than the cap is not buffered whole, only its first ``max_line_bytes``.

    >>> src = b"a\\nbb\\n"
    >>> [l.data for l in PromptReader(lambda s, n: src[s:s + n], len(src), chunk_bytes=1)]
    [b'a', b'bb']
    """

    def __init__(
        self,
        read_range: ReadRange,
        size: int | None,
        *,
        start: ReadPosition = ReadPosition(),
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_line_bytes: int = 2 * 1024 * 1024,
    ) -> None:
        if chunk_bytes <= 0:
            raise ValueError("chunk_bytes must be positive")
        self._read = read_range
        self._size = size
        self._start = start
        self._chunk = chunk_bytes
        self._cap = max_line_bytes

    def __iter__(self) -> Iterator[RawLine]:
        size, cap, read = self._size, self._cap, self._read
        pos = self._start.offset
        ordinal, line_no = self._start.ordinal, self._start.line_no
        if pos == 0 and (size is None or size >= len(BOM)) and read(0, len(BOM)) == BOM:
            pos = len(BOM)
        line_start = pos
        partial = bytearray()  # the current line's head when it spans chunks (at most cap + 1 bytes)
        length = 0  # true length of the current partial line
        while size is None or pos < size:
            chunk = read(pos, self._chunk if size is None else min(self._chunk, size - pos))
            if not chunk:
                if size is None:  # a stream of unknown length (a decompressed input) ends here
                    break
                raise EOFError(f"source ended at byte {pos}, expected {size} bytes")
            base = pos
            pos += len(chunk)
            i, n = 0, len(chunk)
            while i < n:
                nl = chunk.find(b"\n", i)
                end = n if nl < 0 else nl
                if length == 0 and nl >= 0:
                    line, line_len = chunk[i:end], end - i
                else:
                    room = cap + 1 - len(partial)
                    if room > 0:
                        partial += chunk[i:min(end, i + room)]
                    length += end - i
                    if nl < 0:
                        break
                    line, line_len = bytes(partial), length
                    partial.clear()
                    length = 0
                out = _emit(line, ordinal, line_no, line_start, line_len, cap)
                if out is not None:
                    yield out
                    ordinal += 1
                line_no += 1
                line_start = base + nl + 1
                i = nl + 1
        if length:
            out = _emit(bytes(partial), ordinal, line_no, line_start, length, cap)
            if out is not None:
                yield out


def _emit(line: bytes, ordinal: int, line_no: int, offset: int, length: int, cap: int) -> RawLine | None:
    if line.endswith(b"\r"):
        line = line[:-1]
        length -= 1
    if not line.strip():
        return None
    if len(line) > cap:
        line = line[:cap]
    return RawLine(ordinal, line_no, offset, line, length)


async def read_in_batches(lines: Iterable[RawLine], batch_size: int,
                          offload: Callable[..., Awaitable[Any]]) -> AsyncIterator[RawLine]:
    """Yield ``lines``, reading ``batch_size`` at a time through ``offload`` (off the event
    loop: a read may block on storage), so the loop never waits on a slow read.

    >>> import asyncio
    >>> async def offload(f, *a):
    ...     return f(*a)
    >>> async def all_of(lines):
    ...     return [x async for x in read_in_batches(lines, 2, offload)]
    >>> asyncio.run(all_of(iter("abcde")))
    ['a', 'b', 'c', 'd', 'e']
    """
    it = iter(lines)

    def next_batch() -> list[RawLine]:
        out = []
        for line in it:
            out.append(line)
            if len(out) >= batch_size:
                break
        return out

    while True:
        batch = await offload(next_batch)
        if not batch:
            return
        for line in batch:
            yield line
