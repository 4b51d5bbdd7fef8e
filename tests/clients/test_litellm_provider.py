"""Invariant: every answer of a real OpenAI-compatible server (the simulator) reaches the
pipeline as a correctly classified Outcome through litellm.acompletion, with tokens and
rate headers, and the API key never appears in what comes back."""

import asyncio

import pytest

from promptforge_dagster.clients.litellm_provider import LiteLLMProvider
from promptforge_dagster.core.formats import PromptRequest
from promptforge_dagster.core.outcome import OutcomeKind
from promptforge_dagster.core.rate.headers import parse_rate_headers

K = OutcomeKind
KEY = "sk-test-secret-key-0123456789"


def req(content="hello", cid="c1", **body):
    return PromptRequest(0, 1, 0, cid, {"model": "sim-model", "messages": [{"role": "user", "content": content}],
                                        "max_tokens": 20, **body})


def complete(provider, request):
    return asyncio.run(provider.complete(request))


def test_success_carries_usage_body_request_id_and_rate_headers(simulator_factory):
    sim = simulator_factory("--rpm", "600", "--latency-ms", "1")
    out = complete(LiteLLMProvider(api_base=sim.api_base, api_key=KEY), req("x" * 40))
    assert out.kind is K.SUCCESS and out.status_code == 200
    assert out.tokens_in == 11 and out.tokens_out == 16
    assert out.body["choices"][0]["message"]["content"].startswith("echo: ")
    assert out.request_id
    assert parse_rate_headers(out.headers).limit_requests == 600


def test_rate_limited_answer_is_classified_with_retry_after(simulator_factory):
    sim = simulator_factory("--rpm", "60", "--burst-s", "1", "--latency-ms", "0")
    provider = LiteLLMProvider(api_base=sim.api_base, api_key=KEY)
    first, second = complete(provider, req()), complete(provider, req())
    assert first.kind is K.SUCCESS
    assert second.kind is K.RATE_LIMITED and second.status_code == 429
    signals = parse_rate_headers(second.headers)
    assert signals.retry_after_s is not None and 0 < signals.retry_after_s <= 1.0
    assert signals.limit_requests == 60


def test_server_errors_are_overloaded_and_bad_requests_permanent(simulator):
    provider = LiteLLMProvider(api_base=simulator.api_base, api_key=KEY)
    assert complete(provider, req("__pf_500__")).kind is K.OVERLOADED
    bad = complete(provider, req("__pf_400__"))
    assert bad.kind is K.PERMANENT and bad.status_code == 400


def test_quota_and_bad_key_are_fatal_and_the_key_is_never_echoed(simulator_factory):
    sim = simulator_factory("--api-key", "sk-the-right-one")
    wrong = LiteLLMProvider(api_base=sim.api_base, api_key=KEY)
    out = complete(wrong, req())
    assert out.kind is K.FATAL and out.status_code == 401
    assert KEY not in (out.message or "") and KEY not in repr(out)
    right = LiteLLMProvider(api_base=sim.api_base, api_key="sk-the-right-one")
    assert complete(right, req("__pf_quota__")).kind is K.FATAL


def test_timeout_and_refused_connection_are_transient(simulator):
    from tests.conftest import free_port

    hung = complete(LiteLLMProvider(api_base=simulator.api_base, api_key=KEY, timeout_s=0.5), req("__pf_hang__"))
    assert hung.kind is K.TRANSIENT
    nobody = complete(LiteLLMProvider(api_base=f"http://127.0.0.1:{free_port()}/v1", api_key=KEY), req())
    assert nobody.kind is K.TRANSIENT


@pytest.mark.parametrize("model", ["sim-model", "openai/sim-model"])
def test_models_without_a_provider_prefix_get_the_default_one(simulator, model):
    provider = LiteLLMProvider(api_base=simulator.api_base, api_key=KEY)
    out = complete(provider, PromptRequest(0, 1, 0, "c", {"model": model, "messages": [{"role": "user", "content": "hi"}]}))
    assert out.kind is K.SUCCESS


def test_cost_comes_from_litellms_price_map_where_it_knows_the_model(simulator):
    provider = LiteLLMProvider(api_base=simulator.api_base, api_key=KEY)
    known = complete(provider, PromptRequest(0, 1, 0, "c", {"model": "gpt-4o-mini",
                                                            "messages": [{"role": "user", "content": "hi"}]}))
    unknown = complete(provider, req())
    assert known.cost is not None and known.cost > 0
    assert unknown.cost is None
