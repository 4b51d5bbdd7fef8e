"""Invariant: nothing an input line carries reaches any host but the job's provider.

Each client setting a hostile line could use (transport, credentials, routing, callbacks,
cost) is put in a line pointing at a second local server (the canary), in the Batch and
the simple format, and run through the real ``promptforge run`` (LiteLLM, the provider
simulator). The line becomes an ``invalid_request`` (or ``model_not_allowed``) record, the
canary gets no request, the simulator never sees the hostile line, and the good line
beside it succeeds."""

import json

import pytest

from promptforge_dagster import cli
from promptforge_dagster.core.request_policy import CLIENT_SETTINGS
from tests.security.canary import Canary

KEY = "sk-test-the-jobs-own-key-1234567890"


@pytest.fixture(scope="module")
def canary():
    c = Canary()
    yield c
    c.close()


@pytest.fixture(scope="module")
def logged_simulator(tmp_path_factory):
    from tests.conftest import SimulatorProcess

    log = tmp_path_factory.mktemp("sim") / "requests.jsonl"
    sim = SimulatorProcess("--rpm", "0", "--latency-ms", "1", "--request-log", str(log))
    yield sim, log
    sim.stop()


def hostile_value(field: str, url: str):
    if field in ("headers", "extra_headers", "extra_query", "extra_body", "metadata", "proxy"):
        return {"Authorization": f"Bearer {KEY}", "url": url, "api_base": url, "x-target": url}
    if field in ("model_list", "fallbacks", "context_window_fallbacks", "callbacks", "success_callback",
                 "failure_callback"):
        return [{"model_name": "m", "litellm_params": {"model": "openai/x", "api_base": url}}, url]
    if field in ("timeout", "request_timeout", "max_retries", "num_retries", "input_cost_per_token",
                 "output_cost_per_token"):
        return 0.0001
    return url


FIELDS = sorted(CLIENT_SETTINGS | {"litellm_params", "litellm_logging_obj", "litellm_call_id",
                                   "input_cost_per_second", "unknown_field"})


def run_job(tmp_path, lines, *extra, env=None):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code = cli.main(["run", str(src), "--output", str(tmp_path / "out"), "--model", "openai/sim-model",
                     "--api-base", extra[0], "--registry", f"sqlite:///{tmp_path / 'r.sqlite3'}",
                     "--no-share-lanes", "--quiet", "--timeout", "10", *extra[1:]])
    results = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    return code, {r["custom_id"]: r for r in results}, len(results)


def sent_ids(log) -> set[str]:
    return {json.loads(x)["custom_id"] for x in log.read_text().splitlines() if x.strip()}


@pytest.mark.parametrize("fmt", ["batch", "simple"])
@pytest.mark.parametrize("field", FIELDS)
def test_a_client_setting_in_a_line_is_refused_and_reaches_no_other_host(
        tmp_path, monkeypatch, canary, logged_simulator, field, fmt):
    sim, log = logged_simulator
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    hostile_id = f"hostile-{fmt}-{field}"
    value = hostile_value(field, canary.url + "/v1")
    if fmt == "batch":
        hostile = {"custom_id": hostile_id, "method": "POST", "url": "/v1/chat/completions",
                   "body": {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], field: value}}
    else:
        hostile = {"id": hostile_id, "prompt": "hi", field: value}
    good = {"id": f"good-{fmt}-{field}", "prompt": "hello"}
    before = len(canary.hits)
    code, by_id, count = run_job(tmp_path, [hostile, good], sim.api_base)
    assert code == 0 and count == 2
    if fmt == "simple" and field == "metadata":
        # a simple line's "metadata" is the user's own, carried to its result and never sent
        assert by_id[hostile_id]["error"] is None and by_id[hostile_id]["metadata"] == value
    else:
        assert by_id[hostile_id]["error"]["code"] == "invalid_request"
        assert field[:20] in by_id[hostile_id]["error"]["message"]
        assert hostile_id not in sent_ids(log)
    assert by_id[f"good-{fmt}-{field}"]["error"] is None
    assert canary.hits[before:] == []
    assert f"good-{fmt}-{field}" in sent_ids(log)


MODEL_CASES = [
    ("groq/llama-3.1-8b-instant", "model_not_allowed"),
    ("together_ai/meta-llama/Llama-3-70b", "model_not_allowed"),
    ("anthropic/claude-sonnet-4", "model_not_allowed"),
    ("hosted_vllm/evil", "model_not_allowed"),
    ("http://CANARY/v1", "invalid_request"),
    ("openai/../../v1", "invalid_request"),
    ("sim model with spaces", "invalid_request"),
    (7, "invalid_request"),
    ({"name": "x"}, "invalid_request"),
]


