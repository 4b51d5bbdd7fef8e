"""The storage interface PromptForge reads inputs from and writes results to.

One protocol, two implementations outside ``core`` (local directory, GCS). Paths are
whole locations (``/data/out/parts/x.jsonl`` or ``gs://bucket/out/parts/x.jsonl``);
:func:`join` builds them the same way for both.

>>> join("gs://b/out/", "parts", "p1.jsonl")
'gs://b/out/parts/p1.jsonl'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Size in bytes and generation (GCS object generation; local: mtime in ns)."""

    size: int
    generation: int


class PreconditionFailed(Exception):
    """A conditional write lost: the object changed since the generation the writer knew."""


class Storage(Protocol):
    """Whole-object reads and atomic writes; enough for inputs, parts and checkpoints."""

    def stat(self, path: str) -> ObjectInfo | None:
        """Size and generation, or None when there is no such object."""

    def read_range(self, path: str, start: int, length: int, generation: int | None = None) -> bytes:
        """Bytes ``[start, start + length)``; with ``generation``, of exactly that version."""

    def read_bytes(self, path: str) -> bytes:
        """The whole object."""

    def write_bytes(self, path: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        """Write atomically (readers see the old or the new object, never a mix); return
        the new generation. ``if_generation_match=0`` means "only if absent"."""

    def upload_file(self, path: str, local_file: str) -> None:
        """Write a large local file to ``path`` atomically."""

    def list(self, prefix: str) -> list[str]:
        """Paths under ``prefix``, sorted."""

    def delete(self, path: str) -> None:
        """Remove ``path``; absent is fine."""


def join(base: str, *names: str) -> str:
    """Join a location and names with single slashes."""
    out = base.rstrip("/")
    for name in names:
        out += "/" + name.strip("/")
    return out


def is_gcs(path: str) -> bool:
    """True for ``gs://`` locations.

    >>> is_gcs("gs://b/k"), is_gcs("/tmp/k")
    (True, False)
    """
    return path.startswith("gs://")
