"""Learned limits shared across jobs through the job registry.

Several jobs on one account and model (one lane) must not each learn the whole ceiling:
together they would overshoot it. Each job paces at its share; the registry holds the
account-level state (this job's learned state times the number of jobs on the lane):

* **warm start**: a new job starts from the account state divided by the jobs now on the
  lane (itself included), not in slow start;
* **fair share**: when jobs join or leave, each rescales by ``n_before / n_now``, so the
  shares keep summing to the account's ceiling;
* **staleness**: state older than ``stale_after_s`` is ignored (back to discovery); a dead
  job stops renewing its membership and drops out after ``ttl_s``;
* **company**: each controller is told how many jobs pace on its lane (``shared_by``): the
  others' load refuses what its own rate does not explain, so it looks for no busy pool.

>>> to_account({"rate": 5.0, "ceiling_rpm": 300.0, "ceiling_tpm": None}, members=4)["ceiling_rpm"]
1200.0
>>> to_share({"rate": 20.0, "ceiling_rpm": 1200.0}, members=3)["ceiling_rpm"]
400.0
"""

from __future__ import annotations

from typing import Any, Callable

from promptforge_dagster.core.job_registry import JobRegistry
from promptforge_dagster.core.rate_lanes import RateLanes

_SCALED = ("rate", "ceiling_rpm", "ceiling_tpm", "header_rpm", "header_tpm")


def _scale(state: dict[str, Any], factor: float) -> dict[str, Any]:
    out = dict(state)
    for k in _SCALED:
        if out.get(k):
            out[k] = out[k] * factor
    return out


def to_account(state: dict[str, Any], members: int) -> dict[str, Any]:
    return _scale(state, float(max(1, members)))


def to_share(state: dict[str, Any], members: int) -> dict[str, Any]:
    return _scale(state, 1.0 / max(1, members))


class LaneSync:
    """Keeps one job's lane controllers in step with the shared lane records."""

    def __init__(self, registry: JobRegistry, job_id: str, lanes: RateLanes, *, ttl_s: float = 30.0,
                 stale_after_s: float = 900.0, clock: Callable[[], float]) -> None:
        self.registry = registry
        self.job_id = job_id
        self.lanes = lanes
        self.ttl_s = ttl_s
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._members: dict[str, int] = {}
        self._measured: dict[str, int] = {}  # each lane controller's measurement count at the last sync
        lanes.warm_lookup = self.warm_state

    def warm_state(self, lane: str) -> dict[str, Any] | None:
        """Join the lane; return this job's share of a fresh shared state, if any."""
        now = self._clock()
        rec = self.registry.publish_lane(lane, self.job_id, now, self.ttl_s)
        n = len(rec.active(now))
        self._members[lane] = n
        if not rec.state or now - rec.updated_at > self.stale_after_s or not rec.state.get("ceiling_rpm") and \
                not rec.state.get("ceiling_tpm"):
            return None
        return to_share(rec.state, n)

    def sync(self, now: float | None = None) -> Callable[[float], None]:
        """Renew membership, read who is on each lane, publish the account-level learned
        state; returns what to apply on the pacing side (``apply(monotonic_now)``).

        A controller that measured its ceiling since the last sync measured it under the
        current contention: its estimate already is its share, so it is not rescaled."""
        now = self._clock() if now is None else now
        changes: list[tuple[Any, float]] = []
        jobs: list[tuple[Any, int]] = []  # each controller, and how many jobs pace on its lane
        for lane, controller in self.lanes.items():
            if not hasattr(controller, "rescale"):
                continue  # a fixed limit learns nothing and takes no share
            rec = self.registry.publish_lane(lane, self.job_id, now, self.ttl_s)
            n_now = max(1, len(rec.active(now)))
            n_before = self._members.get(lane, n_now)
            measured = getattr(controller, "decreases", 0)
            fresh = measured != self._measured.get(lane, 0)
            self._measured[lane] = measured
            factor = 1.0 if fresh else n_before / n_now
            if factor != 1.0:
                changes.append((controller, factor))
            jobs.append((controller, n_now))
            exported = controller.export_state()
            if _learned(exported):
                # this job's share (after the rescale about to apply) times the jobs on the lane
                self.registry.publish_lane(lane, self.job_id, now, self.ttl_s,
                                           to_account(_scale(exported, factor), n_now))
            self._members[lane] = n_now

        def apply(monotonic_now: float) -> None:
            for controller, factor in changes:
                controller.rescale(factor, monotonic_now)
            for controller, n in jobs:
                if hasattr(controller, "shared_by"):
                    controller.shared_by(n)

        return apply

    def members(self, lane: str) -> int:
        return self._members.get(lane, 1)

    def finish(self) -> None:
        """The job ends: leave its latest learned state for the next job on the lane, and
        leave. Best effort: sharing never changes a job's outcome."""
        try:
            self.sync()
        except Exception:  # noqa: BLE001 - the next job learns afresh
            pass
        self.leave()

    def leave(self) -> None:
        for lane in self._members:  # the lanes this job joined
            try:
                self.registry.leave_lane(lane, self.job_id)
            except Exception:  # noqa: BLE001 - best effort: membership expires anyway
                pass


def _learned(state: dict[str, Any]) -> bool:
    return bool(state.get("ceiling_rpm") or (state.get("ceiling_tpm") and state.get("tpm_learned")))
