"""Every constant of the rate engine, grouped, validated, each with its reason.

>>> RateConfig(window_s=5).discovery.growth
2.0
>>> RateConfig(window_s=0)
Traceback (most recent call last):
...
ValueError: window_s must be positive
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Discovery:
    """Finding an unknown ceiling from a cold start."""

    initial_rpm: float = 60.0  # where a lane with no hint starts: most accounts allow 1 request/s; smaller ones
    # (Gemini's free tier: 5-15 RPM) refuse its second or third request and are cut to (or told) theirs
    growth: float = 2.0  # x per proven step, as TCP slow start per round trip: 60 -> 20,000 RPM in 9 steps
    step_requests: int = 8  # sends at a rate, none refused, before it grows: one refusal in 8 would show
    step_min_s: float = 0.5  # and at least this long: a step spans several pacer intervals, and a window
    # counter's quota, spent as the rate doubles, runs out at half the rate (0.25 s: its first flood twice as
    # large; a 1,200 RPM sliding minute refused 3.5%, now 2.3%; 60 -> 20,000 RPM takes ~0.5 s longer)
    step_max_s: float = 0.5  # ... or, before any refusal, this long: 60 -> 3,840 RPM in ~4 s
    backoff: float = 0.5  # on a refusal while searching: half the rate it was refused at (TCP's cut)


@dataclass(frozen=True)
class Steady:
    """Running at a measured ceiling."""

    margin: float = 0.03  # pace this far under the estimate: the estimate's own error is about 1-2%
    stated_margin: float = 0.01  # under a limit the provider stated: exact, so only the pacer's grain
    measure_min_requests: int = 12  # a measurement needs this many sends between two dry moments
    measure_min_s: float = 1.0  # ... over at least this span (the pacer's and the clock's grain)
    counted_refusals_weight: float = 0.0  # how much a refused request counts as used: 0 (free) to 1 (charged);
    # 0 learns what was admitted, never more than the evidence supports (charged ones are repaid by the pacer)
    steady_cut: float = 0.85  # a refusal at a measured ceiling: step back this far, then measure again
    probe_gain: float = 0.5  # the first probe above the estimate, +50%: a failed one costs ~1 refusal whatever
    # its reach, and a far one proves sooner past the burst (a fourfold rise: 0.69 of it at +25%, 0.84 at +50%)
    slow_probe_gain: float = 0.25  # ... +25% on a slow lane (below slow_rpm): its burst holds a few requests,
    slow_rpm: float = 120.0  # and a far probe drains them before it sent enough to prove anything (60 RPM)
    probe_gain_min: float = 0.125  # a probe refused within 2 s halves the next one's gain, down to
    # this: over twice the 5% a proof needs beyond the burst, so a near probe still proves
    probe_gain_max: float = 1.0  # doubling per proven probe up to +100% (a doubled ceiling is found in ~2 probes)
    probe_every_windows: float = 2.0  # a probe at most every two windows at the estimate (and 200 sends)
    probe_again_windows: float = 0.5  # ... and half a window after a probe that was admitted: a risen
    # ceiling is climbed in seconds, not minutes


@dataclass(frozen=True)
class Concurrency:
    """The in-flight bound: Little's law on the allowed rate and the observed latency."""

    headroom: float = 1.5  # in flight = rate x latency x this: latency varies request to request
    min_in_flight: int = 4  # never fewer: a lane must be able to find out it can go faster
    hard_max: int = 20_000  # file descriptors and sockets: above what one process sensibly holds
    byte_budget: int = 256 * 1024 * 1024  # prompt bytes in flight: memory stays flat whatever the latency
    conc_cut: float = 0.9  # a server that says its queue is full: hold under what was in flight
    latency_quantile: float = 0.9  # latency of a typical slow request, from recent answers


@dataclass(frozen=True)
class RateConfig:
    """All of the rate engine's settings. ``window_s`` paces probing (``--rate-window``);
    ``rpm_hint``/``tpm_hint`` are start points, not caps; ``max_in_flight`` an optional cap;
    ``hosted``: the lane's server is a hosted API (:mod:`~promptforge_dagster.core.rate.hosted`)."""

    window_s: float = 30.0
    rpm_hint: float | None = None
    tpm_hint: float | None = None
    max_in_flight: int | None = None
    hosted: bool = False  # its rate limits refuse what it cannot serve: no blind in-flight bound, no queue ceiling
    min_rpm: float = 1.0  # the floor a lane is ever cut to: it must still learn that the ceiling returned
    max_rpm: float = 1_000_000.0  # above any account's limit; bounds arithmetic
    discovery: Discovery = field(default_factory=Discovery)
    steady: Steady = field(default_factory=Steady)
    concurrency: Concurrency = field(default_factory=Concurrency)

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ValueError("window_s must be positive")
        for name in ("rpm_hint", "tpm_hint"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if not 0 < self.steady.margin < 0.5 or not 0 < self.discovery.backoff < 1:
            raise ValueError("margin must be in (0, 0.5) and backoff in (0, 1)")
        if not 0 < self.steady.stated_margin <= self.steady.margin:
            raise ValueError("stated_margin must be in (0, margin]")
        s = self.steady
        if not 0 < s.probe_gain_min <= s.slow_probe_gain <= s.probe_gain <= s.probe_gain_max:
            raise ValueError("0 < probe_gain_min <= slow_probe_gain <= probe_gain <= probe_gain_max")
        if self.discovery.growth <= 1 or not 0 <= self.steady.counted_refusals_weight <= 1:
            raise ValueError("growth must exceed 1 and counted_refusals_weight be in [0, 1]")
        if not 0 < self.min_rpm < self.max_rpm:
            raise ValueError("0 < min_rpm < max_rpm")
