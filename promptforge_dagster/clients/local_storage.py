"""Local-directory storage: the embedded default's stand-in for GCS.

Writes go to a temporary file in the same directory and are renamed into place, so a
reader (or a crash) sees the old object or the new one, never half of one.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager

from promptforge_dagster.core.storage import ObjectInfo, PreconditionFailed


class LocalStorage:
    """:class:`~promptforge_dagster.core.storage.Storage` over the local filesystem.

    The generation is the file's mtime in nanoseconds; conditional writes hold an
    exclusive lock on a sidecar lock file for the compare-and-swap.
    """

    def stat(self, path: str) -> ObjectInfo | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return ObjectInfo(size=st.st_size, generation=st.st_mtime_ns)

    def read_range(self, path: str, start: int, length: int, generation: int | None = None) -> bytes:
        with open(path, "rb") as f:
            if generation is not None and os.fstat(f.fileno()).st_mtime_ns != generation:
                raise PreconditionFailed(f"{path} changed since generation {generation}")
            f.seek(start)
            return f.read(length)

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def write_bytes(self, path: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        def fill(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(data)

        self._replace(path, fill, if_generation_match)
        info = self.stat(path)
        return info.generation if info else 0

    def write_stream(self, path: str, fill, *, if_generation_match: int | None = None) -> int:
        """``fill(write)`` streams into a temporary file beside ``path`` (the output's own
        disk, never /tmp), renamed into place when complete."""
        def into(tmp: str) -> None:
            with open(tmp, "wb", buffering=1024 * 1024) as f:
                fill(f.write)

        self._replace(path, into, if_generation_match)
        info = self.stat(path)
        return info.generation if info else 0

    def _replace(self, path: str, fill, if_generation_match: int | None) -> None:
        """Fill a temporary file beside ``path``, make it durable, rename it into place."""
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        os.close(fd)
        try:
            fill(tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            if if_generation_match == 0:
                try:  # create-only: a hard link fails atomically if the name exists; no lock file
                    os.link(tmp, path)
                except FileExistsError:
                    raise PreconditionFailed(f"{path}: exists, expected it absent") from None
                os.unlink(tmp)
                tmp = ""
                _fsync_dir(directory)
                return
            with self._guard(path, if_generation_match):
                if if_generation_match is not None:
                    current = self.stat(path)
                    have = 0 if current is None else current.generation
                    if have != if_generation_match:
                        raise PreconditionFailed(f"{path}: generation is {have}, expected {if_generation_match}")
                os.replace(tmp, path)
                tmp = ""
        finally:
            if tmp:
                os.unlink(tmp)
        _fsync_dir(directory)

    def list(self, prefix: str) -> list[str]:
        base = prefix if prefix.endswith("/") or os.path.isdir(prefix) else os.path.dirname(prefix)
        if not os.path.isdir(base):
            return []
        out = []
        for root, _dirs, files in os.walk(base):
            for name in files:
                full = os.path.join(root, name)
                if full.startswith(prefix.rstrip("/")) and not name.startswith(".tmp-") and not name.endswith(".lock"):
                    out.append(full)
        return sorted(out)

    def list_objects(self, prefix: str) -> list[tuple[str, ObjectInfo]]:
        out = []
        for path in self.list(prefix):
            info = self.stat(path)
            if info is not None:
                out.append((path, info))
        return out

    def delete(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def mark_finished(self, paths: list[str], when: float) -> None:
        """Local folders have no lifecycle rules: nothing is ever deleted behind a job's back."""

    @contextmanager
    def _guard(self, path: str, if_generation_match: int | None):
        if if_generation_match is None:
            yield
            return
        with open(path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
