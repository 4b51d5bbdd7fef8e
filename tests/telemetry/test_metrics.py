"""Job metrics: rate gauges (allowed RPM, learned ceiling, phase), request counters by
outcome, tokens and the latency histogram are delivered; their attributes carry the job
and lane only, never prompt text or keys. Read in process with InMemoryMetricReader, and
over the wire: a real `promptforge run` with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a
local OTLP/HTTP receiver on loopback."""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from promptforge_dagster.core.rate.controller import AdaptiveController
from promptforge_dagster.core.pipeline import JobStats
from promptforge_dagster.core.rate_lanes import RateLanes
from promptforge_dagster.telemetry import JobTelemetry, meter_provider
from tests.conftest import ROOT


def points(reader):
    out = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name] = list(m.data.data_points)
    return out


def test_in_process_gauges_counters_and_histogram():
    reader = InMemoryMetricReader()
    provider = meter_provider([reader], env={})
    stats = JobStats(succeeded=40, failed=3, input_errors=1, rate_limited=5, retries=6, tokens_in=900, tokens_out=80)
    lanes = RateLanes(lambda _l: AdaptiveController.from_state({"ceiling_rpm": 600.0}, now=0.0), key_hash="k9")
    lanes.controller(lanes.lane("gpt-4o-mini"))
    tel = JobTelemetry(provider.get_meter("t"), "job-1", stats, lanes, checkpoint_age=lambda: 12.0)
    tel.record_latency(0.25, cost=0.002)
    tel.record_latency(0.75)
    got = points(reader)
    allowed = got["promptforge.rate.allowed_rpm"][0]
    assert dict(allowed.attributes) == {"promptforge.job": "job-1", "promptforge.lane": "openai/gpt-4o-mini#k9"}
    assert 500 < allowed.value <= 600
    assert got["promptforge.rate.learned_rpm_ceiling"][0].value == 600.0
    assert got["promptforge.rate.phase"][0].value == 2.0
    assert not got.get("promptforge.rate.background_refused_share")  # absent until a busy pool is found
    by_outcome = {dict(p.attributes)["outcome"]: p.value for p in got["promptforge.requests"]}
    assert by_outcome == {"success": 40, "failed": 2, "input_error": 1, "rate_limited": 5}
    assert got["promptforge.tokens.in"][0].value == 900 and got["promptforge.retries"][0].value == 6
    assert got["promptforge.checkpoint.age"][0].value == 12.0
    assert got["promptforge.cost"][0].value == 0.002
    hist = got["promptforge.request.latency"][0]
    assert hist.count == 2 and abs(hist.sum - 1.0) < 1e-9
    provider.shutdown()


class Receiver:
    """A minimal OTLP/HTTP metrics endpoint: decodes each POST /v1/metrics."""

    def __init__(self):
        self.requests = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                msg = ExportMetricsServiceRequest()
                msg.ParseFromString(body)
                outer.requests.append((self.path, dict(self.headers), msg))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def metrics(self):
        out = {}
        for _path, _h, msg in self.requests:
            for rm in msg.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        out.setdefault(m.name, []).append(m)
        return out


def test_promptforge_run_exports_to_an_otlp_http_receiver(tmp_path, simulator):
    rx = Receiver()
    try:
        inp = tmp_path / "in.jsonl"
        inp.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"secret prompt text {i}"}) + "\n"
                               for i in range(150)))
        env = {**os.environ, "OPENAI_API_KEY": "sk-telemetry-test-key", "OTEL_EXPORTER_OTLP_ENDPOINT": rx.url,
               "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer xaat-test,x-axiom-dataset=pf",
               "OTEL_METRIC_EXPORT_INTERVAL": "500"}
        p = subprocess.run([sys.executable, "-m", "promptforge_dagster.cli", "run", str(inp), "--output",
                            str(tmp_path / "out"), "--model", "openai/sim-model", "--api-base", simulator.api_base,
                            "--rpm-hint", "6000", "--quiet"], env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr
        assert "rate plot:" in p.stdout and (tmp_path / "out" / "rate.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        rx.server.shutdown()
    assert rx.requests and all(path == "/v1/metrics" for path, _, _ in rx.requests)
    assert rx.requests[0][1].get("authorization") == "Bearer xaat-test"
    metrics = rx.metrics()
    for name in ("promptforge.rate.allowed_rpm", "promptforge.requests", "promptforge.tokens.in",
                 "promptforge.request.latency"):
        assert name in metrics, sorted(metrics)
    last = metrics["promptforge.requests"][-1].sum.data_points
    assert {kv.key: kv.value.string_value for kv in last[0].attributes}.get("outcome")
    assert max(dp.as_int for dp in last) == 150
    raw = b"".join(msg.SerializeToString() for _, _, msg in rx.requests)
    assert b"secret prompt text" not in raw and b"sk-telemetry-test-key" not in raw


def test_checkpoint_age_counts_from_the_last_commit():
    reader = InMemoryMetricReader()
    provider = meter_provider([reader], env={})
    now = [100.0]
    tel = JobTelemetry(provider.get_meter("t"), "job-2", JobStats(), RateLanes(lambda _l: None), clock=lambda: now[0])
    assert "promptforge.checkpoint.age" not in points(reader) or not points(reader)["promptforge.checkpoint.age"]
    tel.committed()
    now[0] = 130.5
    assert points(reader)["promptforge.checkpoint.age"][0].value == 30.5
    provider.shutdown()


def test_optional_prometheus_endpoint_serves_the_rate_gauges():
    import urllib.request

    from tests.conftest import free_port

    port = free_port()
    provider = meter_provider(env={"PROMPTFORGE_PROMETHEUS_PORT": str(port)})
    lanes = RateLanes(lambda _l: AdaptiveController.from_state({"ceiling_rpm": 900.0}, now=0.0), key_hash="k1")
    lanes.controller(lanes.lane("gpt-4o-mini"))
    JobTelemetry(provider.get_meter("t"), "job-3", JobStats(succeeded=7), lanes)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert "promptforge_rate_learned_rpm_ceiling" in text and 'promptforge_lane="openai/gpt-4o-mini#k1"' in text
    assert any(l.startswith("promptforge_requests") and 'outcome="success"' in l and l.endswith(" 7.0")
               for l in text.splitlines()), text[:2000]
    provider.shutdown()
