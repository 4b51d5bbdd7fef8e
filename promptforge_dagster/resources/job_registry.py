"""The job registry resource: SQLite locally, Firestore on GCP."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from promptforge_dagster.core.job_registry import JobRegistry


class JobRegistryResource(dg.ConfigurableResource):
    """``sqlite:///PATH`` or ``firestore://PROJECT[/DATABASE]``."""

    uri: str
    _registry: JobRegistry | None = PrivateAttr(default=None)

    def registry(self) -> JobRegistry:
        if self._registry is None:
            from promptforge_dagster.clients.registry_for import registry_for

            self._registry = registry_for(self.uri)
        return self._registry
