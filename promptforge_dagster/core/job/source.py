"""The input of one attempt: its bytes at one generation, gunzipped when compressed.

Every read names the generation the attempt pinned at open: an input replaced while the
job runs fails the read (:class:`JobFailed`, naming both generations' meaning) instead of
mixing two versions' lines. A gzip input is read as a stream of unknown length.
"""

from __future__ import annotations

from typing import Callable

from promptforge_dagster.core.gzip_source import GZIP_MAGIC, GzipSource, TruncatedGzip, is_gzip
from promptforge_dagster.core.job.errors import JobFailed
from promptforge_dagster.core.reader import PromptReader, ReadPosition
from promptforge_dagster.core.storage import PreconditionFailed, Storage


class InputSource:
    """``uri`` at ``generation`` (``size`` bytes as stored)."""

    def __init__(self, storage: Storage, uri: str, generation: int, size: int, *, chunk_bytes: int,
                 max_line_bytes: int) -> None:
        self.storage, self.uri, self.generation, self.size = storage, uri, generation, size
        self.chunk_bytes, self.max_line_bytes = chunk_bytes, max_line_bytes
        self.compressed = size >= len(GZIP_MAGIC) and is_gzip(self.read_stored(0, len(GZIP_MAGIC)))

    def read_stored(self, start: int, length: int) -> bytes:
        """Bytes as stored (compressed or not) of the pinned generation."""
        try:
            return self.storage.read_range(self.uri, start, length, self.generation)
        except PreconditionFailed as exc:
            raise JobFailed(
                f"input {self.uri} was replaced while the job ran (it started on generation "
                f"{self.generation}); a re-upload is a new job") from exc

    def plain(self) -> tuple[Callable[[int, int], bytes], int | None]:
        """The input's bytes (decompressed, for gzip: a stream of unknown length)."""
        if not self.compressed:
            return self.read_stored, self.size
        gz = GzipSource(self.read_stored, self.size)

        def read_plain(start: int, length: int) -> bytes:
            try:
                return gz.read_range(start, length)
            except TruncatedGzip as exc:
                raise JobFailed(f"input {self.uri}: {exc}") from exc

        return read_plain, None

    def lines(self, position: ReadPosition = ReadPosition()) -> PromptReader:
        source, size = self.plain()
        return PromptReader(source, size, start=position, chunk_bytes=self.chunk_bytes,
                            max_line_bytes=self.max_line_bytes)
