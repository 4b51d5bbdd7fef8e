"""One rate controller per lane: (provider, model, API-key hash).

Limits belong to an account and a model, so a job whose lines name several models paces
each separately, and two keys never share a learned ceiling.

>>> from promptforge_dagster.core.rate_controller import FixedRateController
>>> lanes = RateLanes(lambda lane: FixedRateController(None, now=0.0), key_hash="k1")
>>> lanes.lane("gpt-4o"), lanes.lane("anthropic/claude")
('openai/gpt-4o#k1', 'anthropic/claude#k1')
>>> lanes.controller(lanes.lane("gpt-4o")) is lanes.controller("openai/gpt-4o#k1")
True
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable

from promptforge_dagster.core.formats import qualify_model
from promptforge_dagster.core.rate.hosted import hosted_api, lane_provider
from promptforge_dagster.core.rate_controller import RateController


class RateLanes:
    """Creates controllers on first use of a lane and keeps them for the job."""

    def __init__(
        self,
        factory: Callable[[str], RateController],
        *,
        key_hash: str = "nokey",
        default_provider: str = "openai",
        one_lane: bool = False,
        restore: Callable[[str, dict[str, Any]], RateController] | None = None,
        warm_lookup: Callable[[str], dict[str, Any] | None] | None = None,
    ) -> None:
        self._factory = factory
        self._warm: dict[str, dict[str, Any]] = {}  # lane -> exported state of an earlier attempt
        self._restore = restore
        self.warm_lookup = warm_lookup  # shared state of other jobs, consulted for a new lane
        self.one_lane = one_lane
        self.key_hash = key_hash
        self.default_provider = default_provider
        self._controllers: dict[str, RateController] = {}
        self._names: dict[str, str] = {}
        self._lock = threading.Lock()
        self.groups: dict[str, Any] = {}  # model name -> DeploymentGroup: each deployment its own lane

    @classmethod
    def adaptive(cls, config: Any, *, key_hash: str = "nokey", default_provider: str = "openai",
                 clock: Callable[[], float], api_base: str | None) -> "RateLanes":
        """An adaptive controller (``core/rate/controller.py``) per lane, warm-started from
        an earlier attempt's (or another job's) learned state where there is one; each told
        whether its server is a hosted API (:meth:`hosted`: the job's ``api_base``, None for
        its provider's own endpoint, serves the job's provider, a deployment's its own)."""
        from promptforge_dagster.core.rate.controller import AdaptiveController

        def configured(lane: str) -> Any:  # (called on a lane's first use, once the lanes below exist)
            return dataclasses.replace(config, hosted=lanes.hosted(lane, api_base))

        lanes = cls(lambda lane: AdaptiveController(configured(lane), now=clock()), key_hash=key_hash,
                    default_provider=default_provider,
                    restore=lambda lane, state: AdaptiveController.from_state(state, clock(), configured(lane)))
        return lanes

    def hosted(self, lane: str, api_base: str | None) -> bool:
        """Whether ``lane``'s server is a hosted API (:func:`~promptforge_dagster.core.rate.hosted.hosted_api`):
        a deployment's lane by its own base URL; another by the job's ``api_base`` if it is of
        the job's provider, else by its provider's default endpoint.

        >>> lanes = RateLanes(lambda lane: None, default_provider="openai")
        >>> lanes.hosted("openai/gpt-4o#k", "http://127.0.0.1:9000/v1"), lanes.hosted("anthropic/claude#k", "http://127.0.0.1:9000/v1")
        (False, True)
        """
        provider, deployment = lane_provider(lane)
        if deployment is not None:
            bases = [d.api_base for g in self.groups.values() for d in g.deployments if d.id == deployment]
            return bool(bases) and hosted_api(provider, bases[0])
        return hosted_api(provider, api_base if provider == self.default_provider else None)

    @classmethod
    def single(cls, controller: RateController) -> "RateLanes":
        """Every request in one lane, paced by ``controller``."""
        return cls(lambda _lane: controller, one_lane=True)

    def lane(self, model: str) -> str:
        if self.one_lane:
            return "all"
        name = self._names.get(model)
        if name is None:
            name = self._names[model] = f"{qualify_model(model, self.default_provider)}#{self.key_hash}"
        return name

    def deployment_lane(self, deployment: Any) -> str:
        """A deployment's own lane: its model, its id in the group, its key.

        >>> from promptforge_dagster.core.deployments import Deployment
        >>> lane = RateLanes(lambda lane: None).deployment_lane(Deployment("eu", "gpt-4o-mini", "azure/mini", api_key="k"))
        >>> lane.split("#")[0], len(lane.split("#")[1])   # the key only as a hash
        ('azure/mini@eu', 12)
        """
        return f"{qualify_model(deployment.model, self.default_provider)}@{deployment.id}#{deployment.key_hash}"

    def get(self, lane: str) -> RateController | None:
        """The lane's controller if it exists already (no registry look-up)."""
        return self._controllers.get(lane)

    def controller(self, lane: str) -> RateController:
        with self._lock:  # first uses may come from worker threads at once (a shared-state look-up)
            return self._controller(lane)

    def _controller(self, lane: str) -> RateController:
        c = self._controllers.get(lane)
        if c is None:
            state = self._warm.pop(lane, None)
            if state is None and self.warm_lookup is not None and self._restore is not None:
                state = self.warm_lookup(lane)
            c = self._restore(lane, state) if state and self._restore else self._factory(lane)
            self._controllers[lane] = c
        return c

    def items(self) -> list[tuple[str, RateController]]:
        return list(self._controllers.items())

    def warm_start(self, state: dict[str, dict[str, Any]]) -> None:
        """Lanes not yet in use start from an earlier attempt's exported state."""
        for lane, st in state.items():
            if lane not in self._controllers:
                self._warm[lane] = st

    def export_state(self) -> dict[str, Any]:
        """What a warm restart needs, by lane (controllers that can export it); lanes an
        earlier attempt learned and this one has not used yet are carried over."""
        out = dict(self._warm)
        for lane, c in self._controllers.items():
            export = getattr(c, "export_state", None)
            if export is not None:
                out[lane] = export()
        return out

    def snapshot(self) -> dict[str, Any]:
        """Each lane's controller state, by lane name."""
        return {lane: c.snapshot() for lane, c in self._controllers.items()}
