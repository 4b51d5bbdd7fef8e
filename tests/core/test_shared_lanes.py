"""Shared lanes: a job joining a lane where another learned the ceiling warm-starts at
its share (not in slow start); when a job joins or leaves, the others rescale so the
shares sum to the account's ceiling; stale state is ignored; a dead job's share is
reclaimed once its membership expires. Against the real SQLite registry."""

import pytest

from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.core.adaptive_rate import AdaptiveConfig, AdaptiveRateController, Phase
from promptforge_dagster.core.rate_lanes import RateLanes
from promptforge_dagster.core.shared_lanes import LaneSync

CFG = AdaptiveConfig(window_s=10)
LANE = "openai/m#k"


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def job(registry, job_id, clock, ttl_s=30.0, stale_after_s=900.0):
    lanes = RateLanes(lambda _l: AdaptiveRateController(CFG, now=0.0), key_hash="k",
                      restore=lambda _l, st: AdaptiveRateController.from_state(st, 0.0, CFG))
    sync = LaneSync(registry, job_id, lanes, ttl_s=ttl_s, stale_after_s=stale_after_s, clock=clock)
    return lanes, sync


def learned(lanes, rpm):
    c = lanes.controller(LANE)
    c.ceiling_rpm = rpm
    c._enter_plateau(0.0)
    return c


@pytest.fixture
def registry(tmp_path):
    return SQLiteRegistry(str(tmp_path / "r.sqlite3"))


def test_a_new_job_warm_starts_at_its_share_and_shares_sum_to_the_ceiling(registry):
    clock = Clock()
    a_lanes, a = job(registry, "a", clock)
    ca = learned(a_lanes, 1200.0)
    a.sync()(0.0)
    b_lanes, b = job(registry, "b", clock)
    cb = b_lanes.controller(LANE)  # joins: warm start from the shared state
    assert cb.phase is not Phase.SLOW_START and cb.ceiling_rpm == pytest.approx(600.0)
    a.sync()(1.0)  # a sees two members now and halves
    assert ca.ceiling_rpm == pytest.approx(600.0)
    assert ca.ceiling_rpm + cb.ceiling_rpm == pytest.approx(1200.0)
    b.leave()
    a.sync()(2.0)  # b's share goes back to a
    assert ca.ceiling_rpm == pytest.approx(1200.0)


def test_stale_state_is_ignored_and_dead_members_expire(registry):
    clock = Clock()
    a_lanes, a = job(registry, "a", clock, ttl_s=30.0, stale_after_s=600.0)
    learned(a_lanes, 900.0)
    a.sync()
    clock.t += 601.0  # a died long ago: its membership and its state are both stale
    b_lanes, b = job(registry, "b", clock, stale_after_s=600.0)
    cb = b_lanes.controller(LANE)
    assert cb.phase is Phase.SLOW_START and cb.ceiling_rpm is None
    assert b.members(LANE) == 1


def test_without_sharing_nothing_is_published(registry, tmp_path):
    lanes = RateLanes(lambda _l: AdaptiveRateController(CFG, now=0.0), key_hash="k")
    lanes.controller(LANE)
    assert registry.lane(LANE) is None
