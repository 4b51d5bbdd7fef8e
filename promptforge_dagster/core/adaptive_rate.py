"""The adaptive rate controller: learns the provider's real ceiling while the job runs.

Modelled on TCP congestion control, with one twist that a token-bucket provider makes
possible: while the account is dry, the rate at which it admits requests **is** the
ceiling. So a decrease does not halve blindly; it measures.

* **Admitted, not answered.** Refusals come back in milliseconds, answers after the
  model has written them, seconds later. A request counts as admitted once its refusal
  could no longer arrive (twice the slowest recent refusal), so measuring takes as long
  as the ceiling needs to show, whatever the provider's latency.
* **Slow start**: no limit known; the allowance grows ``slow_start_growth``-fold per
  window (at most per ``slow_start_window_s``), only while requests wait for it (no
  growth while the job does not use its allowance).
* **First refusal**: a short measurement (``measure_*``) counts requests admitted per
  second of sending while the account is dry; that is the ceiling estimate, and the
  allowance drops just under it (``margin``). Far above the ceiling (slow start
  overshoots; refusals go on after a step back) it measures at ``measure_cut`` of the
  refused rate, for a fraction of the refusals; if that went under the ceiling the
  ceiling is bracketed, the allowance climbs back no higher than the refused rate and
  the next refusal is measured there. The RPM ceiling is learned from admitted requests,
  the TPM ceiling from their tokens; separately when the provider says which limit it
  hit (header or message), both otherwise.
* **Recovery**: a cubic curve (as in TCP CUBIC and AWS's adaptive retry mode) returns to
  just under the last ceiling within ``return_windows`` windows. **Avoidance**: it holds
  there, then probes above within a window (``probe_gain``); probes are spaced by
  windows and by ``probe_requests``, less often while successive estimates agree. A
  refused probe steps back; refused at the plateau, the estimate is trimmed.
* **A risen ceiling** is recognised without guessing: since the account was last dry it
  can admit no more than its ceiling refills in that time, so admitting clearly more
  means it rose (slow start finds the new one). Idle gaps and the provider's own burst
  cannot fake this. After an idle gap, goodput above the ceiling once busy for
  ``confirm_busy_s`` says so instead.
* **TPM**: an announced TPM limit caps the request rate through a rolling p95 of tokens
  per request (safe before anything is known of the traffic). A learned TPM ceiling, or a
  hinted one (a start point, reached once request sizes are known), is paced by a token
  bucket charged each request's own tokens, so mixed prompt sizes still fill it.
* At most one decrease per window; within a window only as an emergency, when requests
  sent *after* the last decrease are still refused at more than ``emergency_refused_share``.
* **Overload** (503/529, "overloaded") pauses with exponential backoff; it never lowers a
  learned ceiling.
* **Headers**: ``retry-after`` pauses the lane (except during a measurement);
  ``x-ratelimit-limit-*`` and ``anthropic-ratelimit-*`` seed and cap the ceilings. No
  header is required.
* **Bursts**: after an idle gap the bucket holds ``burst_s`` seconds of rate. A burst that
  passes allows a bigger one; a refused one measures the provider's burst (what it
  admitted less its refill meanwhile). Refusals inside a burst never lower the
  sustained rate.

>>> c = AdaptiveRateController(AdaptiveConfig(window_s=10, initial_rpm=60), now=0.0)
>>> c.acquire(0.0, est_tokens=100), c.snapshot()["phase"]
(0.0, 'slow_start')
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from promptforge_dagster.core.outcome import OutcomeKind
from promptforge_dagster.core.rate_controller import RateSample
from promptforge_dagster.core.token_bucket import TokenBucket


class Phase(str, enum.Enum):
    SLOW_START = "slow_start"
    RECOVERY = "recovery"  # after a decrease, returning to the last ceiling
    AVOIDANCE = "avoidance"  # at or above the last ceiling, probing cautiously


@dataclass(frozen=True)
class AdaptiveConfig:
    """Tuning of :class:`AdaptiveRateController`, validated.

    ``rpm_hint`` / ``tpm_hint`` are start points, not caps: the controller starts just
    under them and probes beyond.

    >>> AdaptiveConfig(margin=0.5)
    Traceback (most recent call last):
    ...
    ValueError: margin must be in [0, 0.3]
    """

    window_s: float = 30.0
    initial_rpm: float = 60.0
    rpm_hint: float | None = None
    tpm_hint: float | None = None
    slow_start_growth: float = 4.0
    slow_start_window_s: float = 5.0  # slow start grows per this, or per window if shorter (TCP: per RTT)
    margin: float = 0.03
    return_windows: float = 0.5
    probe_gain: float = 0.2
    exit_probe: float = 1.0
    max_stability: float = 3.0
    probe_requests: float = 100.0
    confirm_slack_s: float = 0.5  # successes beyond the old ceiling's refill, in seconds of it, that say it rose
    confirm_busy_s: float = 40.0  # or: goodput above it over a window after this long continuously busy
    min_rpm: float = 1.0
    max_rpm: float = 1_000_000.0
    measure_min_s: float = 0.3
    measure_max_s: float = 2.0
    measure_responses: int = 12
    measure_cut: float = 0.5  # measure at this share of the refused allowance: fewer refusals meanwhile
    measure_refused_share: float = 0.2  # a cut measurement refused less than this was not above the ceiling
    emergency_refused_share: float = 0.10
    burst_s: float = 1.0
    burst_s_max: float = 30.0
    overload_backoff_s: float = 0.5
    overload_backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ValueError("window_s must be positive")
        if not 0 <= self.margin <= 0.3:
            raise ValueError("margin must be in [0, 0.3]")
        if self.slow_start_growth <= 1:
            raise ValueError("slow_start_growth must be above 1")
        if not 0 < self.measure_cut <= 1:
            raise ValueError("measure_cut must be in (0, 1]")
        if not 0 < self.min_rpm <= self.initial_rpm <= self.max_rpm:
            raise ValueError("need 0 < min_rpm <= initial_rpm <= max_rpm")
        for name in ("rpm_hint", "tpm_hint"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ValueError(f"{name} must be positive")


class _Tally:
    """Requests sent from ``start`` (to ``end``) and the refusals among them.

    Refusals come back in milliseconds, completions after the model has written its
    answer, seconds later. So a request counts as admitted as soon as its refusal could no
    longer arrive (``settle(cutoff)``), not when its answer does: a measurement then takes
    as long as the ceiling needs to show, whatever the provider's latency.
    """

    __slots__ = ("start", "end", "_sends", "_refusals", "sent", "tokens", "refused", "refused_tokens", "last")

    def __init__(self, start: float, end: float = math.inf) -> None:
        self.start, self.end = start, end
        self._sends: deque[tuple[float, int]] = deque()
        self._refusals: deque[tuple[float, int]] = deque()
        self.sent = self.tokens = self.refused = self.refused_tokens = 0
        self.last = start  # send time of the last settled request

    def send(self, at: float, tokens: int) -> None:
        if self.start <= at <= self.end:
            self._sends.append((at, tokens))

    def refusal(self, sent_at: float, tokens: int) -> None:
        if self.start <= sent_at <= self.end:
            self._refusals.append((sent_at, tokens))

    def settle(self, cutoff: float) -> "_Tally":
        while self._sends and self._sends[0][0] <= cutoff:
            self.last, tokens = self._sends.popleft()
            self.sent += 1
            self.tokens += tokens
        while self._refusals and self._refusals[0][0] <= cutoff:
            self.refused += 1
            self.refused_tokens += self._refusals.popleft()[1]
        return self

    @property
    def refusals_pending(self) -> int:
        """Refusals already in, of requests not yet settled."""
        return len(self._refusals)

    @property
    def admitted(self) -> int:
        return max(0, self.sent - self.refused)


@dataclass(slots=True)
class _Episode:
    start: float  # when the first refusal arrived
    first_sent: float  # when the first refused request was sent: the account was empty by then
    rate: float  # the allowance held during the measurement
    before: float  # the allowance that was refused
    limit: str | None
    tally: _Tally


class AdaptiveRateController:
    """A :class:`~promptforge_dagster.core.rate_controller.RateController` that learns
    RPM and TPM ceilings. One instance per lane (provider, model, API-key hash)."""

    def __init__(self, config: AdaptiveConfig | None = None, now: float = 0.0) -> None:
        self.cfg = cfg = config or AdaptiveConfig()
        self.phase = Phase.SLOW_START
        self.rate = (cfg.rpm_hint or cfg.initial_rpm) / 60.0  # allowed requests per second
        self.ceiling_rpm: float | None = None  # learned (or hinted) ceilings
        self.ceiling_tpm: float | None = cfg.tpm_hint
        self.header_rpm: float | None = None  # limits the provider announced
        self.header_tpm: float | None = None
        self.burst_s = cfg.burst_s
        self._bucket = TokenBucket(self.rate, max(1.0, self.rate * self.burst_s), now)
        self._tok: TokenBucket | None = None  # paces tokens once TPM is the learned binding limit
        self._tpm_learned = False
        self._tok_sum = 0
        self._updated = now
        self._t_epoch = now
        self._r0 = self.rate
        self._pause_until = now
        self._blocked_at = -math.inf  # last time a request waited on the allowance
        self._refused_at = -math.inf  # last fresh refusal
        self._since_empty = _Tally(now)  # sent since the latest refused request: the account was dry then
        self._busy_since = now  # start of the current stretch of requests waiting on the allowance
        self._successes: deque[float] = deque()  # success times over the last window
        self._stability = 1.0  # grows while successive ceiling estimates agree: probe less often
        self._episode: _Episode | None = None
        self._bracket_top: float | None = None  # a cut measurement saw no refusal: the ceiling is under this
        self._bracket_reached = math.inf  # when the allowance reached the bracket's top
        self.last_decrease_at = -math.inf
        self._overload_streak = 0
        self._last_overload_at = -math.inf
        self._recent: deque[tuple[float, int]] = deque()  # sends of the last moments: an episode starts with them
        self._refusal_latency: deque[float] = deque(maxlen=32)
        self._settle = 0.5  # how long after sending a request its refusal could still arrive
        self._since_decrease: _Tally | None = None  # sends and refusals since the last decrease
        self._tokens: deque[int] = deque(maxlen=256)
        self._p95_cache: int | None = None
        self._burst_clean = False
        self._burst = _Tally(-math.inf)  # requests sent inside the current burst window (start to end)
        self._burst_learned = False  # a refused burst has measured the provider's burst
        self.sent = 0
        self.rate_limited = 0
        self.overloaded = 0
        self.decreases = 0
        self.burst_refusals = 0
        self._tpm_hint_pending = bool(cfg.tpm_hint)  # start at it once request sizes are known
        if cfg.tpm_hint:
            self._tpm_learned = True  # a start point: paced by each request's tokens, probed beyond
        if cfg.rpm_hint:
            self.ceiling_rpm = cfg.rpm_hint
            self._enter_plateau(now)

    # -- RateController -------------------------------------------------------
    def acquire(self, now: float, est_tokens: int) -> float:
        self._advance(now)
        if now < self._pause_until:
            return self._pause_until - now
        wait = self._bucket.wait_time(now, 1.0)
        if self._tok is not None:
            wait = max(wait, self._tok.wait_time(now, float(est_tokens)))
        if wait > 0.0:
            self._blocked_at = now
            if self._burst_clean and now < self._burst.end:
                self._burst.end = now  # the burst is spent: from here on, the sustained rate
            return wait
        idle = not self._utilised(now)  # nothing has waited on the allowance lately: a real gap
        if idle and self._bucket.level(now) >= max(2.0, self._bucket.capacity - 1e-9) and self.w_max() is not None:
            self._burst = _Tally(now, end=now + self.burst_s)  # a full bucket after idle: this opens a burst
            self._burst_clean = True
        self._bucket.take(now, 1.0)
        if self._tok is not None:
            self._tok.take(now, float(est_tokens))
        self.sent += 1
        tokens = max(1, int(est_tokens))
        self._note_send(now, tokens)
        if len(self._tokens) == self._tokens.maxlen:
            self._tok_sum -= self._tokens[0]
        self._tokens.append(tokens)
        self._tok_sum += tokens
        if self.sent % 32 == 1:
            self._p95_cache = None  # recomputed lazily, not on every request
        return 0.0

    def record(self, sample: RateSample) -> None:
        now = sample.at
        self._advance(now)
        self._seed_from_headers(sample, now)
        if sample.kind is OutcomeKind.SUCCESS:
            self._overload_streak = 0
            self._successes.append(now)
            while self._successes[0] < now - self.cfg.window_s:  # the last window only: flat memory
                self._successes.popleft()
        elif sample.kind is OutcomeKind.OVERLOADED:
            self._on_overload(sample)
        elif sample.kind is OutcomeKind.RATE_LIMITED:
            self.rate_limited += 1
            self._refusal_latency.append(max(0.0, now - sample.sent_at))
            self._settle = max(0.05, 2.0 * max(self._refusal_latency))
            tokens = max(1, sample.est_tokens or sample.tokens)
            for tally in self._tallies():
                tally.refusal(sample.sent_at, tokens)
            if sample.sent_at > self._since_empty.start:
                self._since_empty = self._tally_from(sample)
            self._on_refused(sample)

    def snapshot(self) -> dict[str, Any]:
        p95 = self.p95_tokens()
        return {
            "controller": "adaptive",
            "phase": self.phase.value,
            "allowed_rpm": round(self.rate * 60.0, 2),
            "allowed_tpm": round(self.rate * 60.0 * (self._tokens_per_request() or 0), 1) or None,
            "learned_rpm_ceiling": _round(self.ceiling_rpm),
            "learned_tpm_ceiling": _round(self.ceiling_tpm),
            "header_rpm_limit": self.header_rpm,
            "header_tpm_limit": self.header_tpm,
            "p95_tokens_per_request": p95,
            "burst_s": round(self.burst_s, 2),
            "rate_limited": self.rate_limited,
            "overloaded": self.overloaded,
            "decreases": self.decreases,
            "sent": self.sent,
            "window_s": self.cfg.window_s,
        }

    # -- checkpoints and warm starts ------------------------------------------
    def export_state(self) -> dict[str, Any]:
        """What a warm restart needs: learned ceilings, allowance, burst and config."""
        return {"rate": self.rate, "ceiling_rpm": self.ceiling_rpm, "ceiling_tpm": self.ceiling_tpm,
                "header_rpm": self.header_rpm, "header_tpm": self.header_tpm, "burst_s": self.burst_s,
                "p95_tokens": self.p95_tokens(), "tpm_learned": self._tpm_learned, "config": asdict(self.cfg)}

    @classmethod
    def from_state(cls, state: dict[str, Any], now: float,
                   config: AdaptiveConfig | None = None) -> "AdaptiveRateController":
        """Start from what an earlier run learned: at its ceiling, not in slow start."""
        c = cls(config or AdaptiveConfig(**state.get("config", {})), now)
        c.ceiling_rpm, c.ceiling_tpm = state.get("ceiling_rpm"), state.get("ceiling_tpm")
        c.header_rpm, c.header_tpm = state.get("header_rpm"), state.get("header_tpm")
        c.burst_s = float(state.get("burst_s") or c.burst_s)
        if state.get("p95_tokens"):
            c._tokens.append(int(state["p95_tokens"]))
            c._tok_sum = int(state["p95_tokens"])
        c._tpm_learned = bool(state.get("tpm_learned"))
        c.rate = max(c.cfg.min_rpm / 60.0, float(state.get("rate") or c.rate))
        if c.w_max() is not None:
            c._enter_plateau(now)
        c._clamp()
        c._sync(now)
        return c

    def rescale(self, factor: float, now: float) -> None:
        """This job's share of the lane changed (jobs joined or left): scale the learned
        ceilings, the allowance and the announced limits by ``factor``."""
        if factor <= 0 or factor == 1.0:
            return
        self._advance(now)
        for name in ("ceiling_rpm", "header_rpm", "header_tpm"):
            v = getattr(self, name)
            if v:
                setattr(self, name, v * factor)
        if self.ceiling_tpm and (self._tpm_learned or self.ceiling_tpm != self.cfg.tpm_hint):
            self.ceiling_tpm *= factor
        self.rate *= factor
        self._r0 *= factor
        self._since_empty = _Tally(now)  # what was admitted so far was another share's
        self._clamp()
        self._sync(now)

    # -- derived --------------------------------------------------------------
    def p95_tokens(self) -> int | None:
        if self._p95_cache is None and self._tokens:
            ordered = sorted(self._tokens)
            self._p95_cache = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        return self._p95_cache

    def mean_tokens(self) -> float | None:
        return self._tok_sum / len(self._tokens) if self._tokens else None

    def _tokens_per_request(self) -> float | None:
        """Learned TPM ceilings convert by the mean (the token bucket absorbs the spread);
        hinted or announced ones by the p95, to stay under them before anything is known."""
        return self.mean_tokens() if self._tpm_learned else self.p95_tokens()

    def _w_tok(self) -> float | None:
        per = self._tokens_per_request()
        return self.ceiling_tpm / 60.0 / per if self.ceiling_tpm and per else None

    def w_max(self) -> float | None:
        """The ceiling in requests per second: the lower of the RPM and TPM ceilings."""
        options = [w for w in (self.ceiling_rpm / 60.0 if self.ceiling_rpm else None, self._w_tok()) if w]
        return min(options) if options else None

    def tpm_binds(self) -> bool:
        w_tok = self._w_tok()
        return self._tpm_learned and w_tok is not None and (not self.ceiling_rpm or w_tok < self.ceiling_rpm / 60.0)

    # -- internals ------------------------------------------------------------
    def _capacity(self) -> float:
        # the provider's burst is its sustained rate times its burst: a probe above the
        # ceiling must not inflate the burst too
        w = self.w_max()
        return max(1.0, (min(self.rate, w) if w else self.rate) * self.burst_s)

    def _sync(self, now: float) -> None:
        """Pace by both learned ceilings, each scaled by the allowance: whichever binds
        at the moment does. A silent provider leaves both learned from one refusal, and
        with mixed prompt sizes either could be the real one."""
        w = self.w_max()
        if self._tpm_learned and self.ceiling_tpm and w:
            share = self.rate / w
            mean = self.mean_tokens() or 1.0
            tok_rate = share * self.ceiling_tpm / 60.0
            cap = max(float(self.p95_tokens() or mean), tok_rate / max(share, 1.0) * self.burst_s)
            if self._tok is None:  # just learned, the account just ran dry: no burst now
                self._tok = TokenBucket(tok_rate, cap, now, full=False)
            else:
                self._tok.set_rate(now, tok_rate, cap)
            req_rate = share * self.ceiling_rpm / 60.0 if self.ceiling_rpm else self.rate * 2.0
            self._bucket.set_rate(now, req_rate, max(1.0, req_rate / max(share, 1.0) * self.burst_s))
        else:
            self._tok = None
            self._bucket.set_rate(now, self.rate, self._capacity())

    def _k(self) -> float:
        return self.cfg.return_windows * self.cfg.window_s

    def _enter_plateau(self, now: float) -> None:
        """Sit just under the ceiling, at the flat top of the cubic, then probe."""
        w = self.w_max()
        if w is None:
            return
        self.rate = w * (1 - self.cfg.margin)
        self.phase = Phase.AVOIDANCE
        self._r0 = self.rate
        self._t_epoch = now - self._k()

    def _rose(self, w: float, now: float) -> bool:
        """Since the account was last seen dry, it can have admitted no more than its
        ceiling refills in that time. Admitted clearly more than ``w`` would: it rose.
        Idle gaps and provider bursts cannot fake this: they only spend that refill."""
        tally = self._since_empty.settle(now - self._settle)
        elapsed = tally.last - tally.start
        admitted, refill = tally.admitted, w
        if self.tpm_binds():  # counted in tokens: prompt sizes vary
            admitted, refill = tally.tokens - tally.refused_tokens, self.ceiling_tpm / 60.0
        slack = max(3.0 * admitted / max(1, tally.admitted), refill * self.cfg.confirm_slack_s)
        # beyond the estimate's own error (a few per cent): a slightly low one is probed up
        return admitted > refill * elapsed * (1 + 2 * self.cfg.margin) + slack

    def _goodput(self, now: float) -> float:
        """Successful requests per second over the last window."""
        horizon = now - self.cfg.window_s
        while self._successes and self._successes[0] < horizon:
            self._successes.popleft()
        return len(self._successes) / self.cfg.window_s

    def _utilised(self, now: float) -> bool:
        return now - self._blocked_at <= max(1.0, 2.0 / max(self.rate, 1e-9))

    def _holding(self, now: float) -> bool:
        return now - self._refused_at <= max(1.0, 2.0 / max(self.rate, 1e-9))


    def _tallies(self) -> list[_Tally]:
        out = [self._since_empty, self._burst] if self._burst_clean else [self._since_empty]
        if self._since_decrease is not None:
            out.append(self._since_decrease)
        if self._episode is not None:
            out.append(self._episode.tally)
        return out

    def _tally_from(self, refused: RateSample) -> _Tally:
        """A tally from a refused request on: the ones sent since, and its refusal."""
        tally = _Tally(refused.sent_at)
        for at, tokens in self._recent:
            tally.send(at, tokens)
        tally.refusal(refused.sent_at, max(1, refused.est_tokens or refused.tokens))
        return tally

    def _note_send(self, now: float, tokens: int) -> None:
        self._recent.append((now, tokens))
        cutoff = now - self._settle
        while self._recent and self._recent[0][0] < cutoff - self._settle - 0.1:
            self._recent.popleft()
        for tally in self._tallies():
            tally.send(now, tokens)
            tally.settle(cutoff)  # keeps each tally to the last moments: flat memory however long the job

    def _advance(self, now: float) -> None:
        dt = now - self._updated
        if dt <= 0:
            return
        self._updated = now
        if self._burst_clean and now > self._burst.end + self._settle:
            self._close_burst(now)
        if self._episode is not None:
            if self._episode_ready(now):
                self._finish_episode(now)
            return
        if not self._utilised(now):
            self._busy_since = now
        if not self._utilised(now) or self._holding(now):
            self._t_epoch += dt  # freeze the curve: allowance unused, or refusals coming in
            return
        cfg = self.cfg
        w = self.w_max()
        if self.phase is Phase.SLOW_START or w is None:
            self.rate *= cfg.slow_start_growth ** (dt / min(cfg.window_s, cfg.slow_start_window_s))
            if self._tpm_hint_pending and w is not None and self.rate >= w * (1 - cfg.margin):
                self._tpm_hint_pending = False  # a hinted TPM, now that request sizes are known: start there
                self._enter_plateau(now)
        else:
            k = self._k()
            t = now - self._t_epoch
            top = w * (1 - cfg.margin)  # the estimate is a few per cent either way: sit under it
            if t < k:  # concave: back to the last ceiling, flattening as it nears
                self.rate = top - max(top - self._r0, 0.0) * ((k - t) / k) ** 3
                self.phase = Phase.RECOVERY
            else:  # convex: beyond it, slowly at first; less often while estimates agree
                # probing costs a refusal or two: space probes by time and by requests sent,
                # holding under the ceiling, then rise within a window: a risen ceiling is
                # found sooner than by a slow climb spaced as far
                # (by requests, but never more than a few windows: a low estimate must not
                # leave the lane stuck below its ceiling for long)
                spacing = max(cfg.window_s * self._stability, min(cfg.probe_requests / w, 4 * cfg.window_s))
                ramp = min(spacing, cfg.window_s)
                probe_t = max(0.0, t - k - (spacing - ramp)) / ramp
                self.rate = top * (1 + cfg.probe_gain * probe_t ** 3)
                self.phase = Phase.AVOIDANCE
            # An idle gap since the account was last dry weakens that test (it refilled
            # meanwhile): then goodput above the ceiling, once continuously busy long enough
            # to have spent any burst the gap refilled, says so instead.
            idled = self._busy_since > self._since_empty.start
            busy_long = now - self._busy_since >= max(3 * cfg.window_s, cfg.confirm_busy_s)
            if self.rate > w and (self._rose(w, now) or idled and busy_long
                                  and self._goodput(now) >= w * (1 + cfg.exit_probe / 2)):
                self.phase = Phase.SLOW_START  # admitted more than the old ceiling could: it rose
            elif self.rate > w * (1 + cfg.exit_probe):
                self.rate = w * (1 + cfg.exit_probe)  # not confirmed yet: hold the probe here
        if self._bracket_top is not None and self.rate >= self._bracket_top:
            # held at the bracket's top for a window without a refusal: it was a stray one
            self.rate = self._bracket_top
            self._bracket_reached = min(self._bracket_reached, now)
            if now - self._bracket_reached >= cfg.window_s:
                self._bracket_top = None
        self._clamp()
        self._sync(now)

    def _clamp(self) -> None:
        cfg = self.cfg
        hi = cfg.max_rpm / 60.0
        if self.header_rpm:
            hi = min(hi, self.header_rpm / 60.0)
        per = self._tokens_per_request()
        if self.header_tpm and per:
            hi = min(hi, self.header_tpm / 60.0 / per)
        lo = cfg.min_rpm / 60.0
        self.rate = min(max(self.rate, lo), max(hi, lo))

    def _seed_from_headers(self, sample: RateSample, now: float) -> None:
        s = sample.signals
        changed = False
        if s.limit_requests and s.limit_requests != self.header_rpm:
            self.header_rpm = float(s.limit_requests)
            if self.ceiling_rpm is None or self.ceiling_rpm > self.header_rpm:
                self.ceiling_rpm = self.header_rpm
            changed = True
        if s.limit_tokens and s.limit_tokens != self.header_tpm:
            self.header_tpm = float(s.limit_tokens)
            if self.ceiling_tpm is None or self.ceiling_tpm > self.header_tpm:
                self.ceiling_tpm = self.header_tpm
            changed = True
        if changed:
            if self.phase is Phase.SLOW_START and self._episode is None and self.decreases == 0:
                w = self.w_max()
                if w is not None and self.rate < w * (1 - self.cfg.margin):
                    self._enter_plateau(now)
            self._clamp()
            self._sync(now)

    def _on_overload(self, sample: RateSample) -> None:
        self.overloaded += 1
        if sample.sent_at < self._last_overload_at:
            return  # in flight when the last overload was seen: the same event
        self._last_overload_at = sample.at
        self._overload_streak += 1
        cfg = self.cfg
        backoff = min(cfg.overload_backoff_max_s, cfg.overload_backoff_s * 2 ** (self._overload_streak - 1))
        self._pause_until = max(self._pause_until, sample.at + max(backoff, sample.signals.retry_after_s or 0.0))

    def _limit_of(self, sample: RateSample) -> str | None:
        s = sample.signals
        if s.remaining_tokens == 0 and s.remaining_requests not in (0,):
            return "tokens"
        if s.remaining_requests == 0 and s.remaining_tokens not in (0,):
            return "requests"
        return sample.limit

    def _on_refused(self, sample: RateSample) -> None:
        now = sample.at
        if self._burst_clean and self._burst.start <= sample.sent_at <= self._burst.end:
            return  # refused inside a burst after idle: the burst was too big, not the rate too high
        if self._episode is not None or sample.sent_at < self.last_decrease_at:
            return  # being measured, or sent before the last decrease (already accounted for)
        self._refused_at = now  # hold growth while fresh refusals come in
        recent = now - self.last_decrease_at < self.cfg.window_s
        emergency = recent and self._emergency(now)
        if recent and not emergency:
            if sample.signals.retry_after_s:
                self._pause_until = max(self._pause_until, now + sample.signals.retry_after_s)
            return
        w = self.w_max()
        if (w is not None and not emergency and self.phase is not Phase.SLOW_START
                and self.rate >= w * (1 - self.cfg.margin) * (1 - 1e-9)):
            # refused at or above the known ceiling: a probe, or an estimate a little high.
            # Step back under it (trimming it if refused barely above); if the ceiling fell,
            # refusals go on after the step back and the emergency measures it.
            if self.rate <= w * (1 + self.cfg.margin):
                self._scale_ceilings(1 - self.cfg.margin)
                w = self.w_max() or w
            self._decrease(now, w * (1 - self.cfg.margin), agrees=True)
            return
        # Far above the ceiling (slow start overshoots; refusals go on after a step back),
        # measure at a cut rate: while still above the ceiling the share refused says where
        # it is, at a fraction of the refusals. Refused while returning to it, or once a cut
        # has gone under it (a bracket is open), the rate is close: measure there, uncut.
        before = self.rate
        cut = (self._bracket_top is None and self.cfg.measure_cut < 1.0
               and (emergency or self.phase is Phase.SLOW_START))
        if cut:
            self.rate = before * self.cfg.measure_cut
            self._sync(now)
        tally = _Tally(now) if cut else self._tally_from(sample)
        self._episode = _Episode(start=now, first_sent=sample.sent_at,
                                 rate=self.rate, before=before, limit=self._limit_of(sample), tally=tally)


    def _close_burst(self, now: float) -> None:
        """A burst passed clean: allow a bigger one (gently once the provider's burst is
        known). A refused one measured it: what the account admitted over the burst window,
        less what it refills in that time, is the burst it holds; keep a little under it."""
        self._burst_clean = False
        burst = self._burst.settle(now - self._settle)
        if not burst.refused:
            self.burst_s = min(self.cfg.burst_s_max, self.burst_s * (1.02 if self._burst_learned else 1.5))
            return
        self.burst_refusals += 1
        w = self.w_max() or self.rate
        provider_burst_s = burst.admitted / w - (burst.end - burst.start)
        self.burst_s = max(1.0, provider_burst_s * (1 - 2 * self.cfg.margin))
        self._burst_learned = True
        self._sync(now)

    def _scale_ceilings(self, factor: float) -> None:
        if self.ceiling_rpm:
            self.ceiling_rpm *= factor
        if self.ceiling_tpm and self._tpm_learned:
            self.ceiling_tpm *= factor

    def _emergency(self, now: float) -> bool:
        """Requests sent after the last decrease are still refused: it was not enough.
        Refusals are counted as they come (they are fast); requests sent, once settled."""
        fresh = self._since_decrease
        if fresh is None:
            return False
        fresh.settle(now - self._settle)
        refused = fresh.refused + fresh.refusals_pending
        return refused >= 3 and refused > self.cfg.emergency_refused_share * max(1, fresh.sent)

    def _episode_ready(self, now: float) -> bool:
        ep, cfg = self._episode, self.cfg
        settle = self._settle
        elapsed = now - ep.start
        if elapsed >= max(cfg.measure_max_s, min(cfg.window_s, 1.5 * cfg.measure_responses / ep.rate)) + settle:
            return True
        if elapsed < cfg.measure_min_s:
            return False
        tally = ep.tally.settle(now - settle)
        # enough admitted over enough time of sending: a few requests sent within
        # milliseconds say little about the account's refill rate
        return tally.admitted >= cfg.measure_responses and tally.last - tally.start >= cfg.measure_min_s

    def _finish_episode(self, now: float) -> None:
        ep, self._episode = self._episode, None
        cfg = self.cfg
        # Requests sent once the account was empty: the share admitted, times the rate
        # they were sent at, is the rate the account refills at -- its ceiling.
        tally = ep.tally.settle(now - self._settle)
        # the refused are the larger requests when tokens bind: count what was admitted
        ok_tokens = (tally.tokens - tally.refused_tokens) / tally.admitted if tally.admitted else 0.0
        span = tally.last - tally.start if tally.sent > 1 else 0.0
        # requests per second of sending while the account was dry. It was empty when the
        # span began, so it refilled over all of it: n / span.
        send_rate = tally.sent / span if span > 0 else ep.rate
        ok_share = tally.admitted / tally.sent if tally.sent else 0.0
        old = ep.before
        self.last_decrease_at = now
        self.decreases += 1
        agrees = False
        self._bracket_top = None
        refused = tally.refused
        if ep.tally.start > ep.first_sent and refused < cfg.measure_refused_share * tally.sent:
            # the cut went under the ceiling, or so near it that the account was seldom
            # dry: the ceiling lies between the two rates. Climb back no higher than the
            # refused rate, and measure there, uncut, if refused again.
            self._bracket_top, self._bracket_reached = old, math.inf
            # An estimate above `old` is too high (refused on and on there); one under the
            # cut rate, too low (admitted at it, in slow start after a rise): climb to `old`.
            w = self.w_max()
            if w is not None and (w > old or w < ep.rate):
                self._scale_ceilings(old / w)
            self._decrease(now, ep.rate, agrees=False)
            return
        if not refused:
            # a stray refusal: step back a little, learn nothing
            self.rate = old * (1 - 2 * cfg.margin)
        else:
            before = self.w_max()
            c_req = ok_share * min(send_rate, ep.rate * 1.2)
            if ep.limit in (None, "requests"):
                self.ceiling_rpm = c_req * 60.0
                if self.header_rpm:
                    self.ceiling_rpm = min(self.ceiling_rpm, self.header_rpm)
            if ep.limit in (None, "tokens"):
                self.ceiling_tpm = c_req * ok_tokens * 60.0
                self._tpm_learned = True
                if self.header_tpm:
                    self.ceiling_tpm = min(self.ceiling_tpm, self.header_tpm)
            w = self.w_max() or old
            self.rate = min(old * (1 - cfg.margin), max(old * 0.1, w * (1 - cfg.margin)))
            agrees = before is not None and abs(w - before) <= 0.05 * before
        self._decrease(now, self.rate, agrees=agrees)

    def _decrease(self, now: float, rate: float, *, agrees: bool) -> None:
        cfg = self.cfg
        self._since_decrease = _Tally(now)
        if self.last_decrease_at != now:
            self.last_decrease_at = now
            self.decreases += 1
        self.rate = rate
        self._stability = min(cfg.max_stability, self._stability * 2) if agrees else 1.0
        self.phase = Phase.RECOVERY if self.w_max() is not None else Phase.SLOW_START
        self._r0 = self.rate
        self._t_epoch = now
        self._clamp()
        self._sync(now)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
