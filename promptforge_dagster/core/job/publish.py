"""What publishing a job writes and reads back, apart from the attempt that fences it.

* :func:`summary_document`: ``summary.json``, from what the attempt knows at the end;
* :func:`published_earlier`: an earlier attempt's publish of the same input version, when
  both files are there and belong together;
* :func:`commit_retrying`: a publish commit tried again after transient failures while the
  lease has time left;
* :func:`clear_output`: ``--restart``, everything a job wrote for an output folder.

The order and the fences (``publishing`` commit, lease check before ``results.jsonl`` is
finalized, conditional ``summary.json``) are the attempt's: ``attempt.py``.
"""

from __future__ import annotations

from typing import Any, Callable

import msgspec

from promptforge_dagster.core.job.heartbeat import EXPIRY_MARGIN_S, Heartbeat
from promptforge_dagster.core.job.layout import OutputLayout
from promptforge_dagster.core.job.spec import JobSpec
from promptforge_dagster.core.job_registry import LeaseLost
from promptforge_dagster.core.pipeline import JobStats
from promptforge_dagster.core.rate_chart import rate_chart
from promptforge_dagster.core.storage import Storage

# A publish commit that failed for a transient reason is tried again after this long,
# doubling up to the cap, while the lease has time left.
PUBLISH_COMMIT_FIRST_DELAY_S = 0.5
PUBLISH_COMMIT_MAX_DELAY_S = 8.0


def summary_document(*, spec: JobSpec, generation: int, job_id: str, epoch: int | None, layout: OutputLayout,
                     results_generation: int, assembled: dict[str, Any], stats: JobStats, wall_s: float,
                     lanes: Any, plot: bool, points: list) -> dict[str, Any]:
    """``summary.json``: the input version, the results it describes, the whole job's
    counters (every attempt's), the rate lanes and the rate chart as text."""
    completed = stats.done - stats.input_errors  # requests the provider answered for good
    doc = {
        "input": spec.input_uri,
        "input_generation": generation,
        "job_id": job_id,
        "epoch": epoch,
        "output": layout.results,
        "results_generation": results_generation,
        "model": spec.defaults.model,
        **assembled,
        "skipped_as_done": stats.skipped,
        "input_errors": stats.input_errors,
        "rate_limited_429": stats.rate_limited + stats.earlier.get("rate_limited", 0),
        "retries": stats.retries + stats.earlier.get("retries", 0),
        "attempts": stats.earlier.get("attempts", 0) + 1,  # that reached a checkpoint, this one included
        "wall_time_s": round(wall_s, 3),
        "achieved_rpm": round(completed * 60.0 / wall_s, 1) if wall_s > 0 else None,
        "rate_lanes": lanes.snapshot(),
    }
    if lanes.groups:  # which deployment served each group, and which were dropped and why
        doc["deployments"] = {name: {"deployments": [d.id for d in g.deployments], "dropped": dict(g.dropped)}
                              for name, g in lanes.groups.items()}
    if plot:
        doc["rate_plot"] = layout.plot
    doc["rate_chart"] = rate_chart(points)  # this attempt's, as text any viewer shows
    return doc


def published_earlier(storage: Storage, layout: OutputLayout, generation: int) -> dict[str, Any] | None:
    """The summary of an earlier attempt's publish of this input version, if both files are
    there and belong together (the summary names this generation and the results' generation)."""
    results = storage.stat(layout.results)
    if results is None or storage.stat(layout.summary) is None:
        return None
    try:
        summary = msgspec.json.decode(storage.read_bytes(layout.summary))
    except msgspec.DecodeError:
        return None
    if (summary.get("input_generation") != generation
            or summary.get("results_generation") not in (None, results.generation)):
        return None
    return {**summary, "skipped_as_done": summary.get("prompts") or 0, "already_published": True}


def commit_retrying(commit: Callable[[], None], heartbeat: Heartbeat | None, *, wall_clock: Callable[[], float],
                    sleep: Callable[[float], None]) -> None:
    """``commit()``, tried again after transient failures while the lease has time left (the
    heartbeat's budget); :class:`LeaseLost` at once."""
    delay = PUBLISH_COMMIT_FIRST_DELAY_S
    while True:
        try:
            commit()
            return
        except LeaseLost:
            raise
        except Exception:
            spent = wall_clock() - heartbeat.last_renewed if heartbeat is not None else float("inf")
            if heartbeat is None or spent + delay >= heartbeat.lease_ttl_s - EXPIRY_MARGIN_S:
                raise
            sleep(delay)
            delay = min(delay * 2, PUBLISH_COMMIT_MAX_DELAY_S)


def clear_output(storage: Storage, output_uri: str) -> None:
    """Discard earlier progress (``--restart``): parts of every input version, checkpoint,
    scan, results, summary and plot."""
    layout = OutputLayout(output_uri)
    for path in storage.list(layout.parts()):
        storage.delete(path)
    for path in layout.single_objects():
        storage.delete(path)
