"""Pick the job registry implementation for a location."""

from __future__ import annotations

import os

from promptforge_dagster.core.job_registry import JobRegistry


def default_registry_path() -> str:
    from promptforge_dagster import settings

    return os.path.join(settings.home(os.environ), "registry.sqlite3")


def registry_for(uri: str | None) -> JobRegistry:
    """``sqlite:///PATH`` (the default, under ``$PROMPTFORGE_HOME``) or
    ``firestore://PROJECT[/DATABASE]``."""
    uri = uri or f"sqlite://{default_registry_path()}"
    if uri.startswith("sqlite://"):
        from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry

        return SQLiteRegistry(uri[len("sqlite://"):])
    if uri.startswith("firestore://"):
        from promptforge_dagster.clients.firestore_registry import FirestoreRegistry, firestore_client

        project, _, database = uri[len("firestore://"):].partition("/")
        if not project:
            raise ValueError(f"registry {uri!r} names no project (firestore://PROJECT[/DATABASE])")
        return FirestoreRegistry(firestore_client(project, database or None))
    raise ValueError(f"unknown registry {uri!r}: use sqlite:///PATH or firestore://PROJECT[/DATABASE]")
