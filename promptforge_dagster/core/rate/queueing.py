"""A server that queues instead of refusing: its answers slow down as the lane sends more.

A self-hosted server (vLLM, TGI, Ollama) with no gateway in front refuses nothing: past its
batch size requests wait in its queue and every answer takes longer, while what it serves a
second stays what its batch serves. Sending faster only lengthens the queue, and nothing
ever says stop: the rate climbs, Little's law follows the longer answers, and the queue grows
until answers take longer than the client waits (``--timeout``, 120 s by default), when every
request times out.

Watched per window of answers (at least :data:`WINDOW_MIN_S` and two unloaded answer times):
the server is *queueing* when, :data:`QUEUEING_WINDOWS` windows in a row, answers took
:data:`SLOW_RATIO` times as long as in the lane's fastest window (its *floor*) and the lane
sent more than came back (the queue grew) or sent all its in-flight bound allowed (the queue
is as long as the lane may make it: a hosted API's slower answers are paced by the rate, and
its Little's-law bound leaves room). A request that timed out counts as an answer as slow as
its deadline, but not for the floor, which only served answers set; a window most of whose
answers timed out closes at once and is enough alone (a server with 20-s answers and 4 slots
was otherwise flooded again every deadline). The server's concurrency is then the most it
served a second in any window (a queue past the client's deadline serves nothing: every
request times out) times the floor's
answer time (Little's law, unloaded), with :data:`BATCH_HEADROOM` to keep its batch full:
the lane's in-flight ceiling. A ceiling that holds the lane while answers come
back near the floor, or whose last raise served more, is raised :data:`PROBE_STEP` (the server
got faster, others left, or it was a hosted API's slow spell, which no queue explains), at most
every :data:`PROBE_EVERY_S`, up to where answers slow again.

A hosted API whose answers slow down by themselves (2 s, then 6 s) also fills the lane's
in flight with its longer answers, and reads as a queue. Held at the ceiling, a queue of the
lane's making is short and its server serves all it did; so when, two windows in a row,
answers *sent under the ceiling* are still slow and fewer than :data:`UNSATURATED` of the most
ever served come back a second (every one served: a timeout is a queue's), the slowness is
the model's own: the ceiling makes room by Little's law at the slower answers, and they
become the floor.

A slow answer shows a queue only an answer time after the queue began: a lane ramping its
rate up from a cold start (twice as fast every half second) would have sent thousands into it
by then, to time out once each. So the ramp is watched per second too: the lane **sent
:data:`RAMP_GROWTH` times more than the second before while the answers served grew less than
:data:`RAMP_FLAT`** (at least :data:`RAMP_MIN_ANSWERS` of them): the answers no longer follow
the sends, what the server serves is reached, and the same ceiling is set at once. A hosted
API's answers follow its sends an answer time later, growing as they did; a lane paced at a
rate sends no more than the second before. Only the ceilings this watch set are raised: one a
gateway taught by refusing stays (each raise past it would cost a refusal).

>>> w = QueueWatch()
>>> def second(s, sent, answer_s, ceiling=None):   # one second: ``sent`` sent, 32 answers back
...     bound = int(ceiling) if ceiling else 10_000
...     for i in range(sent):
...         w.sent(s + i / sent)
...     return [c for i in range(32) if (c := w.answered(s + (i + 1) / 32, answer_s, bound, ceiling))]
>>> [second(s, 32, 1.0) for s in range(10)][-1]     # unloaded: as many sent as served, answers in 1 s
[]
>>> found = [(s, c) for s in range(10, 40) for c in second(s, 64, 1.0 + (s - 9) * 1.0)]   # a queue grows
>>> found[0][0], round(found[0][1])   # two slow windows on: 32 served a second x 1 s unloaded x 1.25
(12, 40)
>>> ceiling, changes = 40.0, []     # the queue's last slow answers, then held at 40 with answers near the floor:
>>> for s in range(40, 70):        # raised a tenth every 10 s
...     for ceiling in second(s, 32, 1.2, ceiling=ceiling):
...         changes.append((s, round(ceiling, 1)))
>>> changes
[(40, 40.0), (42, 44.0), (52, 48.4), (62, 53.2)]
"""

from __future__ import annotations

