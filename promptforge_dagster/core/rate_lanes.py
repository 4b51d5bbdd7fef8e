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

from typing import Any, Callable

from promptforge_dagster.core.formats import qualify_model
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
    ) -> None:
        self._factory = factory
        self._one_lane = one_lane
        self.key_hash = key_hash
        self.default_provider = default_provider
        self._controllers: dict[str, RateController] = {}
        self._names: dict[str, str] = {}

    @classmethod
    def single(cls, controller: RateController) -> "RateLanes":
        """Every request in one lane, paced by ``controller``."""
        return cls(lambda _lane: controller, one_lane=True)

    def lane(self, model: str) -> str:
        if self._one_lane:
            return "all"
        name = self._names.get(model)
        if name is None:
            name = self._names[model] = f"{qualify_model(model, self.default_provider)}#{self.key_hash}"
        return name

    def controller(self, lane: str) -> RateController:
        c = self._controllers.get(lane)
        if c is None:
            c = self._controllers[lane] = self._factory(lane)
        return c

    def items(self) -> list[tuple[str, RateController]]:
        return list(self._controllers.items())

    def snapshot(self) -> dict[str, Any]:
        """Each lane's controller state, by lane name."""
        return {lane: c.snapshot() for lane, c in self._controllers.items()}
