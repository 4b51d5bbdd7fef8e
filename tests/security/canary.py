"""A second local HTTP server that records every request it gets: the place a hostile
input line would try to send the job's key. Tests assert it stays untouched."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Canary:
    def __init__(self) -> None:
        self.hits: list[tuple[str, str, dict]] = []
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                canary.hits.append((self.command, self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                body = b'{"id": "x", "object": "chat.completion", "choices": [], "usage": {}}'
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _record

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