WINDOW_MIN_S = 1.0  # a window lasts at least this (and two floor answer times): answers enough to read a median
WINDOW_MIN_ANSWERS = 16  # ... and holds this many answers: fewer measure no typical answer time
SLOW_RATIO = 1.5  # answers this much slower than the floor: requests wait in a queue (a hosted API's own
# slowdowns are waited out: the queue condition below does not hold once its longer answers are in flight)
GROWTH_RATIO = 1.1  # sent over came back in a window: the queue grew (a lane ramping its rate up sends a few %
# more than comes back; one paced at a rate ceiling, what comes back)
QUEUEING_WINDOWS = 2  # windows in a row: a hosted API that slows down fills its longer answers within one
BATCH_HEADROOM = 1.25  # in flight over what the server serves at the floor: its batch kept full, a short queue
PROBE_NEAR_FLOOR = 1.2  # held at the ceiling with answers this close to the floor: there is room
PROBE_STEP = 1.1  # the ceiling's rise per window with room
PROBE_EVERY_S = 10.0  # ... at most this often: a raise past a gateway's queue limit costs a refusal
PROBE_PAID = 1.05  # a raise that served this much more (a tenth more in flight): the lane was not queueing
UNSATURATED = 0.6  # held at the watch's ceiling with slow answers, served under this share of the most the
# server served a second: a hosted API whose answers slide from 2 s to 6 s answers 0.42 of it (its in flight
# grew with the answers, which reads as a queue); a queue serves all it did, its batch full (0.9-1.0)
RAMP_BIN_S = 1.0  # sends and answers counted per second for the ramp rule: the climb doubles per half second
RAMP_GROWTH = 3.0  # sent this many times more than the second before: a cold start's climb (nothing else
# grows a lane threefold in a second: a probe is +50%, a climb back halfway to a refused rate)
RAMP_FLAT = 1.5  # ... while the answers served grew less than this (a hosted API's grow as its sends did)
RAMP_MIN_ANSWERS = 8  # answers served in the second before: fewer are no rate to call flat


