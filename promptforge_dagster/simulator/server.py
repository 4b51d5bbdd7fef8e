"""The simulator's HTTP server: an OpenAI-compatible ``/v1/chat/completions`` on loopback.

Limits come from :class:`~promptforge_dagster.simulator.account.SimulatedAccount`.
Test hooks in the last user message force an answer: ``__pf_400__`` (invalid request),
``__pf_500__`` (server error), ``__pf_quota__`` (insufficient quota), ``__pf_hang__``,
``__pf_403__`` (permission denied), ``__pf_malformed__`` (a 200 that is not a chat
completion), ``__pf_reset__`` (the connection is dropped without an answer).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import random
import time
import uuid
import zlib
from dataclasses import dataclass, field

from aiohttp import web

from promptforge_dagster.core.formats import CUSTOM_ID_HEADER
from promptforge_dagster.simulator.account import AccountLimits, SimulatedAccount
from promptforge_dagster.simulator.styles import refusal, success_headers


@dataclass
class SimulatorConfig:
    """Everything the simulator can be told on its command line."""

    limits: AccountLimits = field(default_factory=AccountLimits)
    headers: str = "full"  # full | none | retry-after
    style: str = "openai"  # how refusals are worded: simulator/styles.py (openai, azure, anthropic, gemini, ...)
    latency_ms: float = 50.0  # median; 0 answers at once
    latency_per_token_ms: float = 0.0  # more per completion token: long answers take longer
    latency_sigma: float = 0.3  # lognormal spread
    refusal_latency_ms: float = 0.0  # how long a 429 takes to come back (uniform over 0.5-1.5x of it): a hosted
    # API's crosses the internet and the provider's gateway, 50-300 ms; 0 answers at once, as a server on this host
    error_rate: float = 0.0  # share of requests answered 500/503
    hang_rate: float = 0.0  # share of requests that hang for hang_s
    hang_s: float = 300.0
    completion_tokens: int = 16
    api_key: str | None = None  # when set, requests need "Authorization: Bearer <key>"
    request_log: str | None = None
    seed: int | None = None


def _prompt_text(body: dict) -> str:
    parts = []
    given = body.get("input")  # embeddings and responses
    if isinstance(given, str):
        parts.append(given)
    for m in body.get("messages") or (given if isinstance(given, list) else []):
        c = m.get("content") if isinstance(m, dict) else m
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            parts.extend(p.get("text", "") for p in c if isinstance(p, dict))
    return "\n".join(parts)


# What each endpoint's body must hold, as OpenAI words its absence.
REQUIRED = {"chat": "messages", "embeddings": "input", "responses": "input"}
EMBEDDING_DIMENSIONS = 8  # small vectors: the simulator's answers stay cheap


def _answer(endpoint: str, body: dict, text: str, prompt_tokens: int, completion_tokens: int,
            max_tokens: int) -> dict:
    """The success body each endpoint returns, in OpenAI's shapes."""
    model = str(body.get("model", "sim-model"))
    if endpoint == "embeddings":
        inputs = body["input"] if isinstance(body["input"], list) and body["input"] \
            and not isinstance(body["input"][0], int) else [body["input"]]
        return {"object": "list", "model": model,
                "data": [{"object": "embedding", "index": i,
                          "embedding": [round(((zlib.crc32(str(x).encode()) >> (2 * d)) % 1000) / 1000.0, 3)
                                        for d in range(EMBEDDING_DIMENSIONS)]}
                         for i, x in enumerate(inputs)],
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}
    reply = f"echo: {text[:40]}"
    if endpoint == "responses":
        return {"id": f"resp_{uuid.uuid4().hex[:24]}", "object": "response", "created_at": int(time.time()),
                "status": "completed" if completion_tokens < max_tokens else "incomplete", "model": model,
                "output": [{"type": "message", "id": f"msg_{uuid.uuid4().hex[:16]}", "status": "completed",
                            "role": "assistant",
                            "content": [{"type": "output_text", "text": reply, "annotations": []}]}],
                "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply},
            "finish_reason": "stop" if completion_tokens < max_tokens else "length",
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def _error(status: int, message: str, etype: str, code: str | None, headers: dict | None = None) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": etype, "param": None, "code": code}}, status=status, headers=headers
    )


