"""The bitset-checkpoint resource: how often progress is committed, and the lease."""

from __future__ import annotations

import dagster as dg

from promptforge_dagster.core.checkpoint import BitsetCheckpoint, CorruptCheckpoint
from promptforge_dagster.core.job.layout import CHECKPOINT_NAME
from promptforge_dagster.core.storage import Storage, join


class CheckpointResource(dg.ConfigurableResource):
    """A retried run resumes from the last committed checkpoint; ``interval_s`` bounds
    how often it is committed (parts written since are reconciled on resume, so nothing
    is lost either way). ``lease_ttl_s`` is how long a silent owner keeps the job;
    ``heartbeat_s`` how often a live one renews it."""

    interval_s: float = 30.0
    lease_ttl_s: float = 120.0
    heartbeat_s: float = 10.0

    def read(self, storage: Storage, output_uri: str) -> BitsetCheckpoint | None:
        """The committed checkpoint of a job's output, if any (for progress and sensors)."""
        path = join(output_uri, CHECKPOINT_NAME)
        if storage.stat(path) is None:
            return None
        try:
            return BitsetCheckpoint.decode(storage.read_bytes(path))
        except CorruptCheckpoint:
            return None
