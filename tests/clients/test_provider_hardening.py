"""Invariants of the provider client facing hostile or broken servers: ``--timeout`` is a
deadline for the whole request (a server that drips a byte a second cannot hold a request
past it); a failure's message keeps the provider's own words and status and never a
traceback, a client class prefix, a local path or the key."""

import asyncio
import json
import socket
import time

from promptforge_dagster.clients.litellm_provider import LiteLLMProvider
from promptforge_dagster.core.formats import PromptRequest
from promptforge_dagster.core.outcome import OutcomeKind

KEY = "sk-test-secret-key-0123456789"


def req(cid="c1"):
    return PromptRequest(0, 1, 0, cid, {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}]})


async def serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


async def drip(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n")
    try:
        for _ in range(60):  # one byte a second: never idle for long, never done
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(1.0)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


def test_timeout_is_a_deadline_for_the_whole_request():
    async def go():
        server, base = await serve(drip)
        async with server:
            provider = LiteLLMProvider(api_base=base, api_key=KEY, timeout_s=2.0)
            t0 = time.monotonic()
            out = await provider.complete(req())
            return out, time.monotonic() - t0

    out, elapsed = asyncio.run(go())
    assert out.kind is OutcomeKind.TRANSIENT and out.error_type == "timeout"
    assert elapsed < 5.0  # 2 s deadline; the drip would hold it for a minute
    assert "--timeout" in out.message


def answer_with(status: int, body: dict):
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        data = json.dumps(body).encode()
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n"
                     f"connection: close\r\n\r\n".encode() + data)
        await writer.drain()
        writer.close()
    return handler


def test_a_providers_error_keeps_its_words_and_status_without_client_noise():
    message = f"Invalid value for 'temperature': 7 is greater than the maximum of 2 (key {KEY})"

    async def go():
        server, base = await serve(answer_with(400, {"error": {"message": message, "type": "invalid_request_error"}}))
        async with server:
            return await LiteLLMProvider(api_base=base, api_key=KEY, timeout_s=5).complete(req())

    out = asyncio.run(go())
    assert out.kind is OutcomeKind.PERMANENT and out.status_code == 400
    assert "Invalid value for 'temperature': 7 is greater than the maximum of 2" in out.message
    assert KEY not in out.message and "***" in out.message
    for noise in ("litellm.", "Exception -", "Traceback", ".py", "/site-packages/"):
        assert noise not in out.message, noise


def test_a_connection_failure_says_so_without_a_traceback_or_path():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    out = asyncio.run(LiteLLMProvider(api_base=f"http://127.0.0.1:{port}/v1", api_key=KEY,
                                      timeout_s=5).complete(req()))
    assert out.kind is OutcomeKind.TRANSIENT
    assert out.message and "Traceback" not in out.message and ".py" not in out.message
    assert len(out.message) <= 500
