"""OpenTelemetry metrics of one job: rate learning, progress, outcomes.

Everything cumulative is read from the job's counters by observable instruments at export
time, so the request path pays nothing; only the latency histogram is recorded per
request. Attributes are the job id and the lane (provider/model#key-hash): never prompt
or response text, never a key.

Export is configured the standard way: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``) and ``OTEL_EXPORTER_OTLP_HEADERS`` select
OTLP/HTTP; ``PROMPTFORGE_PROMETHEUS_PORT`` adds a local Prometheus scrape endpoint; with
none set, nothing is exported.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from promptforge_dagster.core.pipeline import JobStats
from promptforge_dagster.core.rate_lanes import RateLanes

PHASES = {"discover": 0, "backoff": 1, "steady": 2, "probe": 3}  # core/rate/axis.py Phase


def otlp_configured(env=os.environ) -> bool:
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))


def meter_provider(readers: Iterable[MetricReader] | None = None, env=os.environ) -> MeterProvider | None:
    """A provider with the given readers, plus OTLP/HTTP when the environment asks for it."""
    readers = list(readers or [])
    from promptforge_dagster import settings

    port = settings.get(env, "PROMPTFORGE_PROMETHEUS_PORT")
    if port:  # locally: a scrape endpoint on loopback, http://127.0.0.1:PORT/metrics
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        start_http_server(int(port), addr=settings.get(env, "PROMPTFORGE_PROMETHEUS_HOST"))
        readers.append(PrometheusMetricReader())
    if otlp_configured(env):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        interval_ms = int(env.get("OTEL_METRIC_EXPORT_INTERVAL", "10000"))
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=interval_ms))
    if not readers:
        return None
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "promptforge")})
    return MeterProvider(metric_readers=readers, resource=resource)


class JobTelemetry:
    """Instruments for one job; ``record_latency`` is the only per-request call."""

    def __init__(self, meter: Meter, job_id: str, stats: JobStats, lanes: RateLanes,
                 checkpoint_age: Callable[[], float | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.job = {"promptforge.job": job_id}
        self.stats, self.lanes = stats, lanes
        self._checkpoint_age_fn = checkpoint_age
        self._clock = clock
        self._committed_at: float | None = None
        self._cost = 0.0

        def per_lane(key: str, scale: float = 1.0) -> Callable[[CallbackOptions], list[Observation]]:
            def observe(_options: CallbackOptions) -> list[Observation]:
                out = []
                for lane, snap in lanes.snapshot().items():
                    value = snap.get(key)
                    if isinstance(value, str):
                        value = PHASES.get(value)
                    if value is not None:
                        out.append(Observation(float(value) * scale, {**self.job, "promptforge.lane": lane}))
                return out
            return observe

        def job_value(read: Callable[[], float | None]) -> Callable[[CallbackOptions], list[Observation]]:
            def observe(_options: CallbackOptions) -> list[Observation]:
                v = read()
                return [] if v is None else [Observation(float(v), self.job)]
            return observe

        meter.create_observable_gauge("promptforge.rate.allowed_rpm", [per_lane("allowed_rpm")], unit="{request}/min",
                                      description="requests per minute the controller allows now")
        meter.create_observable_gauge("promptforge.rate.allowed_tpm", [per_lane("allowed_tpm")], unit="{token}/min")
        meter.create_observable_gauge("promptforge.rate.learned_rpm_ceiling", [per_lane("learned_rpm_ceiling")],
                                      unit="{request}/min")
        meter.create_observable_gauge("promptforge.rate.learned_tpm_ceiling", [per_lane("learned_tpm_ceiling")],
                                      unit="{token}/min")
        meter.create_observable_gauge("promptforge.rate.phase", [per_lane("phase")],
                                      description="0 discover, 1 backoff, 2 steady, 3 probe")
        meter.create_observable_gauge("promptforge.rate.client_bound_rpm", [per_lane("client_bound_rpm")],
                                      unit="{request}/min",
                                      description="requests per minute the client managed when it, not the provider, "
                                                  "was the limit (absent otherwise)")
        meter.create_observable_gauge("promptforge.rate.background_refused_share", [per_lane("background_refused_share")],
                                      description="share of requests a busy shared pool refuses whatever the rate "
                                                  "(retried, not learned from; absent until one is found)")
        meter.create_observable_gauge("promptforge.rate.in_flight_limit", [per_lane("in_flight_limit")],
                                      unit="{request}", description="the lane's bound on requests in flight")
        meter.create_observable_gauge("promptforge.requests.in_flight", [job_value(lambda: stats.in_flight)])
        meter.create_observable_gauge("promptforge.checkpoint.age", [job_value(self._age)], unit="s")

        def outcomes(_options: CallbackOptions) -> list[Observation]:
            return [Observation(stats.succeeded, {**self.job, "outcome": "success"}),
                    Observation(stats.failed - stats.input_errors, {**self.job, "outcome": "failed"}),
                    Observation(stats.input_errors, {**self.job, "outcome": "input_error"}),
                    Observation(stats.rate_limited, {**self.job, "outcome": "rate_limited"})]

        meter.create_observable_counter("promptforge.requests", [outcomes], unit="{request}",
                                        description="answered requests by outcome")
        meter.create_observable_counter("promptforge.retries", [job_value(lambda: stats.retries)])
        meter.create_observable_counter("promptforge.tokens.in", [job_value(lambda: stats.tokens_in)], unit="{token}")
        meter.create_observable_counter("promptforge.tokens.out", [job_value(lambda: stats.tokens_out)],
                                        unit="{token}")
        meter.create_observable_counter("promptforge.prompts.skipped", [job_value(lambda: stats.skipped)])
        meter.create_observable_counter("promptforge.cost", [job_value(lambda: self._cost)], unit="USD")
        self._latency = meter.create_histogram("promptforge.request.latency", unit="s",
                                               description="time from send to answer of successful requests")

    def committed(self) -> None:
        """A checkpoint was committed now (the checkpoint-age gauge counts from here)."""
        self._committed_at = self._clock()

    def _age(self) -> float | None:
        if self._checkpoint_age_fn is not None:
            return self._checkpoint_age_fn()
        return None if self._committed_at is None else self._clock() - self._committed_at

    def record_latency(self, seconds: float, cost: float | None = None) -> None:
        self._latency.record(seconds, self.job)
        if cost:
            self._cost += cost


@contextmanager
def job_metrics(job_id: str, stats: JobStats, lanes: RateLanes, env=os.environ) -> Iterator[dict[str, Any]]:
    """The ``run_job`` hooks of a job's metrics (none when nothing is configured); the
    last export is flushed on exit, whatever the job's outcome."""
    provider = meter_provider(env=env)
    if provider is None:
        yield {}
        return
    telemetry = JobTelemetry(provider.get_meter("promptforge"), job_id, stats, lanes)
    try:
        yield {"on_success": telemetry.record_latency, "on_commit": telemetry.committed}
    finally:
        provider.shutdown()
