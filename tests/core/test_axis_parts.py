"""The parts an axis and a lane's controller are composed of, each on its own, on explicit
times: a step is proven only once its sends are old enough to have been refused; a cut and
a climb back follow the rates refused; a dry spell reads what the account admitted and waits
for a window to free; the client being slow is told apart from the provider; a bare refusal
is charged to tokens only when the sizes say so; the lane's report round-trips."""

import pytest

from promptforge_dagster.core.rate.attribution import SilentLimit
from promptforge_dagster.core.rate.climb import Climb
from promptforge_dagster.core.rate.client import ClientMeter
from promptforge_dagster.core.rate.config import Discovery
from promptforge_dagster.core.rate.controller import AdaptiveController
from promptforge_dagster.core.rate.dry import DrySpell
from promptforge_dagster.core.rate.estimator import CeilingEstimator
from promptforge_dagster.core.rate.report import export_state
from promptforge_dagster.core.rate.spent import Verdict, unfilled, verdict
from promptforge_dagster.core.rate.step import Step
from promptforge_dagster.core.rate.window import WindowLearner


def _step(sends: int, searching: bool) -> Step:
    s = Step(Discovery(step_requests=8, step_min_s=0.25, step_max_s=0.5), now=0.0)
    for i in range(sends):
        s.sent(i * 0.01, searching=searching)
    s.blocked = True
    return s


def test_a_step_is_proven_only_once_its_sends_are_older_than_twice_the_slowest_refusal():
    s = _step(8, searching=False)
    assert s.proven(0.33, searching=False, per_s=8.0)  # full at 0.07, settled 0.25 s after
    s.heard(sent_at=0.0, now=0.5)  # a refusal took 0.5 s: a send's refusal may be a second away
    assert not s.proven(0.6, searching=False, per_s=8.0) and s.proven(1.08, searching=False, per_s=8.0)


def test_a_searching_step_is_full_after_its_time_whatever_it_sent_but_not_after_a_refusal():
    assert _step(2, searching=True).proven(0.76, searching=True, per_s=2.0)  # a slow lane's 2 sends
    assert not _step(2, searching=False).proven(0.76, searching=False, per_s=8.0)  # 2 sends of 8: nothing proven


def test_a_step_that_sent_nothing_proves_nothing_however_long_it_lasted():
    assert not _step(0, searching=True).proven(10.0, searching=True, per_s=8.0)  # (paused throughout: a retry-after)


def test_a_search_step_that_sent_under_half_its_rate_never_tried_it_and_proves_nothing():
    # a client doing 200 a second meets a pacer at 1,000 a second in bursts (it was held back),
    # yet the rate was never sent at: over HTTP such steps doubled the allowance past 120,000 RPM
    s = Step(Discovery(step_requests=8, step_min_s=0.25, step_max_s=0.5), now=0.0)
    for i in range(100):
        s.sent(i * 0.005, searching=True)
    s.blocked = True
    assert not s.proven(0.76, searching=True, per_s=1000.0)  # 100 sent in 0.76 s at 1,000/s
    assert s.proven(0.76, searching=True, per_s=200.0)  # ... at 200/s: the rate was used
    t = Step(Discovery(step_requests=8, step_min_s=0.25, step_max_s=0.5), now=0.0)
    for i in range(10):
        t.sent(i * 0.05, searching=True, units=800.0)  # a tokens axis counts what the sends were worth
    t.blocked = True
    assert t.proven(0.76, searching=True, per_s=8000.0) and not t.proven(0.76, searching=True, per_s=30000.0)


def test_a_climbing_step_that_sent_under_half_its_rate_proves_nothing_either():
    # climbing back in BACKOFF (not searching): over HTTP a client-bound lane doing ~150/s met the pacer in
    # bursts, and its climb went on to an allowance of 92,533 RPM with nothing measured
    s = _step(8, searching=False)
    assert not s.proven(1.0, searching=False, per_s=100.0)  # 8 sent in 1 s of 100/s
    assert s.proven(1.0, searching=False, per_s=12.0)  # ... of 12/s: the rate was used


def test_a_step_timed_longer_is_full_after_its_time_not_a_searchs():
    # (cut far under a measured ceiling, a lane climbs back by timed steps of 5 s: by requests, 8 of them at 3 RPM
    # took 160 s a step; by a search's 0.5 s, a small account refused a request per step)
    assert not _step(2, searching=True).proven(0.76, searching=True, per_s=2.0, full_after_s=5.0)
    assert _step(2, searching=True).proven(5.3, searching=True, per_s=0.3, full_after_s=5.0)


