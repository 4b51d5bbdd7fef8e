"""The streaming pipeline: read prompts, pace them, send them, write results as they finish.

asyncio throughout, with bounded in-flight requests and a bounded result buffer, so a
10M-prompt job holds no more in memory than a 100-prompt one. Pacing belongs to a
:class:`~promptforge_dagster.core.rate_controller.RateController` (waiting for its slots, to
:mod:`~promptforge_dagster.core.pacing`); retries belong here (their policy, to
:mod:`~promptforge_dagster.core.retry`). The clock, the sleep and the random source are injected.

>>> import asyncio
>>> from promptforge_dagster.core.formats import JobDefaults, LineParser
>>> from promptforge_dagster.core.outcome import Outcome, OutcomeKind
>>> from promptforge_dagster.core.rate_controller import FixedRateController
>>> from promptforge_dagster.core.reader import PromptReader
>>> class Echo:
...     async def complete(self, request):
...         return Outcome(OutcomeKind.SUCCESS, 200, body={"ok": request.custom_id}, tokens_in=3, tokens_out=2)
>>> src = b'{"id": "a", "prompt": "hi"}\\n{"id": "b"}\\n'
>>> parts = []
>>> p = Pipeline(job_id="j", lines=lambda pos: PromptReader(lambda s, n: src[s:s + n], len(src), start=pos),
...              parser=LineParser(JobDefaults(model="m")), provider=Echo(),
...              controller=FixedRateController(None, now=0.0), write_part=lambda envs: parts.extend(envs))
>>> stats = asyncio.run(p.run())
>>> stats.succeeded, stats.failed, sorted(e.record["custom_id"] for e in parts)
(1, 1, ['a', 'b'])
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace
from typing import Any, Awaitable, Callable, Iterable, Mapping

from pyroaring import BitMap

from promptforge_dagster.core.commit import low_water
from promptforge_dagster.core.job_registry import LeaseLost
from promptforge_dagster.core.job.errors import INVALID_REQUEST
from promptforge_dagster.core.deployments import Deployment, DeploymentGroup, group_for
from promptforge_dagster.core.formats import BadLine, LineParser, PromptRequest
from promptforge_dagster.core.in_flight import InFlightSlots, in_flight_bound
from promptforge_dagster.core.outcome import OutcomeKind, stop_reason
from promptforge_dagster.core.pacing import LanePacing
from promptforge_dagster.core.pipeline_config import (  # noqa: F401 - Provider and JobStats are part of this API
    FLUSH_AT, FLUSH_TICKS, JobStats, PipelineConfig, Provider, answer_budget, estimate_tokens,
)
from promptforge_dagster.core.rate_controller import RateController, RateSample
from promptforge_dagster.core.rate_lanes import RateLanes
from promptforge_dagster.core.rate.signals import parse_signal
from promptforge_dagster.core.reader import RawLine, ReadPosition, read_in_batches
from promptforge_dagster.core.results import Envelope, error_record, failure_record, success_record
from promptforge_dagster.core.retry import Retries


class Pipeline:
    """Runs one job attempt over ``lines`` and returns its :class:`JobStats`.

    ``lines(position)`` opens the input at a read position; ``done`` holds ordinals an
    earlier attempt already wrote (they are skipped); ``duplicates`` holds the ordinals
    of lines whose id an earlier line has; ``write_part`` durably writes a list of
    envelopes (called off the event loop, one call per part).
    """

    def __init__(
        self,
        *,
        job_id: str,
        lines: Callable[[ReadPosition], Iterable[RawLine]],
        parser: LineParser,
        provider: Provider,
        controller: RateController | RateLanes,
        write_part: Callable[[list[Envelope]], None],
        config: PipelineConfig | None = None,
        start: ReadPosition = ReadPosition(),
        done: BitMap | None = None,
        duplicates: BitMap | None = None,
        stats: JobStats | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        offload: Callable[..., Awaitable[Any]] = asyncio.to_thread,
        checkpoint: Callable[[ReadPosition], None] | None = None,
        checkpoint_interval_s: float = 30.0,
        after_checkpoint: Callable[[], None] | None = None,
        heartbeat: Callable[[], Any] | None = None,
        heartbeat_s: float = 10.0,
        on_success: Callable[[float, float | None], None] | None = None,
        on_tick: Callable[[float], None] | None = None,
        groups: Mapping[str, DeploymentGroup] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.job_id = job_id
        self._lines = lines
        self._parser = parser
        self._provider = provider
        self.lanes = controller if isinstance(controller, RateLanes) else RateLanes.single(controller)
        self._write_part = write_part
        self.config = config or PipelineConfig()
        self._start = start
        self._done = done if done is not None else BitMap()
        self._duplicates = duplicates if duplicates is not None else BitMap()
        self.stats = stats or JobStats()
        self._clock = clock
        self._wall = wall_clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._offload = offload  # blocking reads and part writes run here, off the event loop
        self._buffer: list[Envelope] = []
        self._oldest: float | None = None
        self._flush_lock = asyncio.Lock()
        self._flushing: asyncio.Future | None = None  # the flush senders share (_flush_shared)
        self._stop = asyncio.Event()
        # Lines handed out but not yet in a written part, by ordinal: the earliest is
        # where a resumed attempt must start reading.
        self._pending: dict[int, ReadPosition] = {}
        self._first_written = False
        self._cursor = start
        self._checkpoint = checkpoint
        self._checkpoint_interval = checkpoint_interval_s
        self._after_checkpoint = after_checkpoint
        self._last_checkpoint = 0.0
        self._heartbeat = heartbeat
        self._heartbeat_s = heartbeat_s
        self._last_heartbeat = 0.0
        self._on_success = on_success  # (latency seconds, cost): telemetry's one per-request hook
        self._on_tick = on_tick  # FLUSH_TICKS times per flush interval: samples for the rate plot
        self._line_bytes = self._lines_seen = 0  # the mean prompt size, for the byte budget in flight
        self._groups = groups if groups is not None else self.lanes.groups  # model -> deployments, each a lane
        self._log = log or (lambda _message: None)
        self._pacing = LanePacing(self.lanes, clock=clock, sleep=sleep, offload=offload, no_room=self._no_room)

    # -- public ---------------------------------------------------------------
    async def run(self) -> JobStats:
        cfg = self.config
        self.stats.started_at = self._last_checkpoint = self._last_heartbeat = self._clock()
        slots = InFlightSlots(self.in_flight_limit)
        tasks: set[asyncio.Task] = set()
        flusher = asyncio.create_task(self._flush_loop())
        try:
            async for line in read_in_batches(self._lines(self._start), cfg.read_batch, self._offload):
                if self._stop.is_set():
                    break
                self._cursor = ReadPosition(line.offset, line.ordinal, line.line_no)
                if line.ordinal in self._done:
                    self.stats.skipped += 1
                    continue
                self._line_bytes += line.length
                self._lines_seen += 1
                item = self._parser.parse(
                    line.data, line.ordinal, line.line_no, line.offset,
                    length=line.length, duplicate=line.ordinal in self._duplicates,
                )
                self._pending[line.ordinal] = self._cursor
                if isinstance(item, BadLine):
                    self.stats.input_errors += 1
                    self._count_error(item.code)
                    await self._emit(Envelope(item.ordinal, error_record(self.job_id, item.ordinal, item.custom_id, item.code, item.message,
                                                                        item.carry, item.endpoint)))
                    continue
                await slots.acquire()
                if self._stop.is_set():
                    slots.release()
                    break
                task = asyncio.create_task(self._run_one(item, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(self._task_done)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)  # failures already stopped the job
        finally:
            for t in tasks:
                t.cancel()
            async with self._flush_lock:  # never cancel the flusher in the middle of a commit
                flusher.cancel()
            try:
                await flusher
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # this run itself is being cancelled: never swallow it (and never run on)
            await self.flush()
            self.stats.finished_at = self._clock()
        return self.stats

    def in_flight_limit(self) -> int:
        """The bound on requests in flight now (:func:`~promptforge_dagster.core.in_flight.in_flight_bound`)."""
        mean_bytes = self._line_bytes / self._lines_seen if self._lines_seen else 0.0
        return in_flight_bound((c for _lane, c in self.lanes.items()), mean_bytes, self.config.max_in_flight)

    def resume_position(self) -> ReadPosition:
        """Every line before this position is in a written part (or was done before)."""
        return low_water(self._pending, self._cursor)

    async def checkpoint(self) -> None:
        """Write what is buffered, then commit a checkpoint at the resume position. A
        commit that fails (the lease was lost) stops the run: another attempt owns it."""
        if self._checkpoint is None:
            return
        committed = False
        async with self._flush_lock:
            await self._flush_unlocked()
            position = self.resume_position()
            self._last_checkpoint = self._clock()
            try:
                await self._offload(self._checkpoint, position)
                committed = True
            except LeaseLost as exc:  # a newer attempt owns the job: this one stops
                self.stop(f"checkpoint failed: {exc}")
            except Exception as exc:  # noqa: BLE001 - transient (registry or storage): the next commit tries again
                self.stats.commit_errors += 1
                self.stats.last_commit_error = f"{type(exc).__name__}: {exc}"[:300]
        if committed and self._after_checkpoint is not None:
            # slow extras (the rate plot, metrics) run outside the lock: senders never wait on them
            await self._offload(self._after_checkpoint)

    def _task_done(self, task: asyncio.Task) -> None:
        # A bug in a request's task must not drop its prompt silently: stop the job with
        # the cause; what is written stays, and a resumed attempt sends the rest.
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            self.stop(f"internal error: {type(exc).__name__}: {exc}"[:300])

    def stop(self, reason: str) -> None:
        """Stop sending: in-flight requests finish, buffered results are written."""
        if self.stats.fatal is None:
            self.stats.fatal = reason
        self._stop.set()

    async def flush(self) -> None:
        """Write buffered records as one part (off the event loop)."""
        async with self._flush_lock:
            await self._flush_unlocked()

    async def _flush_shared(self) -> None:
        """Senders that find the buffer full share one flush: a sender that arrives while a
        flush runs waits for it rather than queueing a flush of its own. (Queued one per
        sender, thousands of flushes stood in the lock's line ahead of the checkpoint, which
        then waited a minute at high rates.)"""
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self.flush())
        await asyncio.shield(self._flushing)

    async def _flush_unlocked(self) -> None:
        if not self._buffer:
            return
        batch, self._buffer, self._oldest = self._buffer, [], None
        try:
            await self._offload(self._write_part, batch)
        except Exception as exc:
            # A part that cannot be written stops the attempt at once: nothing more is sent
            # (its results could not be kept); what was written stays, a retry resumes.
            self.stop(f"writing results failed: {type(exc).__name__}: {exc}"[:300])
            raise
        for env in batch:
            self._pending.pop(env.ordinal, None)

    # -- internals ------------------------------------------------------------
    async def _flush_loop(self) -> None:
        interval = self.config.flush_interval_s
        while True:
            await self._sleep(interval / FLUSH_TICKS)
            if self._on_tick is not None:
                self._on_tick(self._clock())
            if self._oldest is not None and self._clock() - self._oldest >= interval * FLUSH_AT:
                try:
                    await self.flush()
                except Exception:  # noqa: BLE001 - flush stopped the run with the cause; keep beating
                    pass
            if self._checkpoint is not None and self._clock() - self._last_checkpoint >= self._checkpoint_interval:
                await self.checkpoint()
            elif self._heartbeat is not None and self._clock() - self._last_heartbeat >= self._heartbeat_s:
                self._last_heartbeat = self._clock()
                try:
                    follow_up = await self._offload(self._heartbeat)
                except Exception as exc:  # noqa: BLE001 - a lost lease ends this attempt
                    self.stop(f"lease renewal failed: {exc}")
                else:
                    if callable(follow_up):  # state changes for the pacing side, applied here, on the loop
                        follow_up(self._clock())

    async def _emit(self, env: Envelope) -> None:
        if self._oldest is None:
            self._oldest = self._clock()
        self._buffer.append(env)
        if len(self._buffer) >= self.config.buffer_records or not self._first_written:
            # backpressure: senders wait while a full buffer is written; and the very first
            # result is written at once, so a user sees output seconds after starting
            self._first_written = True
            await self._flush_shared()

    def _count_error(self, code: str) -> None:
        self.stats.failed += 1
        self.stats.errors_by_code[code] = self.stats.errors_by_code.get(code, 0) + 1

    def _no_room(self) -> bool:
        """The in-flight bound is reached. Read again right before a pacer slot is taken: the
        bound can fall while a sender queues for the slot (a server says its queue is full),
        and every sender past an earlier check would send into the full queue."""
        return 0 < self.stats.in_flight >= self.in_flight_limit()

    def _drop(self, group: DeploymentGroup, deployment: Deployment, outcome: Any) -> None:
        reason = group.drop_failed(deployment, outcome.status_code, str(outcome.message or ""))
        if reason is not None:
            self.stats.dropped_deployments[deployment.id] = reason
            self._log(f"deployment {deployment.id} of {group.name} dropped ({reason}); "
                      f"{len(group.alive())} of {len(group.deployments)} left")

    async def _run_one(self, req: PromptRequest, slots: InFlightSlots) -> None:
        cfg, stats = self.config, self.stats
        retries = Retries(cfg)
        try:
            try:
                est = estimate_tokens(req.body, cfg.default_max_tokens, req.endpoint)
                budget = answer_budget(req.body, cfg.default_max_tokens, req.endpoint)
                group = group_for(self._groups, str(req.body.get("model", "")))
                if group is None:
                    lane = self.lanes.lane(str(req.body.get("model", "")))
                    controller = self.lanes.get(lane)
                    if controller is None:  # a new lane may consult the shared registry: never on the event loop
                        controller = await self._offload(self.lanes.controller, lane)
                else:
                    await self._pacing.open_lanes(group)
            except Exception as exc:  # noqa: BLE001 - a line that cannot be prepared is that line's error
                self._count_error(INVALID_REQUEST)
                await self._emit(Envelope(req.ordinal, error_record(
                    self.job_id, req.ordinal, req.custom_id, INVALID_REQUEST,
                    f"line {req.line_no}: the request could not be prepared ({type(exc).__name__})", req.carry,
                    req.endpoint)))
                return
            while True:  # (retries too wait for room in flight, in the pacer: a full server is not flooded)
                deployment: Deployment | None = None
                if group is None:
                    await self._pacing.pace(lane, controller, est, budget)
                else:
                    deployment, controller = await self._pacing.pace_group(group, est, budget)
                    if deployment is None:
                        self.stop(f"every deployment of {group.name} was dropped ("
                                  + "; ".join(f"{k}: {v}" for k, v in group.dropped.items()) + ")")
                        return
                if self._stop.is_set():
                    return
                sent_at = self._clock()
                stats.sent += 1
                in_flight = stats.in_flight
                stats.in_flight += 1
                try:
                    if deployment is None:
                        outcome = await self._provider.complete(req)
                    else:  # the deployment's own model name; its key and base URL are the provider's
                        outcome = await self._provider.complete(
                            replace(req, body={**req.body, "model": deployment.model}), deployment=deployment)
                finally:
                    stats.in_flight -= 1
                at = self._clock()
                signal = parse_signal(outcome.status_code, outcome.message, outcome.headers, self._wall())
                signals = signal.headers
                controller.record(RateSample(
                    sent_at, at, outcome.kind, outcome.tokens or est, est, signals,
                    signal=signal, in_flight=in_flight, max_tokens=budget,
                    usage=(outcome.tokens_in, outcome.tokens_out) if outcome.tokens_in or outcome.tokens_out else None,
                ))
                kind = outcome.kind
                if kind is OutcomeKind.SUCCESS:
                    stats.succeeded += 1
                    if self._on_success is not None:
                        self._on_success(at - sent_at, outcome.cost)
                    stats.tokens_in += outcome.tokens_in
                    stats.tokens_out += outcome.tokens_out
                    stats.cost_usd += outcome.cost or 0.0
                    cap = self.config.max_cost_usd
                    if cap is not None and stats.cost_usd >= cap:
                        self.stop(f"--max-cost ${cap:g} reached (${stats.cost_usd:.4f} spent by this run)")
                    await self._emit(Envelope(
                        req.ordinal, success_record(self.job_id, req.ordinal, req.custom_id, outcome, req.carry, req.endpoint),
                        outcome.tokens_in, outcome.tokens_out, outcome.cost, round((at - sent_at) * 1000, 1),
                    ))
                    return
                if kind is OutcomeKind.FATAL:
                    if group is not None and deployment is not None:
                        self._drop(group, deployment, outcome)
                        continue  # this prompt goes to another deployment (not an attempt)
                    self.stop(stop_reason(outcome))
                    return
                if kind is OutcomeKind.RATE_LIMITED:
                    stats.rate_limited += 1
                code = retries.failed(kind, outcome.error_type)
                if code is not None:
                    self._count_error(code)
                    await self._emit(Envelope(
                        req.ordinal, failure_record(self.job_id, req.ordinal, req.custom_id, code, outcome, req.carry,
                                                  req.endpoint),
                        latency_ms=round((at - sent_at) * 1000, 1),
                    ))
                    return
                stats.retries += 1  # (a refused prompt also waits out its own refusal: the lane paces everyone down)
                await self._sleep(retries.delay(kind, signals.retry_after_s, self._rng))
        finally:
            slots.release()
