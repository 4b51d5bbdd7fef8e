"""An HTTP proxy on loopback that injects storage faults in front of fake-gcs-server.

``plan(method, path, n)`` decides each request's fate: ``"pass"``, ``"503"`` (answered
at once, never forwarded), ``"reset"`` (connection dropped before forwarding) or
``"lost_reply"`` (forwarded, then the connection dropped: the write lands, the client
never hears).
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit


class FaultProxy:
    def __init__(self, upstream: str, plan: Callable[[str, str, int], str]) -> None:
        target = urlsplit(upstream)
        self.plan = plan
        self.count = 0
        self.faults: list[tuple[str, str, str]] = []
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with lock:
                    proxy.count += 1
                    n = proxy.count
                fate = proxy.plan(self.command, self.path, n)
                if fate != "pass":
                    proxy.faults.append((fate, self.command, self.path))
                if fate == "503":
                    msg = b'{"error": {"code": 503, "message": "injected"}}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                if fate == "reset":
                    self.close_connection = True
                    self.connection.close()
                    return
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                headers["Host"] = f"{target.hostname}:{target.port}"
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if fate == "lost_reply":
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