def test_a_step_after_a_long_pause_is_proven_only_once_it_sent_as_long_as_it_paused_past_a_step_heard_of():
    # a bucket under the rate banks its refill over a cut's pauses and admits the step's first sends: with refusals
    # 200 ms away a 600 RPM lane cut to 1,380 RPM paused 1.2 s, was "proven" there, and went back and forth for
    # two minutes, 13% refused
    s = Step(Discovery(step_requests=8, step_min_s=0.25, step_max_s=0.5), now=0.0)
    s.paused(0.0, 0.6)  # the cut's settle time
    s.paused(0.7, 1.3)  # the look's: 1.2 s paused in all, 0.95 s more than a step lasts
    for i in range(60):
        s.sent(1.3 + i * 0.05, searching=False)
    s.blocked = True
    assert s.settle == pytest.approx(0.25)
    assert not s.proven(2.45, searching=False, per_s=20.0)  # sent 1.15 s since, 0.25 s of it not yet heard of
    assert s.proven(2.55, searching=False, per_s=20.0)  # 1.0 s of it heard of: longer than the excess
    t = Step(Discovery(step_requests=8, step_min_s=0.25, step_max_s=0.5), now=0.0)
    t.paused(0.0, 0.25)  # a pause no longer than a step: left to the step's own span (a window banks nothing)
    for i in range(8):
        t.sent(0.25 + i * 0.01, searching=False)
    t.blocked = True
    assert t.proven(0.58, searching=False, per_s=8.0)


def test_an_unheld_step_proves_nothing():
    s = _step(8, searching=False)
    s.blocked = False  # demand, not the rate, limited it
    assert not s.proven(10.0, searching=False, per_s=8.0)


def test_a_cut_goes_to_what_was_admitted_and_a_refused_climb_step_returns_where_it_climbed_from():
    c = Climb()
    c.refused_at(40.0)
    assert c.cut(40.0, halved=20.0, admitted=16.0, sustained=False, steady_cut=0.85) == 16.0
    up = c.step(16.0, target=None, margin=0.03, growth=2.0)
    assert up == pytest.approx((16.0 + 40.0 * 0.97) / 2)  # halfway to just under the rate refused
    c.refused_at(up)
    assert c.cut(up, halved=up / 2, admitted=10.0, sustained=False, steady_cut=0.85) == 16.0
    far = Climb()
    far.refused_at(40.0)
    assert far.step(4.0, target=None, margin=0.03, growth=2.0) == 8.0  # from far under it: at most doubling


def test_refused_again_after_holding_a_rate_is_a_step_back_not_a_halving():
    c = Climb()
    c.refused_at(2.0)
    c.cut(2.0, halved=1.0, admitted=1.2, sustained=False, steady_cut=0.85)
    c.refused_at(1.2)
    assert c.cut(1.2, halved=0.6, admitted=0.6, sustained=True, steady_cut=0.85) == pytest.approx(1.02)


def test_a_climb_past_every_rate_refused_grows_its_steps_and_is_outgrown_at_twice_the_highest():
    c = Climb()
    c.refused_at(10.0)
    c.cut(10.0, halved=5.0, admitted=5.0, sustained=False, steady_cut=0.85)
    rate = 10.0  # admitted at the rate refused: the refusal was no ceiling
    gains = []
    while not c.outgrown(rate):
        nxt = c.step(rate, target=None, margin=0.03, growth=2.0)
        gains.append(round(nxt / rate - 1.0, 2))
        rate = nxt
    assert gains == [0.1, 0.2, 0.4, 0.8] and rate >= 20.0


def _history(sends_per_s: float, seconds: float, refused_after: float | None = None) -> CeilingEstimator:
    h = CeilingEstimator(min_sends=12, min_span_s=1.0)
    for i in range(int(sends_per_s * seconds)):
        t = i / sends_per_s
        h.sent(t, 1.0)
        if refused_after is not None and t >= refused_after:
            h.refused(t, 1.0)
    return h


def test_a_dry_spell_reads_the_share_admitted_since_it_began():
    h = _history(10.0, 10.0)
    d = DrySpell(h, step_requests=8)
    for t in (8.0, 8.2, 8.4, 8.6, 8.8, 9.0):
        h.refused(t, 1.0)  # from 8 s, a third of what was sent was refused
    d.refused(8.0)
    assert d.recent_admitted(now=9.5, settle=0.25, per_s=10.0) == pytest.approx(10.0 * (1 - 6 / 13), rel=0.1)


def test_under_a_measured_ceiling_only_an_account_that_admits_next_to_nothing_is_a_spent_window():
    # (a fixed minute spent by a cold start's flood under a stated 300 RPM: each refusal was a cut, eleven while the
    # minute was spent, and the lane climbed back until 95 s; a bucket still admits its refill)
    spent = DrySpell(_history(10.0, 40.0, refused_after=30.0), step_requests=8)  # 10 a second, none admitted from 30 s
    spent.refused(30.0)
    assert spent.admits_nothing(now=31.5, settle=0.25, per_s=10.0)
    h = CeilingEstimator(min_sends=12, min_span_s=1.0)
    for i in range(400):  # a bucket whose ceiling fell to a third: two of every three refused from 30 s
        h.sent(i / 10.0, 1.0)
        if i >= 300 and i % 3:
            h.refused(i / 10.0, 1.0)
    fallen = DrySpell(h, step_requests=8)
    fallen.refused(30.1)
    assert not fallen.admits_nothing(now=31.5, settle=0.25, per_s=10.0)


