"""Every object name under a job's OUTPUT, in one place.

::

    OUTPUT/parts/g<input generation>/<attempt>-<seq>.part.jsonl   immutable parts, per input version
    OUTPUT/checkpoint.pfck        the bitset checkpoint (core/checkpoint.py), names its input generation
    OUTPUT/scan.json              the input's duplicate scan, kept for resumes (bounded: a bitmap)
    OUTPUT/results.jsonl          one line per input line, OpenAI Batch output format
    OUTPUT/summary.json           counts, tokens, cost, wall time; names the epoch and results generation
    OUTPUT/rate.png               the rate plot

>>> out = OutputLayout("gs://b/out/job")
>>> out.parts(17), out.results
('gs://b/out/job/parts/g17/', 'gs://b/out/job/results.jsonl')
"""

from __future__ import annotations

from dataclasses import dataclass

from promptforge_dagster.core.storage import join

CHECKPOINT_NAME = "checkpoint.pfck"
SCAN_NAME = "scan.json"
RESULTS_NAME = "results.jsonl"
SUMMARY_NAME = "summary.json"
PLOT_NAME = "rate.png"


@dataclass(frozen=True)
class OutputLayout:
    """Names under one OUTPUT location (a local directory or ``gs://bucket/prefix``)."""

    output_uri: str

    def parts(self, input_generation: int | None = None) -> str:
        """The parts folder of one input version (``parts/`` alone: every version's, for
        ``--restart``), so parts of a replaced input are never read as this version's.

        >>> OutputLayout("out").parts(), OutputLayout("out").parts(3)
        ('out/parts/', 'out/parts/g3/')
        """
        base = join(self.output_uri, "parts")
        return (join(base, f"g{input_generation}") if input_generation is not None else base) + "/"

    @property
    def checkpoint(self) -> str:
        return join(self.output_uri, CHECKPOINT_NAME)

    @property
    def scan(self) -> str:
        return join(self.output_uri, SCAN_NAME)

    @property
    def results(self) -> str:
        return join(self.output_uri, RESULTS_NAME)

    @property
    def summary(self) -> str:
        return join(self.output_uri, SUMMARY_NAME)

    @property
    def plot(self) -> str:
        return join(self.output_uri, PLOT_NAME)

    def single_objects(self) -> tuple[str, ...]:
        """Every named object (not the parts), for ``--restart``."""
        return (self.results, self.summary, self.checkpoint, self.scan, self.plot)
