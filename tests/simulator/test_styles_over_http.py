"""Invariant: each provider style the simulator speaks reaches the rate engine through the
real client (LiteLLM over HTTP) as that provider's signal: the limit its message or headers
name, and the right outcome kind, so the fake-clock matrix and the real path agree."""

import asyncio

import pytest

from promptforge_dagster.clients.litellm_provider import LiteLLMProvider
from promptforge_dagster.core.formats import PromptRequest
from promptforge_dagster.core.outcome import OutcomeKind
from promptforge_dagster.core.rate.signals import parse_signal


def req(i):
    return PromptRequest(i, i + 1, 0, f"c{i}", {"model": "sim-model", "messages": [{"role": "user", "content": "x"}],
                                                 "max_tokens": 5})


async def burst(provider, n):
    return await asyncio.gather(*(provider.complete(req(i)) for i in range(n)))


@pytest.mark.parametrize("style, limit, value", [
    ("openai", "requests", 60.0), ("azure", "requests", None), ("anthropic", "requests", 60.0),
    ("gemini", "requests", 60.0), ("vertex", None, None), ("vertex-quota", "requests", None),
    ("groq", "requests", 60.0), ("bare", None, None), ("bedrock", "requests", None), ("mistral", "requests", None),
])
def test_a_refusal_in_each_providers_words_reaches_the_engine_as_that_signal(simulator_factory, style, limit, value):
    sim = simulator_factory("--rpm", "60", "--burst-s", "1", "--latency-ms", "0", "--style", style)
    outcomes = asyncio.run(burst(LiteLLMProvider(api_base=sim.api_base, api_key="sk-test"), 4))
    refused = [o for o in outcomes if o.kind is OutcomeKind.RATE_LIMITED]
    assert refused and all(o.status_code == 429 for o in refused)
    signal = parse_signal(refused[0].status_code, refused[0].message, refused[0].headers)
    assert (signal.limit, signal.limit_value) == (limit, value)


def test_a_full_server_queue_is_a_concurrency_signal(simulator_factory):
    sim = simulator_factory("--rpm", "0", "--concurrency", "1", "--latency-ms", "400", "--latency-sigma", "0",
                            "--style", "vllm")
    outcomes = asyncio.run(burst(LiteLLMProvider(api_base=sim.api_base, api_key="sk-test"), 3))
    full = [o for o in outcomes if o.kind is not OutcomeKind.SUCCESS]
    assert full and parse_signal(full[0].status_code, full[0].message, full[0].headers).limit == "concurrency"
    assert sum(o.kind is OutcomeKind.SUCCESS for o in outcomes) == 1


def test_anthropics_output_token_limit_reaches_the_engine_as_output_tokens(simulator_factory):
    sim = simulator_factory("--rpm", "0", "--tpm", "100", "--tokens-basis", "output", "--burst-s", "60",
                            "--latency-ms", "300", "--latency-sigma", "0", "--style", "anthropic")
    provider = LiteLLMProvider(api_base=sim.api_base, api_key="sk-test")
    budgeted = [PromptRequest(i, i + 1, 0, f"c{i}", {"model": "sim-model", "max_tokens": 60,
                                                      "messages": [{"role": "user", "content": "x"}]}) for i in range(4)]

    async def send():
        return await asyncio.gather(*(provider.complete(r) for r in budgeted))

    outcomes = asyncio.run(send())
    refused = [o for o in outcomes if o.kind is OutcomeKind.RATE_LIMITED]
    admitted = [o for o in outcomes if o.kind is OutcomeKind.SUCCESS]
    assert len(admitted) == 1 and len(refused) == 3  # 100 output tokens hold one answer reserved as 60
    signal = parse_signal(refused[0].status_code, refused[0].message, refused[0].headers)
    assert (signal.limit, signal.token_basis, signal.limit_value) == ("tokens", "output", 100.0)


def test_a_busy_shared_pool_refuses_in_vertexs_words_naming_no_limit(simulator_factory):
    sim = simulator_factory("--rpm", "0", "--pool-refusals", "0.5", "--latency-ms", "0", "--style", "openai",
                            "--seed", "3")
    outcomes = asyncio.run(burst(LiteLLMProvider(api_base=sim.api_base, api_key="sk-test"), 40))
    refused = [o for o in outcomes if o.kind is OutcomeKind.RATE_LIMITED]
    assert 8 <= len(refused) <= 32  # about half, whatever the (absent) rate limit
    assert all("Resource exhausted" in o.message for o in refused)
    assert parse_signal(refused[0].status_code, refused[0].message, refused[0].headers).limit is None


