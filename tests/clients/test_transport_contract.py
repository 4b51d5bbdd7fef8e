"""One contract for both transports (LiteLLM, the reference, and the lean aiohttp one):
against the real simulator, every case the pipeline distinguishes gives the same outcome
(kind, status, error type, tokens, the rate signal it carries) and the same result line.

Cases: success with usage and headers; 429 with headers and without; 5xx (overloaded);
a timeout; a dropped connection; 400; 401; 403; quota exhausted; a malformed 200."""

import asyncio
import re

import pytest

from promptforge_dagster.clients.litellm_provider import LiteLLMProvider
from promptforge_dagster.clients.openai_http import OpenAIHttpProvider
from promptforge_dagster.core.formats import PromptRequest
from promptforge_dagster.core.outcome import OutcomeKind
from promptforge_dagster.core.rate.signals import parse_signal
from promptforge_dagster.core.results import failure_record, success_record

KEY = "sk-contract-secret-0123456789"
K = OutcomeKind


def req(content="hello", cid="c1", model="openai/sim-model"):
    return PromptRequest(0, 1, 0, cid, {"model": model, "messages": [{"role": "user", "content": content}],
                                        "max_tokens": 20})


def both(api_base, key=KEY, timeout_s=30.0):
    litellm = LiteLLMProvider(api_base=api_base, api_key=key, timeout_s=timeout_s)
    return {"litellm": litellm, "lean": OpenAIHttpProvider(api_base=api_base, api_key=key, timeout_s=timeout_s,
                                                           fallback=litellm)}


def run(provider, request):
    async def go():
        try:
            return await provider.complete(request)
        finally:
            if hasattr(provider, "close"):
                await provider.close()

    return asyncio.run(go())


def canonical(value):
    """A body as the provider meant it: LiteLLM's response model adds null and empty fields
    (``tool_calls: null``, ``provider_specific_fields: {}``); the lean transport writes
    the provider's body as sent. Equal once those are dropped."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def view(outcome):
    """What the pipeline acts on, and the line it would write."""
    signal = parse_signal(outcome.status_code, outcome.message, outcome.headers, 1_800_000_000.0)
    line = (success_record("job", 0, "c1", outcome) if outcome.kind is K.SUCCESS
            else failure_record("job", 0, "c1", "provider_error", outcome))
    if outcome.kind is K.SUCCESS:  # the provider's generated ids differ per call; the shape must not
        line["response"]["body"] = canonical({k: v for k, v in line["response"]["body"].items()
                                              if k not in ("id", "created")})
        line["response"]["request_id"] = bool(line["response"]["request_id"])
    return {"kind": outcome.kind, "status": outcome.status_code, "error_type": outcome.error_type,
            "tokens": (outcome.tokens_in, outcome.tokens_out), "message": outcome.message,
            "limit": (signal.limit, signal.limit_value) if signal else None,
            "retry_after": round(signal.retry_after_s, 1) if signal and signal.retry_after_s else None,
            "line": line}


CASES = {
    "success": ("x" * 40, K.SUCCESS),
    "server_error": ("__pf_500__", K.OVERLOADED),
    "bad_request": ("__pf_400__", K.PERMANENT),
    "forbidden": ("__pf_403__", K.FATAL),
    "quota": ("__pf_quota__", K.FATAL),
    "daily_limit": ("__pf_daily__", K.FATAL),  # spent for the day: the job stops, a rerun resumes
    "malformed_200": ("__pf_malformed__", None),
    "connection_dropped": ("__pf_reset__", K.TRANSIENT),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_transports_agree(simulator_factory, case):
    sim = simulator_factory("--rpm", "6000", "--latency-ms", "1")
    content, kind = CASES[case]
    views = {name: view(run(p, req(content))) for name, p in both(sim.api_base).items()}
    if kind is not None:
        assert views["litellm"]["kind"] is kind, views["litellm"]
    assert views["lean"] == views["litellm"]
    assert KEY not in repr(views)


@pytest.mark.parametrize("headers", ["full", "none"])
def test_refusals_agree_with_and_without_headers(simulator_factory, headers):
    sim = simulator_factory("--rpm", "60", "--burst-s", "1", "--latency-ms", "0", "--headers", headers)
    views = {}
    for name, provider in both(sim.api_base).items():
        run(provider, req())  # the one request the bucket holds
        views[name] = view(run(provider, req()))
        sim_wait = asyncio.run(asyncio.sleep(1.1))  # the bucket refills for the other transport
        assert sim_wait is None
    assert views["litellm"]["kind"] is K.RATE_LIMITED and views["litellm"]["status"] == 429
    for v in views.values():  # measured at different instants: "try again in 997ms" vs "979ms"
        v["retry_after"] = None
        v["message"] = re.sub(r"\d+ms", "Nms", v["message"] or "")
        v["line"] = re.sub(r"\d+ms", "Nms", repr(v["line"]))
    assert views["lean"] == views["litellm"]


def test_wrong_key_and_timeout_agree(simulator_factory):
    sim = simulator_factory("--rpm", "6000", "--latency-ms", "1", "--api-key", KEY)
    wrong = {name: view(run(p, req())) for name, p in both(sim.api_base, key="sk-wrong-key-000000").items()}
    assert wrong["litellm"]["kind"] is K.FATAL and wrong["lean"] == wrong["litellm"]
    slow = {name: view(run(p, req("__pf_hang__"))) for name, p in both(sim.api_base, timeout_s=0.5).items()}
    assert slow["litellm"]["kind"] is K.TRANSIENT and slow["lean"] == slow["litellm"]


def test_other_providers_go_through_litellm(simulator_factory):
    sim = simulator_factory("--rpm", "6000", "--latency-ms", "1")
    lean = both(sim.api_base)["lean"]
    out = run(lean, req(model="anthropic/claude-3-5-haiku-latest"))
    assert out.error_type == "missing_credentials"  # LiteLLM's path: no Anthropic key, nothing sent