@pytest.mark.parametrize("model, code", MODEL_CASES, ids=[str(m) for m, _ in MODEL_CASES])
def test_a_model_of_another_provider_is_refused_without_an_allow_list(
        tmp_path, monkeypatch, canary, logged_simulator, model, code):
    sim, log = logged_simulator
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    # Were such a line sent, these would point its provider at the canary (and hand it a key).
    for var in ("GROQ_API_BASE", "TOGETHERAI_API_BASE", "ANTHROPIC_API_BASE", "HOSTED_VLLM_API_BASE"):
        monkeypatch.setenv(var, canary.url)
    for var in ("GROQ_API_KEY", "TOGETHERAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(var, "sk-other-provider-key")
    if isinstance(model, str):
        model = model.replace("CANARY", canary.url.removeprefix("http://"))
    before = len(canary.hits)
    hostile = {"id": "hostile-model", "prompt": "hi", "model": model}
    _, by_id, count = run_job(tmp_path, [hostile, {"id": "good", "prompt": "x"}], sim.api_base)
    assert count == 2 and by_id["hostile-model"]["error"]["code"] == code
    assert canary.hits[before:] == []
    assert "hostile-model" not in sent_ids(log)


def test_an_allowed_other_provider_uses_its_own_key_and_never_the_jobs_endpoint(
        tmp_path, monkeypatch, canary, logged_simulator):
    """--allow-model lets a line use another provider: with that provider's own key, at its
    own endpoint (here the canary, standing in for it), never with the job's key."""
    sim, log = logged_simulator
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", canary.url + "/v1")
    monkeypatch.delenv("HOSTED_VLLM_API_KEY", raising=False)
    before = len(canary.hits)
    lines = [{"id": "vllm", "prompt": "hi", "model": "hosted_vllm/served"}, {"id": "job", "prompt": "x"}]
    _, by_id, _ = run_job(tmp_path, lines, sim.api_base, "--allow-model", "hosted_vllm/*")
    # no HOSTED_VLLM_API_KEY: the line is refused before anything is sent
    assert by_id["vllm"]["error"]["code"] == "missing_credentials"
    assert "HOSTED_VLLM_API_KEY" in by_id["vllm"]["error"]["message"]
    assert canary.hits[before:] == []
    monkeypatch.setenv("HOSTED_VLLM_API_KEY", "sk-vllm-own-key")
    (tmp_path / "again").mkdir()
    _, by_id, _ = run_job(tmp_path / "again", lines, sim.api_base, "--allow-model", "hosted_vllm/*")
    assert by_id["job"]["error"] is None and "vllm" not in sent_ids(log)
    auth = [h.get("Authorization") or h.get("authorization") for _, _, h in canary.hits[before:]]
    assert auth and all(a == "Bearer sk-vllm-own-key" for a in auth)


def test_a_remote_image_url_is_refused_for_providers_whose_client_would_fetch_it(tmp_path):
    from promptforge_dagster.core.request_policy import RequestPolicy

    content = [{"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/secret.png"}}]
    body = {"model": "anthropic/claude-sonnet-4", "messages": [{"role": "user", "content": content}]}
    assert RequestPolicy("anthropic").check(body).code == "invalid_request"
    inline = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    assert RequestPolicy("anthropic").check({**body, "messages": [{"role": "user", "content": inline}]}) is None
    assert RequestPolicy("openai").check({**body, "model": "openai/gpt-4o"}) is None  # OpenAI fetches it itself


def test_the_dagster_llm_resource_applies_the_same_policy_and_keys(monkeypatch):
    from promptforge_dagster.deployment import deployment_from_env
    from promptforge_dagster.resources.llm import LLMResource

    d = deployment_from_env({"PROMPTFORGE_HOME": "/tmp/pf", "PROMPTFORGE_ALLOW_MODELS": "anthropic/claude-*, groq/*"})
    assert d.allow_models == ("anthropic/claude-*", "groq/*")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-own")
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    llm = LLMResource(model="openai/gpt-4o-mini", allow_models=list(d.allow_models))
    msgs = [{"role": "user", "content": "x"}]
    policy = llm.policy()
    assert policy.check({"model": "anthropic/claude-sonnet-4", "messages": msgs}) is None
    assert policy.check({"model": "groq/llama3", "messages": msgs}).code == "missing_credentials"
    assert policy.check({"model": "mistral/large", "messages": msgs}).code == "model_not_allowed"
    assert policy.check({"model": "gpt-4o", "messages": msgs, "base_url": "http://x"}).code == "invalid_request"
    assert LLMResource(model="openai/gpt-4o-mini").policy().check(
        {"model": "anthropic/claude-sonnet-4", "messages": msgs}).code == "model_not_allowed"
