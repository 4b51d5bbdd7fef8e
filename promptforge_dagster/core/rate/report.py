"""What a lane's controller tells the world, and what it carries to a warm start.

* :func:`snapshot`: the lane as users see it (``summary.json``'s ``rate_lanes``, the progress
  line, the metrics, the Dagster materialization): its phase, allowance, learned ceilings and
  where each came from, and why it is where it is (client-bound, a busy shared pool).
* :func:`export_state` / :func:`restore`: what a rerun or another job on the lane needs to
  start at the ceilings learned, not in discovery (kept in the lane registry).

>>> from promptforge_dagster.core.rate.controller import AdaptiveController
>>> c = AdaptiveController.from_state({"ceiling_rpm": 600.0}, now=0.0)
>>> s = snapshot(c); s["phase"], s["learned_rpm_ceiling"], s["allowed_rpm"]
('steady', 600.0, 582.0)
>>> export_state(c)["ceiling_rpm"]
600.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptforge_dagster.core.rate.messages import ADMISSION

if TYPE_CHECKING:
    from promptforge_dagster.core.rate.controller import AdaptiveController


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def snapshot(c: "AdaptiveController") -> dict[str, Any]:
    r, t = c.requests, c.tokens
    return {
        "controller": "adaptive",
        "phase": c.phase.value,
        "allowed_rpm": round(r.per_s * 60.0, 2),
        "allowed_tpm": round(t.per_s * 60.0, 1) if t else None,
        "learned_rpm_ceiling": round(r.estimate * 60.0, 2) if r.estimate else None,
        "learned_tpm_ceiling": round(t.estimate * 60.0, 1) if t and t.estimate else None,
        "rpm_limit_source": ("stated" if r.known else "measured") if r.estimate else None,
        "tpm_limit_source": ("stated" if t.known else "measured") if t and t.estimate else None,
        "tpm_counts": c.units.basis if t else None,  # admission (prompt + max_tokens), input or output
        "in_flight_limit": c.in_flight_limit(),
        "latency_s": _round(c.in_flight.latency()),
        "concurrency_ceiling": round(c.in_flight.ceiling, 1) if c.in_flight.ceiling else None,
        # what taught it: the server's answers slowing as it queued (queueing.py), or a "queue full" refusal
        "concurrency_source": (("answers slowed" if c.in_flight.ceiling == c.queue.ceiling else "queue full")
                               if c.in_flight.ceiling else None),
        "rate_limited": c.rate_limited,
        # refusals of a busy shared pool, retried and learned nothing from (a share of those answered)
        "background_refused_share": round(c.background.share, 4) if c.background.found else None,
        # 429s that named the provider's capacity, not a limit (Azure's peak load): retried, learned nothing from
        "capacity_refused": c.capacity_refused,
        "overloaded": c.overloaded,
        "decreases": c.decreases,
        "sent": c.sent,
        "window_s": c.cfg.window_s,
        "client_bound_rpm": _round(c.client_bound_rpm(c.latest)),
    }


def export_state(c: "AdaptiveController") -> dict[str, Any]:
    """The learned limits: the measured ceilings, the stated ones (the account's: never scaled
    to a share), what the tokens axis counts, a server's concurrency, the account's burst."""
    r, t = c.requests, c.tokens
    return {"rate": r.per_s, "ceiling_rpm": r.estimate * 60.0 if r.estimate else None,
            "stated_rpm": r.cap * 60.0 if r.cap else None,
            "ceiling_tpm": t.estimate * 60.0 if t and t.estimate else None,
            "stated_tpm": t.cap * 60.0 if t and t.cap else None,
            "tpm_learned": bool(t and t.estimate), "tpm_counts": c.units.basis if t else None,
            "concurrency": c.in_flight.ceiling,
            "burst_s": r.burst.burst_s}


def restore(c: "AdaptiveController", state: dict[str, Any], now: float) -> None:
    """Start ``c`` (new) from what an earlier run learned: at its ceilings, not in discovery."""

    def per_s(key: str) -> float | None:
        return float(state[key]) / 60.0 if state.get(key) else None

    if state.get("ceiling_rpm"):
        c.requests.restore(per_s("ceiling_rpm"), per_s("stated_rpm"), now)
    elif state.get("rate"):
        c.requests.restore(None, per_s("stated_rpm"), now, per_s=float(state["rate"]))
    if state.get("ceiling_tpm"):
        c.units.basis = state.get("tpm_counts") or ADMISSION
        c.tokens = c.token_axis(per_s("ceiling_tpm"), now)
        c.tokens.restore(per_s("ceiling_tpm"), per_s("stated_tpm"), now)
    if state.get("concurrency"):
        c.in_flight.ceiling = float(state["concurrency"])
    if state.get("burst_s"):
        c.requests.burst.burst_s = float(state["burst_s"])