class QueueWatch:
    """Reads whether the lane's server is queueing its requests, and the in-flight ceiling
    that keeps its batch full without a queue."""

    def __init__(self) -> None:
        self.floor_s: float | None = None  # the fastest window's median answer time (the server unloaded)
        self.served_per_s = 0.0  # the most answers a second any window had: what the server serves
        self.in_flight = 0  # the lane's requests out (sent, not back)
        self._start: float | None = None
        self._sent = 0
        self._back = 0  # answers of any kind in the window (a refusal came back too)
        self._latencies: list[float] = []  # answer times in the window (a timeout's, its deadline)
        self._served_latencies: list[float] = []  # ... of the answers served (the floor's: a timeout measures no
        # server's answer time, and a floor read from them hid a queue every request timed out in)
        self._full = False  # the in-flight bound held the lane in this window
        self._held = False  # ... and it was the ceiling
        self._slow = 0  # queueing windows in a row
        self._unqueued = 0  # windows in a row whose slow answers were no queue of the lane's making
        self._set_at = 0.0  # when this watch last set its ceiling
        self._oldest_sent = float("inf")  # the earliest send of the window's answers
        self._raised: tuple[float, float] | None = None  # when the ceiling was last raised, and what it served
        self.ceiling: float | None = None  # the last ceiling this watch set
        self._bins: list[list[float]] = []  # [start, sent, served] of the latest seconds, for the ramp rule
        self._ramp_read = 0.0  # the start of the latest second the ramp rule has read
        self._most_shown = 0.0  # the most the answers have shown the server holds, ever (:meth:`shown`)

    def sent(self, now: float) -> None:
        if self._start is None:
            self._start = now
        self._sent += 1
        self.in_flight += 1
        self._bin(now)[1] += 1

    def answered(self, now: float, latency: float | None, bound: int, ceiling: float | None,
                 served: bool = True) -> float | None:
        """One answer back after ``latency`` seconds (None: a refusal, which measures no
        queue; ``served`` False: no answer, a timeout); ``bound`` the lane's in-flight bound
        now and ``ceiling`` the ceiling in it. A new ceiling when a window closes that calls
        for one, else None."""
        if self._start is None:
            self._start = now
        if self.in_flight >= bound - 1:  # (as this answer came back, the lane was full)
            self._full = True
            self._held = self._held or (ceiling is not None and ceiling <= bound + 1)
        self.in_flight = max(0, self.in_flight - 1)
        self._back += 1
        if latency is not None:
            self._latencies.append(latency)
            if served:
                self._served_latencies.append(latency)
            self._oldest_sent = min(self._oldest_sent, now - latency)
        self._bin(now)[2] += int(latency is not None and served)
        if self.floor_s is not None:
            self._most_shown = max(self._most_shown, self._bins[-1][2] / RAMP_BIN_S * self.floor_s)
        if ceiling is None and self._ramp_outran_answers():
            return self._set(now, max(1.0, max(self.served_per_s, self._bins[-2][2] / RAMP_BIN_S) * self.floor_s
                                      * BATCH_HEADROOM))
        span = now - self._start
        # most of the window gave up waiting: no need to wait two answer times, a timeout says the queue at once
        timed_out = 2 * (len(self._latencies) - len(self._served_latencies)) > len(self._latencies)
        if (span < max(WINDOW_MIN_S, 0.0 if timed_out else 2.0 * (self.floor_s or 0.0))
                or len(self._latencies) < WINDOW_MIN_ANSWERS):
            return None
        median = sorted(self._latencies)[len(self._latencies) // 2]
        n_served = len(self._served_latencies)
        served, held, all_served = n_served / span, self._held, n_served == len(self._latencies)
        since_set = self._oldest_sent >= self._set_at  # every answer was sent under the ceiling in force
        self._oldest_sent = float("inf")
        self.served_per_s = max(self.served_per_s, served)
        queue_grew = self._sent >= GROWTH_RATIO * self._back or self._full
        self._start, self._sent, self._back, self._latencies = now, 0, 0, []
        self._full = self._held = False
        if self._served_latencies:
            typical = sorted(self._served_latencies)[len(self._served_latencies) // 2]
            self.floor_s = typical if self.floor_s is None else min(self.floor_s, typical)
        self._served_latencies = []
        if self.floor_s is None:
            return None
        slow, own = median >= SLOW_RATIO * self.floor_s, held and ceiling is not None and ceiling == self.ceiling
        # held at this watch's ceiling, answers slow though sent under it (a queue held there is short), every one
        # served, fewer a second than the server served (a queue serves as many): the answers slowed by themselves
        self._unqueued = self._unqueued + 1 if (own and slow and all_served and since_set
                                                and served < UNSATURATED * self.served_per_s) else 0
        if self._unqueued >= QUEUEING_WINDOWS:
            self._unqueued = self._slow = 0
            self._raised = (now, served)
            self.floor_s = median  # the model's own answer time now: slower ones than that would be a queue
            return self._set(now, max(ceiling * PROBE_STEP, self.served_per_s * median * BATCH_HEADROOM))
        # (a window most of whose requests timed out is enough: no hosted API's slow spell outlasts the deadline,
        # and the next window of a slow floor starts minutes later, after another flood)
        queueing = slow and queue_grew and not self._unqueued
        self._slow = self._slow + (QUEUEING_WINDOWS if timed_out else 1) if queueing else 0
        if self._slow >= QUEUEING_WINDOWS:
            self._slow = 0
            return self._set(now, max(1.0, self.served_per_s * self.floor_s * BATCH_HEADROOM))
        if own and self._room(now, median, served):
            self._raised = (now, served)
            return self._set(now, ceiling * PROBE_STEP)
        return None

    def shown(self) -> float:
        """What the answers have shown the server holds: the most served a second (in a window
        or any second) x the unloaded answer time; 0 before a served answer. It does not fall
        when fewer come back: answers fewer because the lane sent fewer an answer time ago (its
        first in-flight bound, a pause) show nothing less of the server (a 20,000 RPM account with 20-s
        answers, its lane held an answer time ago, was held again by what those few showed)."""
        if self.floor_s is None:
            return 0.0
        return max(self._most_shown, self.served_per_s * self.floor_s)

    def _set(self, now: float, ceiling: float) -> float:
        if ceiling != self.ceiling:
            self._set_at = now
        self.ceiling = ceiling
        return ceiling

    def _bin(self, now: float) -> list[float]:
        """The counts of the second ``now`` falls in (the latest three kept, empty ones too)."""
        if not self._bins or now >= self._bins[-1][0] + 3 * RAMP_BIN_S:  # (after a lull, anew: nothing in them)
            self._bins = [[now, 0, 0]]
        while now >= self._bins[-1][0] + RAMP_BIN_S:
            self._bins.append([self._bins[-1][0] + RAMP_BIN_S, 0, 0])
            del self._bins[:-3]
        return self._bins[-1]

    def _ramp_outran_answers(self) -> bool:
        """Whether the latest full second sent :data:`RAMP_GROWTH` times the one before while
        the answers it served grew less than :data:`RAMP_FLAT` (read once per second)."""
        if len(self._bins) < 3 or self.floor_s is None or self._bins[-2][0] <= self._ramp_read:
            return False
        self._ramp_read = self._bins[-2][0]
        (_, sent_before, served_before), (_, sent, served) = self._bins[-3], self._bins[-2]
        return (served_before >= RAMP_MIN_ANSWERS and sent_before >= served_before
                and sent >= RAMP_GROWTH * sent_before and served < RAMP_FLAT * served_before)

    def _room(self, now: float, median: float, served: float) -> bool:
        """Whether a ceiling that held the lane may rise: not lately, and answers near the
        floor or the last raise served more."""
        if self._raised is None:
            return median <= PROBE_NEAR_FLOOR * self.floor_s
        at, served_then = self._raised
        return now - at >= PROBE_EVERY_S and (median <= PROBE_NEAR_FLOOR * self.floor_s
                                              or served >= PROBE_PAID * served_then)
