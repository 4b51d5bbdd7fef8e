"""One heartbeat for a whole attempt: from taking the lease to finishing, scan and
publish included.

Whoever is working calls :meth:`Heartbeat.beat` often (the scan every few thousand lines,
the publish every part, the pipeline on its flush loop); it renews the lease when one
interval has passed. Time is passed in (no thread, no sleep), so tests drive it exactly.

A renewal that fails for a transient reason (the registry is briefly unavailable) is
tried again on later beats, for as long as the lease still has time left: only when the
lease would expire unrenewed, or a newer attempt took it (:class:`LeaseLost`), does the
attempt stop.

>>> t, renewed = [0.0], []
>>> hb = Heartbeat(lambda now: renewed.append(now), interval_s=10, lease_ttl_s=120, clock=lambda: t[0])
>>> hb.beat(); t[0] = 9.0; hb.beat(); t[0] = 10.0; hb.beat()
>>> renewed
[10.0]
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from promptforge_dagster.core.job_registry import LeaseLost

# Stop this long before the lease would expire unrenewed: a newer attempt may take an
# expired lease, and the watchdog allows for clock skew of the same order.
EXPIRY_MARGIN_S = 10.0
# After a failed renewal, wait this long before the next try (beats come far more often).
RETRY_SPACING_S = 1.0


class LeaseUnrenewable(Exception):
    """The registry could not be reached long enough that the lease is about to expire:
    the attempt stops (a retry resumes); unlike :class:`LeaseLost`, no one else owns it."""


class Heartbeat:
    """Renews the lease through ``renew(now)``; thread-safe (beats come from the event loop
    and from worker threads). ``lost`` holds why the attempt must stop, once it must."""

    def __init__(self, renew: Callable[[float], Any], *, interval_s: float, lease_ttl_s: float,
                 clock: Callable[[], float], side: Callable[[], Any] | None = None) -> None:
        self._renew = renew
        self.interval_s = interval_s
        self.lease_ttl_s = lease_ttl_s
        self._clock = clock
        self._side = side  # best-effort extra work on each renewal (lane sync); its errors are ignored
        self._lock = threading.Lock()
        self._last_ok = clock()
        self._last_try = self._last_ok
        self.renewals = 0
        self.transient_failures = 0
        self.last_error: str | None = None
        self.lost: str | None = None
        self.superseded = False

    @property
    def last_renewed(self) -> float:
        """When the lease was last renewed (or taken)."""
        return self._last_ok

    def beat(self, *, force: bool = False) -> Any:
        """Renew if an interval has passed (or ``force``: a check right before publishing).
        Returns the side task's result when it ran. Raises :class:`LeaseLost` when the
        attempt no longer owns its job, :class:`LeaseUnrenewable` when it could not renew
        before the lease expires."""
        with self._lock:
            if self.lost is not None:
                raise LeaseLost(self.lost) if self.superseded else LeaseUnrenewable(self.lost)
            now = self._clock()
            due = force or now - self._last_ok >= self.interval_s
            if not due or (not force and self.last_error is not None and now - self._last_try < RETRY_SPACING_S):
                return None
            self._last_try = now
            try:
                self._renew(now)
            except LeaseLost as exc:
                self.lost, self.superseded = str(exc), True
                raise
            except Exception as exc:  # noqa: BLE001 - transient: tried again while the lease lasts
                self.transient_failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if now - self._last_ok >= self.lease_ttl_s - EXPIRY_MARGIN_S:
                    self.lost = (f"could not renew the lease for {now - self._last_ok:.0f} s "
                                 f"(last error: {self.last_error})")
                    raise LeaseUnrenewable(self.lost) from exc
                if force:
                    raise  # ownership unconfirmed right before a publish: fail (a retry resumes)
                return None
            self._last_ok, self.last_error = now, None
            self.renewals += 1
        if self._side is None:
            return None
        try:
            return self._side()
        except Exception as exc:  # noqa: BLE001 - lane sharing is best effort
            self.last_error = f"lane sync: {type(exc).__name__}: {exc}"[:300]
            return None
