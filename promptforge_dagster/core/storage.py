"""The storage interface PromptForge reads inputs from and writes results to.

One protocol, two implementations outside ``core`` (local directory, GCS). Paths are
whole locations (``/data/out/parts/x.jsonl`` or ``gs://bucket/out/parts/x.jsonl``);
:func:`join` builds them the same way for both.

>>> join("gs://b/out/", "parts", "p1.jsonl")
'gs://b/out/parts/p1.jsonl'
"""

from __future__ import annotations

from dataclasses import dataclass
import random
import time
from typing import Any, Callable, Protocol

from promptforge_dagster.core.doubling import doubled


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Size in bytes and generation (GCS object generation; local: mtime in ns)."""

    size: int
    generation: int


class PreconditionFailed(Exception):
    """A conditional write lost: the object changed since the generation the writer knew."""


class TransientStorageError(Exception):
    """A storage call failed in a way worth retrying (503, 429, timeout, reset)."""


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

    def write_stream(self, path: str, fill: Callable[[Callable[[bytes], None]], None], *,
                     if_generation_match: int | None = None) -> int:
        """Write a large object from ``fill(write)`` as it is produced (no whole-object
        staging in memory or on disk); the object appears atomically when ``fill``
        returns, under the same precondition rule as :meth:`write_bytes`. A retry calls
        ``fill`` again from the start. Returns the new generation."""

    def list(self, prefix: str) -> list[str]:
        """Paths under ``prefix``, sorted."""

    def list_objects(self, prefix: str) -> list[tuple[str, ObjectInfo]]:
        """Paths under ``prefix`` with their size and generation, sorted (one listing call
        where the backend allows: the sensors' fallback scan of the input prefix)."""

    def delete(self, path: str) -> None:
        """Remove ``path``; absent is fine."""

    def mark_finished(self, paths: list[str], when: float) -> None:
        """Stamp objects as finished working state (a published job's parts, checkpoint,
        scan): GCS sets their Custom-Time, which the bucket's lifecycle rule counts from.
        Objects never stamped (a job that has not published) are never deleted by it.
        Local storage has no lifecycle: nothing to stamp."""


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


# A storage call keeps retrying for at most this long: half the default lease (120 s), so
# an outage surfaces while the attempt still owns its job and can stop cleanly.
STORAGE_RETRY_BUDGET_S = 60.0
# Each call's own network timeout; the clients' built-in retries are off (this is the one layer).
STORAGE_CALL_TIMEOUT_S = 30.0


class RetryingStorage:
    """The one retry layer over storage: retries :class:`TransientStorageError` with
    capped, jittered exponential backoff, for at most ``budget_s`` per call (the clients'
    own retry policies are switched off, so an outage surfaces in bounded time).

    Conditional writes are safe to retry: a write that landed but whose reply was lost
    fails its retry with :class:`PreconditionFailed`, and the commit protocol reads the
    object back to tell its own write from another attempt's.

    >>> calls = []
    >>> class Flaky:
    ...     def read_bytes(self, path):
    ...         calls.append(path)
    ...         if len(calls) < 3:
    ...             raise TransientStorageError("503")
    ...         return b"ok"
    >>> RetryingStorage(Flaky(), sleep=lambda s: None).read_bytes("p"), len(calls)
    (b'ok', 3)
    >>> t = [0.0]
    >>> class Down:
    ...     def stat(self, path):
    ...         t[0] += 20.0
    ...         raise TransientStorageError("503")
    >>> RetryingStorage(Down(), sleep=lambda s: None, clock=lambda: t[0], budget_s=60).stat("p")
    Traceback (most recent call last):
    ...
    promptforge_dagster.core.storage.TransientStorageError: 503 (still failing after 3 tries in 60 s)
    """

    def __init__(self, inner: Any, *, attempts: int = 8, base_s: float = 0.2, cap_s: float = 10.0,
                 budget_s: float = STORAGE_RETRY_BUDGET_S, sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.attempts = attempts
        self.base_s, self.cap_s = base_s, cap_s
        self.budget_s = budget_s
        self._sleep, self._rng, self._clock = sleep, rng, clock
        self.retries = 0

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self.inner, name)
        started = self._clock()
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(*args, **kwargs)
            except TransientStorageError as exc:
                cap = doubled(self.base_s, attempt - 1, cap=self.cap_s)
                delay = cap / 2 + self._rng() * cap / 2
                spent = self._clock() - started
                if attempt == self.attempts or spent + delay > self.budget_s:
                    raise TransientStorageError(
                        f"{exc} (still failing after {attempt} tries in {spent:.0f} s)") from exc
                self.retries += 1
                self._sleep(delay)
        raise AssertionError("unreachable")

    def stat(self, path: str) -> ObjectInfo | None:
        return self._call("stat", path)

    def read_range(self, path: str, start: int, length: int, generation: int | None = None) -> bytes:
        return self._call("read_range", path, start, length, generation)

    def read_bytes(self, path: str) -> bytes:
        return self._call("read_bytes", path)

    def write_bytes(self, path: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        return self._call("write_bytes", path, data, if_generation_match=if_generation_match)

    def write_stream(self, path: str, fill: Callable[[Callable[[bytes], None]], None], *,
                     if_generation_match: int | None = None) -> int:
        return self._call("write_stream", path, fill, if_generation_match=if_generation_match)

    def list(self, prefix: str) -> list[str]:
        return self._call("list", prefix)

    def list_objects(self, prefix: str) -> list[tuple[str, ObjectInfo]]:
        return self._call("list_objects", prefix)

    def delete(self, path: str) -> None:
        return self._call("delete", path)

    def mark_finished(self, paths: list[str], when: float) -> None:
        return self._call("mark_finished", paths, when)
