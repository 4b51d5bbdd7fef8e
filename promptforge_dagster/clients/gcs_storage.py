"""GCS storage over google-cloud-storage, with generation preconditions.

Against an emulator (``STORAGE_EMULATOR_HOST`` set) the client is built with anonymous
credentials, so nothing ever reaches for cloud credentials or the metadata server.
"""

from __future__ import annotations

import functools
import os

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from promptforge_dagster.core.storage import (
    STORAGE_CALL_TIMEOUT_S, ObjectInfo, PreconditionFailed, TransientStorageError,
)

# RetryingStorage (core/storage.py) is the one retry layer: every client call here passes
# retry=None, so an outage is not retried twice over (the client's own policy retries
# for up to 120 s per call).
_ONCE = {"retry": None, "timeout": STORAGE_CALL_TIMEOUT_S}
# Streamed uploads go up in resumable chunks of this size (a multiple of 256 KiB, as the
# JSON API requires): memory stays one chunk whatever the object's size.
STREAM_CHUNK_BYTES = 8 * 1024 * 1024
# Metadata patches in flight when stamping a published job's working state (one per part).
MARK_FINISHED_THREADS = 16

_TRANSIENT = (gexc.ServiceUnavailable, gexc.InternalServerError, gexc.TooManyRequests, gexc.GatewayTimeout,
              gexc.BadGateway, gexc.RetryError, requests.ConnectionError, requests.Timeout,
              auth_exc.TransportError, ConnectionError, TimeoutError)


def _transient(fn):
    """Errors worth retrying become TransientStorageError, naming the object."""

    @functools.wraps(fn)
    def call(self, path, *args, **kwargs):
        try:
            return fn(self, path, *args, **kwargs)
        except _TRANSIENT as exc:
            raise TransientStorageError(f"{path}: {type(exc).__name__}: {exc}") from exc

    return call


def split_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/key`` -> ``("bucket", "key")``."""
    if not uri.startswith("gs://"):
        raise ValueError(f"not a gs:// URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri}")
    return bucket, key


def make_client(project: str | None = None) -> storage.Client:
    """A storage client; anonymous against an emulator, default credentials otherwise."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=project or "promptforge-local", credentials=AnonymousCredentials())
    return storage.Client(project=project)


class GcsStorage:
    """:class:`~promptforge_dagster.core.storage.Storage` over Google Cloud Storage."""

    def __init__(self, client: storage.Client | None = None) -> None:
        self._client = client or make_client()

    def _blob(self, uri: str, generation: int | None = None) -> storage.Blob:
        bucket, key = split_uri(uri)
        return self._client.bucket(bucket).blob(key, generation=generation)

    @_transient
    def stat(self, path: str) -> ObjectInfo | None:
        bucket, key = split_uri(path)
        blob = self._client.bucket(bucket).get_blob(key, **_ONCE)
        if blob is None:
            return None
        return ObjectInfo(size=int(blob.size or 0), generation=int(blob.generation or 0))

    @_transient
    def read_range(self, path: str, start: int, length: int, generation: int | None = None) -> bytes:
        if length <= 0:
            return b""
        try:
            return self._blob(path, generation).download_as_bytes(start=start, end=start + length - 1, raw_download=True,
                                                                 **_ONCE)
        except gexc.NotFound as exc:
            if generation is not None:
                raise PreconditionFailed(f"{path}: generation {generation} no longer exists") from exc
            raise

    @_transient
    def read_bytes(self, path: str) -> bytes:
        return self._blob(path).download_as_bytes(**_ONCE)

    @_transient
    def write_bytes(self, path: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        blob = self._blob(path)
        try:
            blob.upload_from_string(data, content_type="application/octet-stream",
                                    if_generation_match=if_generation_match, **_ONCE)
        except gexc.PreconditionFailed as exc:
            raise PreconditionFailed(f"{path}: generation is not {if_generation_match}") from exc
        return int(blob.generation or 0)

    @_transient
    def write_stream(self, path: str, fill, *, if_generation_match: int | None = None) -> int:
        """A resumable upload fed as ``fill`` produces; the object appears at finalize (a
        failing ``fill`` cancels the upload: the old object stays whole).

        GCS checks ``if_generation_match`` when the upload is finalized; the check before
        starting fails early (and is the only check fake-gcs-server makes: it ignores
        preconditions on resumable uploads)."""
        if if_generation_match is not None:
            current = self.stat(path)
            if (current.generation if current else 0) != if_generation_match:
                raise PreconditionFailed(f"{path}: generation is not {if_generation_match}")
        blob = self._blob(path)
        blob.chunk_size = STREAM_CHUNK_BYTES
        try:
            with blob.open("wb", content_type="application/jsonl", if_generation_match=if_generation_match,
                           retry=None, timeout=STORAGE_CALL_TIMEOUT_S) as f:
                fill(f.write)
        except gexc.PreconditionFailed as exc:
            raise PreconditionFailed(f"{path}: generation is not {if_generation_match}") from exc
        blob.reload(**_ONCE)
        return int(blob.generation or 0)

    @_transient
    def list(self, prefix: str) -> list[str]:
        bucket, key = split_uri(prefix)
        return sorted(f"gs://{bucket}/{b.name}" for b in self._client.list_blobs(bucket, prefix=key, **_ONCE))

    @_transient
    def list_objects(self, prefix: str) -> list[tuple[str, ObjectInfo]]:
        bucket, key = split_uri(prefix)
        return sorted((f"gs://{bucket}/{b.name}", ObjectInfo(int(b.size or 0), int(b.generation or 0)))
                      for b in self._client.list_blobs(bucket, prefix=key, **_ONCE))

    def mark_finished(self, paths: list[str], when: float) -> None:
        """Set Custom-Time on each object (in parallel: a large job has thousands of parts)."""
        import datetime as dt
        from concurrent.futures import ThreadPoolExecutor

        stamp = dt.datetime.fromtimestamp(when, tz=dt.timezone.utc)

        @_transient
        def one(self, path: str) -> None:
            blob = self._blob(path)
            blob.custom_time = stamp
            try:
                blob.patch(**_ONCE)
            except gexc.NotFound:
                pass  # gone already

        with ThreadPoolExecutor(max_workers=MARK_FINISHED_THREADS) as pool:
            list(pool.map(lambda p: one(self, p), paths))

    @_transient
    def delete(self, path: str) -> None:
        try:
            self._blob(path).delete(**_ONCE)
        except gexc.NotFound:
            pass
