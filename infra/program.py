"""The whole stack, wired: identity -> storage -> compute -> events -> Dagster."""

from __future__ import annotations

from dataclasses import dataclass

from infra.components.dagster import DagsterPlatform
from infra.components.data import Compute
from infra.components.events import Events
from infra.components.identity import Identity
from infra.components.storage import Storage
from infra.config import StackConfig


@dataclass
class Stack:
    identity: Identity
    storage: Storage
    compute: Compute
    events: Events
    dagster: DagsterPlatform


def build(cfg: StackConfig) -> Stack:
    identity = Identity("pf", cfg)
    storage = Storage("pf", cfg, identity)
    compute = Compute("pf", cfg)
    events = Events("pf", cfg, identity, storage)
    dagster = DagsterPlatform("pf", cfg, identity, compute)
    return Stack(identity, storage, compute, events, dagster)
