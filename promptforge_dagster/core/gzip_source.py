"""A gzip-compressed input read as a stream: the decompressed bytes as a ``ReadRange``.

``.jsonl.gz`` files cannot be read at an offset, so :class:`GzipSource` decompresses
forward in bounded steps and keeps only a small window; reading at an earlier offset
starts over from the top. Offsets (and so checkpoints) are in decompressed bytes: a
resumed job decompresses up to its read position again and sends nothing twice. Memory
is bounded by the chunk and window sizes, whatever the file's size or compression ratio.
Concatenated members (``cat a.gz b.gz``) are read as one stream, as ``gzip -d`` does.

>>> import gzip
>>> raw = gzip.compress(b'{"id": 1}\\n{"id": 2}\\n')
>>> src = GzipSource(lambda s, n: raw[s:s + n], len(raw), chunk_bytes=7)
>>> src.read_range(10, 9), src.read_range(0, 9), src.read_range(20, 5)
(b'{"id": 2}', b'{"id": 1}', b'')
"""

from __future__ import annotations

import zlib
from typing import Callable

GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 256 * 1024  # compressed bytes fetched per read: few round trips to GCS, little memory
OUT_STEP = 1024 * 1024  # decompressed bytes produced per step: bounds memory against a zip bomb

ReadRange = Callable[[int, int], bytes]


class TruncatedGzip(ValueError):
    """The gzip stream ends mid-member: the upload is incomplete."""


def is_gzip(head: bytes) -> bool:
    """Whether bytes start like a gzip stream.

    >>> is_gzip(b"\\x1f\\x8b\\x08"), is_gzip(b'{"id": 1}')
    (True, False)
    """
    return head.startswith(GZIP_MAGIC)


class GzipSource:
    """Decompressed reads over a compressed ``read_range(start, length)`` of ``size`` bytes.

    ``read_range`` returns fewer bytes than asked only at the end of the stream.
    """

    def __init__(self, read_range: ReadRange, size: int, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._read = read_range
        self._size = size
        self._chunk = chunk_bytes
        self._reset()

    def _reset(self) -> None:
        self._inflater = zlib.decompressobj(wbits=31)
        self._members = 0  # complete members decompressed so far
        self._fed = False  # the current member has been given input
        self._tail = b""  # compressed bytes given to zlib but not yet consumed
        self._cpos = 0  # next compressed offset to fetch
        self._window = bytearray()  # decompressed bytes from _start on
        self._start = 0

    def read_range(self, start: int, length: int) -> bytes:
        if start < self._start:
            self._reset()
        drop = min(start - self._start, len(self._window))
        del self._window[:drop]
        self._start += drop
        while self._start + len(self._window) < start + length:
            piece = self._produce()
            if not piece:
                break
            self._window += piece
            if self._start < start:  # skipping forward: keep only from start on
                cut = min(start - self._start, len(self._window))
                del self._window[:cut]
                self._start += cut
        offset = start - self._start
        return bytes(self._window[offset:offset + length]) if offset >= 0 else b""

    def _produce(self) -> bytes:
        """The next decompressed bytes (at most OUT_STEP); b"" at the end of the stream."""
        while True:
            if self._tail:
                data, self._tail = self._tail, b""
            elif self._cpos < self._size:
                data = self._read(self._cpos, min(self._chunk, self._size - self._cpos))
                if not data:
                    raise EOFError(f"compressed source ended at byte {self._cpos}, expected {self._size}")
                self._cpos += len(data)
            else:
                if self._fed and not self._inflater.eof:
                    raise TruncatedGzip("the gzip stream ends mid-way (an incomplete upload?)")
                return b""
            try:
                out = self._inflater.decompress(data, OUT_STEP)
            except zlib.error as exc:
                if self._members and not self._fed:
                    self._cpos = self._size  # trailing bytes after the last member are ignored, as gzip -d does
                    return b""
                raise TruncatedGzip(f"the gzip stream is corrupt ({exc})") from None
            self._fed = True
            self._tail = self._inflater.unconsumed_tail
            if self._inflater.eof:
                self._tail = self._inflater.unused_data + self._tail
                self._inflater = zlib.decompressobj(wbits=31)
                self._members += 1
                self._fed = False
            if out:
                return out
