"""Shared lanes: a job joining a lane where another learned the ceiling warm-starts at
its share (not in slow start); when a job joins or leaves, the others rescale so the
shares sum to the account's ceiling; stale state is ignored; a dead job's share is
reclaimed once its membership expires. Against the real SQLite registry."""

import pytest

from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.core.rate.axis import Phase
from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate_lanes import RateLanes
from promptforge_dagster.core.shared_lanes import LaneSync

CFG = RateConfig(window_s=10)
LANE = "openai/m#k"


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def job(registry, job_id, clock, ttl_s=30.0, stale_after_s=900.0):
    lanes = RateLanes.adaptive(CFG, key_hash="k", clock=lambda: 0.0, api_base=None)
    sync = LaneSync(registry, job_id, lanes, ttl_s=ttl_s, stale_after_s=stale_after_s, clock=clock)
    return lanes, sync


def learned(lanes, rpm):
    c = lanes.controller(LANE)
    c.requests.restore(rpm / 60.0, None, 0.0)  # as if measured
    return c


def ceiling(c):
    return c.snapshot()["learned_rpm_ceiling"]


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
    assert cb.phase is not Phase.DISCOVER and ceiling(cb) == pytest.approx(600.0)
    a.sync()(1.0)  # a sees two members now and halves
    assert ceiling(ca) == pytest.approx(600.0)
    assert ceiling(ca) + ceiling(cb) == pytest.approx(1200.0)
    b.leave()
    a.sync()(2.0)  # b's share goes back to a
    assert ceiling(ca) == pytest.approx(1200.0)


def test_stale_state_is_ignored_and_dead_members_expire(registry):
    clock = Clock()
    a_lanes, a = job(registry, "a", clock, ttl_s=30.0, stale_after_s=600.0)
    learned(a_lanes, 900.0)
    a.sync()
    clock.t += 601.0  # a died long ago: its membership and its state are both stale
    b_lanes, b = job(registry, "b", clock, stale_after_s=600.0)
    cb = b_lanes.controller(LANE)
    assert cb.phase is Phase.DISCOVER and ceiling(cb) is None
    assert b.members(LANE) == 1


def test_without_sharing_nothing_is_published(registry, tmp_path):
    lanes = RateLanes.adaptive(CFG, key_hash="k", clock=lambda: 0.0, api_base=None)
    lanes.controller(LANE)
    assert registry.lane(LANE) is None


def test_a_lane_shared_with_other_jobs_looks_for_no_busy_pool(registry):
    """Lane sharing tells each controller how many jobs pace on its lane."""
    clock = Clock()
    a_lanes, a = job(registry, "a", clock)
    ca = learned(a_lanes, 1200.0)
    a.sync()(0.0)
    assert ca.background.looking
    b_lanes, b = job(registry, "b", clock)
    cb = b_lanes.controller(LANE)
    a.sync()(1.0)
    b.sync()(1.0)
    assert not ca.background.looking and not cb.background.looking
    b.leave()
    a.sync()(2.0)
    assert ca.background.looking
