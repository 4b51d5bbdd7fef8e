"""Pick the storage implementation for a location."""

from __future__ import annotations

from promptforge_dagster.core.storage import RetryingStorage, Storage, is_gcs


def storage_for(path: str) -> Storage:
    """GCS for ``gs://`` locations, the local filesystem otherwise."""
    if is_gcs(path):
        from promptforge_dagster.clients.gcs_storage import GcsStorage

        return RetryingStorage(GcsStorage())
    from promptforge_dagster.clients.local_storage import LocalStorage

    return LocalStorage()