def test_a_dry_spell_under_a_minute_window_looks_again_when_its_oldest_admitted_request_ages_out():
    d = DrySpell(_history(10.0, 20.0), step_requests=8)
    d.refused(20.0)
    until = d.pause(now=20.1, retry_after_s=None)  # a minute until a window is learned; first admitted at 0 s
    assert until == pytest.approx(0.5 + 20.1)  # the first pause is short ...
    for _ in range(6):
        until = d.pause(now=50.0, retry_after_s=None)
    assert until == pytest.approx(60.05, abs=0.05)  # ... doubling, but never past a window after the oldest
    # admitted (read to the send history's 50-ms grain)


def test_a_dry_spell_ends_only_with_a_request_sent_after_it_began():
    # a flood's answers still in flight when the lane paused were admitted before the account ran dry:
    # read as the window freeing, one put Azure's 10-s window at 5.5 s and its ceiling at 1.8x
    d = DrySpell(_history(10.0, 10.0), step_requests=8)
    d.refused(5.0)
    d.pause(now=5.3, retry_after_s=5.0)
    assert d.resumed(sent_at=4.95, now=5.4) is None and d.pauses == 1  # sent before the first refusal
    assert d.resumed(sent_at=10.3, now=10.5) is not None and d.pauses == 0  # sent after: the window freed


def test_a_refusal_under_half_a_windows_quota_sent_over_its_span_is_no_windows():
    h = _history(10.0, 30.0)  # 10 a second for 30 s
    assert not unfilled(h, 29.9, span_s=10.0, per_s=10.0)  # 100 sent over the 10 s: the quota is used
    assert unfilled(h, 29.9, span_s=10.0, per_s=25.0)  # a window of 250 would have admitted it
    slow = _history(1.0, 30.0)  # one a second: a 1-s window of 3.5 is short by 2.5 requests, too few to tell
    assert not unfilled(slow, 29.9, span_s=1.0, per_s=3.5) and unfilled(slow, 29.9, span_s=1.0, per_s=4.0)


def test_a_refusal_sent_before_the_rate_changed_says_nothing_unless_a_stated_limit_says_when_it_frees():
    def said(sent_at: float, **kw) -> Verdict:
        facts = {"stated": False, "retry_after_s": None, "at_window_estimate": False, "looked": False} | kw
        return verdict(sent_at=sent_at, step_start=10.0, **facts)
    assert said(9.0) is Verdict.STALE and said(11.0) is Verdict.SLOW
    assert said(9.0, stated=True, retry_after_s=1.0) is Verdict.STALE  # a short wait: any bucket's
    assert said(9.0, stated=True, retry_after_s=30.0) is Verdict.WAIT  # the stated window is spent
    assert said(11.0, at_window_estimate=True) is Verdict.WAIT  # refused at the end of a window's quota
    assert said(11.0, looked=True, retry_after_s=4.0) is Verdict.WAIT  # the cut's look: Azure's "retry after 4 s"
    assert said(11.0, stated=True, retry_after_s=1.558, interval_s=0.01) is Verdict.WAIT  # 156 intervals away


def test_a_provider_retry_delay_is_the_pause_and_a_grain_past_it():
    w = WindowLearner()  # (a retry said to a tenth may be half a tenth early)
    assert w.frees_at(5.0, pauses=1, retry_after_s=7.0, oldest_admitted=0.0) == pytest.approx(12.05)


def test_a_client_that_cannot_keep_up_is_client_bound_and_a_held_pacer_or_a_server_is_not():
    m = ClientMeter(now=0.0)
    for i in range(100):
        m.sent(i * 0.05)
    assert m.client_bound_rpm(5.0, paused=False, server_bound=False) == pytest.approx(1200.0)
    assert m.client_bound_rpm(5.0, paused=True, server_bound=False) is None
    assert m.client_bound_rpm(5.0, paused=False, server_bound=True) is None
    m.blocked(4.5)
    assert m.client_bound_rpm(5.0, paused=False, server_bound=False) is None


def test_bare_refusals_are_charged_to_tokens_only_when_refused_requests_are_clearly_larger():
    same, larger = SilentLimit(), SilentLimit()
    for s in (same, larger):
        for _ in range(40):
            s.admitted(1000)
    assert {same.refused(1100) for _ in range(20)} == {"requests"}  # 10% larger: no evidence
    assert [larger.refused(2000) for _ in range(8)][-1] == "tokens"


def test_the_learned_limits_survive_an_export_and_a_warm_start():
    state = {"ceiling_rpm": 900.0, "stated_rpm": 1000.0, "ceiling_tpm": 90_000.0, "tpm_counts": "input",
             "concurrency": 12.0, "burst_s": 3.0, "rate": 14.0}
    again = export_state(AdaptiveController.from_state(state, now=0.0))
    assert {k: again[k] for k in state if k != "rate"} == pytest.approx({k: v for k, v in state.items() if k != "rate"})