class Simulator:
    """Holds the account, counters and request log behind the aiohttp handlers."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.account = SimulatedAccount(config.limits, now=time.monotonic(), seed=config.seed or 0)
        self.counts = {"received": 0, "ok": 0, "rate_limited": 0, "errors": 0, "hung": 0, "peak_in_flight": 0}
        self._in_flight = 0  # requests being answered now (a client's in-flight cap shows as their peak)
        self._log = open(config.request_log, "a", buffering=1) if config.request_log else None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/chat/completions", self.chat)
        for path, endpoint in (("embeddings", "embeddings"), ("responses", "responses")):
            handler = functools.partial(self.chat, endpoint=endpoint)
            app.router.add_post(f"/v1/{path}", handler)
            app.router.add_post(f"/{path}", handler)
        # Azure OpenAI's addresses: the deployment in the path, api-version in the query
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self.chat)
        app.router.add_post("/openai/deployments/{deployment}/embeddings",
                            functools.partial(self.chat, endpoint="embeddings"))
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.stats)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _app) -> None:
        if self._log:
            self._log.close()

    async def models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "sim-model", "object": "model"}]})

    async def stats(self, _request: web.Request) -> web.Response:
        now = time.monotonic()
        rpm, tpm = self.account.current_limits(now)
        return web.json_response({**self.counts, "rpm_limit": rpm, "tpm_limit": tpm})

    def _record(self, custom_id: str | None, status: int) -> None:
        if self._log:
            self._log.write(json.dumps({"t": round(time.time(), 4), "custom_id": custom_id, "status": status}) + "\n")

    async def chat(self, request: web.Request, endpoint: str = "chat") -> web.Response:
        self._in_flight += 1
        self.counts["peak_in_flight"] = max(self.counts["peak_in_flight"], self._in_flight)
        try:
            return await self._answer(request, endpoint)
        finally:
            self._in_flight -= 1

    async def _answer(self, request: web.Request, endpoint: str) -> web.Response:
        cfg = self.config
        self.counts["received"] += 1
        custom_id = request.headers.get(CUSTOM_ID_HEADER)
        if "/openai/deployments/" in request.path and not request.query.get("api-version"):
            self._record(custom_id, 404)
            return _error(404, "Resource not found", "invalid_request_error", "404")  # Azure's answer
        authorized = (request.headers.get("Authorization") == f"Bearer {cfg.api_key}"
                      or request.headers.get("api-key") == cfg.api_key)  # OpenAI's header, or Azure's
        if cfg.api_key and not authorized:
            self._record(custom_id, 401)
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._record(custom_id, 400)
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error", None)
        text = _prompt_text(body)
        if not isinstance(body, dict) or not body.get(REQUIRED[endpoint]):
            self._record(custom_id, 400)
            return _error(400, f"'{REQUIRED[endpoint]}' is a required property", "invalid_request_error", None)
        if "__pf_400__" in text:
            self._record(custom_id, 400)
            return _error(400, "Invalid value for 'messages'.", "invalid_request_error", "invalid_value")
        if "__pf_403__" in text:
            self._record(custom_id, 403)
            return _error(403, "You are not allowed to sample from this model", "invalid_request_error",
                          "model_not_found")
        if "__pf_malformed__" in text:
            self._record(custom_id, 200)
            return web.Response(status=200, text="<html>upstream proxy error</html>", content_type="text/html")
        if "__pf_reset__" in text:
            self._record(custom_id, 0)
            request.transport.close()  # no answer at all: the client sees the connection drop
            await asyncio.sleep(0.1)
            return web.Response(status=200)
        if "__pf_quota__" in text:
            self._record(custom_id, 429)
            return _error(429, "You exceeded your current quota, please check your plan and billing details.",
                          "insufficient_quota", "insufficient_quota")
        if "__pf_daily__" in text:  # OpenAI's words for a spent daily limit (free tiers: 200 requests a day)
            self._record(custom_id, 429)
            return _error(429, "Rate limit reached for gpt-4o-mini in organization org-sim on requests per day "
                          "(RPD): Limit 200, Used 200, Requested 1. Please try again in 7m12s.", "requests",
                          "rate_limit_exceeded")
        if "__pf_500__" in text or (cfg.error_rate and self.rng.random() < cfg.error_rate):
            self.counts["errors"] += 1
            self._record(custom_id, 503)
            return _error(503, "The server is overloaded. Please retry.", "server_error", None)
        if "__pf_hang__" in text or (cfg.hang_rate and self.rng.random() < cfg.hang_rate):
            self.counts["hung"] += 1
            self._record(custom_id, 0)
            await asyncio.sleep(cfg.hang_s)
            return _error(504, "Gateway timeout", "server_error", None)
        prompt_tokens = len(text) // 4 + 1
        max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
                         or cfg.completion_tokens)
        completion_tokens = max(1, min(max_tokens, cfg.completion_tokens))
        if endpoint == "embeddings":
            max_tokens = completion_tokens = 0
        now = time.monotonic()
        limits = cfg.limits
        admission = self.account.admit(now, limits.token_charge(prompt_tokens, max_tokens))
        if not admission.ok:
            self.counts["rate_limited"] += 1
            status, doc, headers = refusal(cfg.style, admission, model=str(body.get("model", "sim-model")),
                                           now_epoch=time.time(), headers=cfg.headers != "none",
                                           tokens_basis=limits.tokens_basis, requests_today=self.account.admitted)
            if cfg.headers == "retry-after":
                headers = {k: v for k, v in headers.items() if k.startswith("retry-after")}
            if cfg.refusal_latency_ms > 0:  # decided on arrival, answered after the trip back
                await asyncio.sleep(cfg.refusal_latency_ms / 1000.0 * self.rng.uniform(0.5, 1.5))
            self._record(custom_id, status)
            if doc is None:  # a bare refusal: status only
                return web.Response(status=status, headers=headers)
            return web.json_response(doc, status=status, headers=headers)
        headers = (success_headers(cfg.style, admission.headers, time.time(), limits.tokens_basis,
                                   requests_today=self.account.admitted) if cfg.headers == "full" else {})
        try:
            delay = 0.0
            if cfg.latency_ms > 0:
                delay = cfg.latency_ms / 1000.0 * math.exp(self.rng.gauss(0.0, cfg.latency_sigma))
            delay += cfg.latency_per_token_ms / 1000.0 * completion_tokens
            if delay > 0:
                await asyncio.sleep(delay * max(1.0, self.account.load()))  # a busy server answers slower
        finally:
            self.account.release(time.monotonic(), limits.token_refund(max_tokens, completion_tokens))
        self.counts["ok"] += 1
        self._record(custom_id, 200)
        return web.json_response(
            _answer(endpoint, body, text, prompt_tokens, completion_tokens, max_tokens),
            headers={**headers, "x-request-id": f"req_{uuid.uuid4().hex[:16]}"},
        )


async def serve(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    """Start the simulator; returns the runner (to clean up) and the bound port."""
    # a client that gave up (its --timeout) disconnects, and the request is dropped as vLLM aborts one (aiohttp's
    # default finishes it: its answer, logged as served, went to no one, and a flood of timeouts looked served)
    runner = web.AppRunner(Simulator(config).app(), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    sockets = site._server.sockets if site._server else []  # aiohttp exposes no public accessor
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, bound


# How often a simulator started for a run checks that the run is still there.
PARENT_CHECK_S = 1.0


def run_forever(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0,
                parent_pid: int | None = None) -> None:
    """Serve until killed (or, given ``parent_pid``, until that process is gone: a run's
    simulator never outlives a killed run); prints ``listening on http://HOST:PORT`` once bound."""
    import os

    async def main() -> None:
        runner, bound = await serve(config, host, port)
        print(f"listening on http://{host}:{bound}", flush=True)
        try:
            while True:
                await asyncio.sleep(PARENT_CHECK_S)
                if parent_pid is not None and os.getppid() != parent_pid:
                    return  # re-parented: the process that started us is gone
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
