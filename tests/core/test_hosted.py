"""A lane's server is a hosted API only on the provider's own endpoint; anything else keeps
the blind in-flight bound a server that queues without a word needs."""

import pytest

from promptforge_dagster.core.deployments import Deployment, DeploymentGroup
from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate.concurrency import BLIND_IN_FLIGHT
from promptforge_dagster.core.rate.controller import AdaptiveController
from promptforge_dagster.core.rate.hosted import hosted_api
from promptforge_dagster.core.rate_lanes import RateLanes
from promptforge_dagster.simulator.account import AccountLimits
from tests.core.provider_matrix import run_matrix
from tests.core.rate_scenarios import controller


@pytest.mark.parametrize("provider, api_base", [
    ("openai", None), ("anthropic", None), ("gemini", None), ("vertex_ai", None), ("bedrock", None),
    ("openai", "https://api.openai.com/v1"), ("azure", "https://contoso-eu.openai.azure.com/"),
    ("azure", "contoso.cognitiveservices.azure.com"), ("vertex_ai", "https://europe-west4-aiplatform.googleapis.com"),
    ("bedrock", "https://bedrock-runtime.eu-central-1.amazonaws.com"), ("mistral", "https://api.mistral.ai/v1"),
])
def test_a_providers_own_endpoint_is_a_hosted_api(provider, api_base):
    assert hosted_api(provider, api_base)


@pytest.mark.parametrize("provider, api_base", [
    ("openai", "http://127.0.0.1:8000/v1"), ("openai", "http://vllm.internal:8000/v1"),
    ("hosted_vllm", None), ("ollama", None), ("some_new_provider", None),
    ("openai", "https://api.openai.com.attacker.example/v1"), ("openai", "https://notapi.openai.com.example"),
    ("openai", "http://ec2-3-4-5-6.compute-1.amazonaws.com:8000/v1"), ("azure", "https://litellm-proxy.corp/v1"),
])
def test_any_other_server_is_of_unknown_kind(provider, api_base):
    assert not hosted_api(provider, api_base)


def test_lanes_are_told_by_the_base_their_requests_go_to():
    lanes = RateLanes.adaptive(RateConfig(window_s=5), key_hash="k", default_provider="openai", clock=lambda: 0.0,
                               api_base="http://127.0.0.1:9000/v1")
    lanes.groups = {"eu": DeploymentGroup("eu", [Deployment("west", "eu", "azure/mini", api_base="https://w.openai.azure.com"),
                                                 Deployment("local", "eu", "openai/m", api_base="http://10.0.0.5/v1")])}
    hosted = {lane: lanes.controller(lane).cfg.hosted
              for lane in ("openai/gpt-4o#k", "anthropic/claude#k", "azure/mini@west#h", "openai/m@local#h")}
    assert hosted == {"openai/gpt-4o#k": False, "anthropic/claude#k": True,  # the job's base serves its provider only
                      "azure/mini@west#h": True, "openai/m@local#h": False}


def test_a_hosted_lane_follows_littles_law_before_any_answer_an_unknown_one_holds_to_the_blind_bound():
    for hosted, expected in ((True, 3_000 / 60 * 30 * 1.5), (False, BLIND_IN_FLIGHT)):
        c = AdaptiveController(RateConfig(window_s=5, rpm_hint=3_000, hosted=hosted), now=0.0)
        assert c.in_flight_limit() == pytest.approx(expected, abs=1)  # (30 s assumed before any answer)


def test_a_hosted_lane_takes_no_in_flight_ceiling_from_its_answers_times():
    # (the same account teaches a lane of unknown kind a ceiling: tests/core/test_queueing.py)
    for hosted in (False, True):
        c = controller(hosted=hosted)
        run_matrix(c, AccountLimits(rpm=None, concurrency=32, queue=10**6), 60.0, style="vllm", latency_s=1.0,
                   timeout_s=120.0)
        assert (c.in_flight.ceiling is None) is hosted, (hosted, c.in_flight.ceiling)
