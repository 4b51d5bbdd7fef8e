"""Dagster resources: thin ConfigurableResource adapters over core and clients."""

from promptforge_dagster.resources.checkpoints import CheckpointResource
from promptforge_dagster.resources.job_registry import JobRegistryResource
from promptforge_dagster.resources.llm import LLMResource
from promptforge_dagster.resources.rate_limiter import RateLimiterResource
from promptforge_dagster.resources.storage import StorageResource

__all__ = ["CheckpointResource", "JobRegistryResource", "LLMResource", "RateLimiterResource", "StorageResource"]
