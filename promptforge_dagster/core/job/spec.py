"""What a job is (:class:`JobSpec`) and what it produced (:class:`JobResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from promptforge_dagster.core.formats import JobDefaults
from promptforge_dagster.core.job.layout import OutputLayout
from promptforge_dagster.core.pipeline_config import JobStats, PipelineConfig
from promptforge_dagster.core.reader import DEFAULT_CHUNK_BYTES
from promptforge_dagster.core.request_policy import RequestPolicy


@dataclass
class JobSpec:
    """What to run: input, output and the job-level defaults.

    >>> JobSpec("in.jsonl", "out", JobDefaults(model="openai/gpt-4o-mini")).max_line_bytes
    2097152
    """

    input_uri: str
    output_uri: str
    defaults: JobDefaults
    job_id: str | None = None
    max_line_bytes: int = 2 * 1024 * 1024
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    checkpoint_interval_s: float = 30.0
    lease_ttl_s: float = 120.0
    heartbeat_s: float = 10.0
    policy: RequestPolicy | None = None  # what a line may ask for (default: the job model's provider only)
    input_generation: int | None = None  # the input version this job is for (a Dagster job's, from its record)
    rerun_codes: tuple[str, ...] = ()  # re-send only prompts whose latest result failed with one of these
    share_lanes: bool = False  # publish and read learned lane state through the registry

    @property
    def layout(self) -> OutputLayout:
        return OutputLayout(self.output_uri)


def default_job_id(input_uri: str, generation: int, output_uri: str) -> str:
    """A CLI job's id: the input version *and* the output, so one input run to two
    outputs is two jobs (never one job fencing itself).

    >>> default_job_id("in.jsonl", 7, "out/a") == default_job_id("in.jsonl", 7, "out/b")
    False
    """
    return f"{input_uri}#{generation}->{output_uri}"


@dataclass
class JobResult:
    """Where the results are and what the job did."""

    results_uri: str
    summary_uri: str
    summary: dict[str, Any]
    stats: JobStats
