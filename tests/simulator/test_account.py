"""Invariant: the simulated account admits at most its RPM/TPM (plus its burst), refuses
with the limit that bound and a truthful retry-after, and follows its limit schedule."""

from promptforge_dagster.simulator.account import AccountLimits, SimulatedAccount, parse_schedule


def admitted_over(acct, seconds, per_second, tokens=1, start=0.0):
    ok = 0
    steps = int(seconds * per_second)
    for i in range(steps):
        ok += acct.admit(start + i / per_second, tokens).ok
    return ok


def test_rpm_bucket_admits_rate_plus_burst():
    acct = SimulatedAccount(AccountLimits(rpm=600, burst_s=2.0), now=0.0)
    ok = admitted_over(acct, seconds=60, per_second=50)
    assert 600 <= ok <= 600 + 20 + 1  # 10/s for 60 s plus a 2-second burst


def test_refusal_names_the_binding_limit_and_a_retry_after_that_works():
    acct = SimulatedAccount(AccountLimits(rpm=None, tpm=6000, burst_s=1.0), now=0.0)
    assert acct.admit(0.0, 100).ok
    refused = acct.admit(0.0, 100)
    assert not refused.ok and refused.limit == "tokens"
    assert refused.headers["x-ratelimit-limit-tokens"] == "6000"
    assert acct.admit(refused.retry_after_s + 1e-6, 100).ok


def test_schedule_changes_the_ceiling_over_time():
    limits = AccountLimits(rpm=900, burst_s=1.0, schedule=parse_schedule("0:900,60:300,120:1200"))
    acct = SimulatedAccount(limits, now=0.0)
    phase1 = admitted_over(acct, 60, 40, start=0.0)
    phase2 = admitted_over(acct, 60, 40, start=60.0)
    phase3 = admitted_over(acct, 60, 40, start=120.0)
    assert 880 <= phase1 <= 920 and 290 <= phase2 <= 320 and 1180 <= phase3 <= 1230


def test_a_busy_shared_pool_refuses_its_share_and_charges_no_limit():
    acct = SimulatedAccount(AccountLimits(rpm=600, burst_s=2.0, pool_refusals=0.2), now=0.0, seed=1)
    answers = [acct.admit(i / 5.0, 1) for i in range(1000)]  # 5/s: half the limit
    pool = [a for a in answers if not a.ok]
    assert all(a.limit == "pool" for a in pool)  # the limit never binds at half of it
    assert 150 <= len(pool) <= 250


def test_every_fixed_window_switch_is_a_simulate_flag():
    import argparse

    from promptforge_dagster.simulator.launch import account_limits, add_simulate_arguments

    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    limits = account_limits(parser.parse_args(["--rpm", "60", "--limiter", "fixed", "--window-s", "10",
                                               "--window-phase-s", "9.5"]))
    assert (limits.limiter, limits.window_s, limits.window_phase_s) == ("fixed", 10.0, 9.5)
    account = SimulatedAccount(limits, now=0.0)  # 10 a window, and the first window ends 0.5 s in
    assert all(account.admit(0.0, 1).ok for _ in range(10)) and not account.admit(0.1, 1).ok
    assert account.admit(0.6, 1).ok