def test_groqs_headers_reach_the_engine_as_a_days_count_and_its_refusal_names_the_minutes(simulator_factory):
    sim = simulator_factory("--rpm", "60", "--burst-s", "1", "--latency-ms", "0", "--style", "groq")
    outcomes = asyncio.run(burst(LiteLLMProvider(api_base=sim.api_base, api_key="sk-test"), 4))
    admitted = [o for o in outcomes if o.kind is OutcomeKind.SUCCESS]
    refused = [o for o in outcomes if o.kind is OutcomeKind.RATE_LIMITED]
    said = parse_signal(admitted[0].status_code, admitted[0].message, admitted[0].headers).headers
    assert said.limit_requests == 14_400 and said.requests_per_minute is None  # x-ratelimit-limit-requests: RPD
    signal = parse_signal(refused[0].status_code, refused[0].message, refused[0].headers)
    assert (signal.limit, signal.limit_value, signal.headers.requests_per_minute) == ("requests", 60.0, None)


def test_a_request_larger_than_the_token_limit_is_that_lines_error_not_a_refusal_to_retry(simulator_factory):
    """OpenAI answers a request over the TPM limit itself 429 "Request too large ...": no
    wait admits it, so it is a permanent error for its line, and the rest go on."""
    sim = simulator_factory("--rpm", "0", "--tpm", "1000", "--latency-ms", "0", "--style", "openai")
    provider = LiteLLMProvider(api_base=sim.api_base, api_key="sk-test")
    huge = PromptRequest(0, 1, 0, "c0", {"model": "sim-model", "max_tokens": 5,
                                         "messages": [{"role": "user", "content": "word " * 2_000}]})
    big, small = asyncio.run(provider.complete(huge)), asyncio.run(provider.complete(req(1)))
    assert big.kind is OutcomeKind.PERMANENT and "Request too large" in big.message
    assert small.kind is OutcomeKind.SUCCESS


def test_a_mistral_answer_states_its_minutes_request_count_in_its_header_names(simulator_factory):
    sim = simulator_factory("--rpm", "60", "--burst-s", "1", "--latency-ms", "0", "--style", "mistral")
    outcomes = asyncio.run(burst(LiteLLMProvider(api_base=sim.api_base, api_key="sk-test"), 2))
    admitted = [o for o in outcomes if o.kind is OutcomeKind.SUCCESS]
    said = parse_signal(admitted[0].status_code, admitted[0].message, admitted[0].headers).headers
    assert said.requests_per_minute == 60


def test_a_request_the_client_gave_up_on_is_dropped_not_served(simulator_factory):
    """As vLLM aborts a request whose client disconnected: the answer no one waits for is not
    counted as served (it was, and a flood of timeouts over HTTP looked like goodput), and its
    batch slot is free again."""
    import time

    sim = simulator_factory("--rpm", "0", "--concurrency", "1", "--queue", "10", "--latency-ms", "1500",
                            "--latency-sigma", "0", "--style", "vllm")
    outcome = asyncio.run(LiteLLMProvider(api_base=sim.api_base, api_key="sk-test", timeout_s=0.3).complete(req(0)))
    assert outcome.kind is not OutcomeKind.SUCCESS
    time.sleep(2.0)  # past the answer time: a request served anyway would be counted by now
    stats = sim.stats()
    assert stats["received"] == 1 and stats["ok"] == 0


def test_a_refusal_comes_back_after_the_round_trip_it_is_told_and_an_answer_at_once(simulator_factory):
    # a hosted API's 429 crosses the internet and its gateway (50-300 ms): whatever a lane sends meanwhile is
    # refused too, so the simulator can be told how long a refusal takes (benchmarks/refusal_trip.py)
    import time

    sim = simulator_factory("--rpm", "60", "--burst-s", "1", "--latency-ms", "0", "--refusal-latency-ms", "400")
    provider = LiteLLMProvider(api_base=sim.api_base, api_key="sk-test")

    async def timed(i):
        start = time.monotonic()
        outcome = await provider.complete(req(i))
        return outcome.kind, time.monotonic() - start

    async def three():
        first = await timed(0)  # (admitted: the bucket holds one request; the client's first call warms it up)
        refused = await timed(1)
        await asyncio.sleep(1.1)  # refilled
        return first, refused, await timed(2)

    (first, _), (second, refused_s), (third, answered_s) = asyncio.run(three())
    assert (first, second, third) == (OutcomeKind.SUCCESS, OutcomeKind.RATE_LIMITED, OutcomeKind.SUCCESS)
    assert refused_s >= 0.2 and answered_s < 0.15  # (0.5-1.5x of 400 ms)
