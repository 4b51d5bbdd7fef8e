"""Waiting for a pacer slot: the pipeline's side of pacing.

A sender asks its lane's controller (or, for a model served by several deployments, the
group's controllers) when it may send. One waiter per lane polls the controller; the others
queue behind it in order, so the controller is asked once per slot, not once per waiting
request. Nobody takes a slot while the in-flight bound is reached: the bound is read again
with the slot in hand, because it can fall while a sender queues (a server says its queue
is full), and every sender past an earlier check would send into the full queue.

Time, sleep and the off-loop runner are injected, as in the pipeline.

>>> import asyncio
>>> from promptforge_dagster.core.rate_controller import FixedRateController
>>> from promptforge_dagster.core.rate_lanes import RateLanes
>>> now = [0.0]
>>> async def sleep(s):
...     now[0] += s
>>> async def offload(f, *a):
...     return f(*a)
>>> c = FixedRateController(60.0, now=0.0)   # one a second
>>> p = LanePacing(RateLanes.single(c), clock=lambda: now[0], sleep=sleep, offload=offload,
...                no_room=lambda: False)
>>> async def three():
...     for _ in range(3):
...         await p.pace("default", c, est_tokens=1)
>>> asyncio.run(three()); now[0] >= 1.0
True
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Awaitable, Callable

from promptforge_dagster.core.deployments import Deployment, DeploymentGroup
from promptforge_dagster.core.in_flight import LIMIT_RECHECK_S
from promptforge_dagster.core.rate_controller import RateController
from promptforge_dagster.core.rate_lanes import RateLanes

MAX_POLL_S = 1.0  # a waiter sleeps at most this long between asks: a controller may free a slot sooner


class LanePacing:
    def __init__(
        self,
        lanes: RateLanes,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        offload: Callable[..., Awaitable[Any]],
        no_room: Callable[[], bool],
    ) -> None:
        self.lanes = lanes
        self._clock = clock
        self._sleep = sleep
        self._offload = offload
        self._no_room = no_room  # the in-flight bound is reached
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def pace(self, lane: str, controller: RateController, est_tokens: int, max_tokens: int = 0) -> None:
        """Return once ``controller`` allows a send of ``est_tokens`` (``max_tokens`` of them the
        answer's budget) on ``lane``."""
        async with self._lock(lane):  # one waiter per lane polls its controller; the others queue in order
            while True:
                if self._no_room():  # checked with the slot taken, not before queueing for it
                    await self._sleep(LIMIT_RECHECK_S)
                    continue
                wait = controller.acquire(self._clock(), est_tokens, max_tokens)
                if wait <= 0.0:
                    return
                await self._sleep(min(wait, MAX_POLL_S))

    async def open_lanes(self, group: DeploymentGroup) -> None:
        """Each deployment's lane, made off the event loop (it may consult the shared registry)."""
        for d in group.deployments:
            lane = self.lanes.deployment_lane(d)
            if self.lanes.get(lane) is None:
                await self._offload(self.lanes.controller, lane)

    async def pace_group(self, group: DeploymentGroup, est_tokens: int,
                         max_tokens: int = 0) -> tuple[Deployment | None, Any]:
        """Wait until one of the group's deployments has allowance: (deployment, its controller);
        (None, None) once all are dropped."""
        async with self._lock("group:" + group.name):
            while True:
                if self._no_room():
                    await self._sleep(LIMIT_RECHECK_S)
                    continue
                asked: dict[str, RateController] = {}

                def acquire(d: Deployment) -> float:
                    c = asked[d.id] = self.lanes.controller(self.lanes.deployment_lane(d))
                    return c.acquire(self._clock(), est_tokens, max_tokens)

                deployment, wait = group.pick(acquire)
                if deployment is not None:
                    return deployment, asked[deployment.id]
                if wait == math.inf:
                    return None, None
                await self._sleep(min(wait, MAX_POLL_S))
