"""Deployment groups: a model name served by several deployments, each its own lane; the
file is LiteLLM Router's model_list; a deployment that fails hard is dropped and the job
goes on. Pipeline cases run on virtual time against simulated accounts (no sleeps)."""

import asyncio
import json

import pytest

from promptforge_dagster.core.deployments import DeploymentConfigError, load_model_list
from promptforge_dagster.core.formats import JobDefaults, LineParser
from promptforge_dagster.core.outcome import Outcome, OutcomeKind
from promptforge_dagster.core.pipeline import Pipeline, PipelineConfig
from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate_lanes import RateLanes
from promptforge_dagster.core.reader import PromptReader
from promptforge_dagster.simulator.account import AccountLimits, SimulatedAccount
from tests.virtual_time import inline, run_virtual

YAML = """
model_list:
  - model_name: gpt-4o-mini
    litellm_params: {model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:1/v1", api_key: os.environ/KEY_A}
    model_info: {id: east}
  - model_name: gpt-4o-mini
    litellm_params: {model: azure/mini-eu, api_base: "http://127.0.0.1:2/v1", api_key: os.environ/KEY_B,
                     region: eu}
"""


def test_the_router_format_is_read_with_keys_from_named_variables():
    groups = load_model_list(YAML, env={"KEY_A": "sk-aaa", "KEY_B": "sk-bbb"}, source="deployments.yaml")
    deps = groups["gpt-4o-mini"].deployments
    assert [(d.id, d.model, d.region) for d in deps] == [("east", "openai/gpt-4o-mini", None),
                                                       ("gpt-4o-mini/1", "azure/mini-eu", "eu")]
    assert deps[0].api_key == "sk-aaa" and "sk-aaa" not in repr(deps[0]) and deps[0].key_hash != deps[1].key_hash


@pytest.mark.parametrize("text, env, says", [
    (YAML, {"KEY_A": "sk-aaa"}, "deployments.yaml: model_list[1]: api_key names KEY_B, which is not set"),
    ("model_list: []", {}, "deployments.yaml: expected a non-empty model_list"),
    ('{"model_list": [{"model_name": "m"}]}', {}, "deployments.yaml: model_list[0]: needs model_name and litellm_params"),
    ("model_list: [\n  - {a: [\n", {}, "deployments.yaml: not valid JSON or YAML at line"),
    ('[{"model_name": "m", "litellm_params": {"model": "openai/m"}, "model_info": {"id": "x"}},'
     ' {"model_name": "m", "litellm_params": {"model": "openai/m"}, "model_info": {"id": "x"}}]', {},
     "deployments.yaml: model_list[1]: deployment id 'x' is used twice"),
])
def test_a_bad_file_is_one_line_naming_the_file_and_entry(text, env, says):
    with pytest.raises(DeploymentConfigError) as err:
        load_model_list(text, env=env, source="deployments.yaml")
    assert str(err.value).startswith(says) and "\n" not in str(err.value)


class Accounts:
    """One simulated account per deployment (by api_base); answers after ``latency``."""

    def __init__(self, limits: dict[str, AccountLimits], hard_fail: dict[str, Outcome] | None = None, latency=0.2):
        self.accounts = {base: SimulatedAccount(lim, now=0.0) for base, lim in limits.items()}
        self.hard_fail = hard_fail or {}
        self.latency = latency
        self.ok: dict[str, int] = {b: 0 for b in limits}
        self.refused: dict[str, int] = {b: 0 for b in limits}
        self.models: set[str] = set()
        self.loop = None

    async def complete(self, request, deployment=None):
        assert deployment is not None, "a grouped model's request goes to a deployment"
        base = deployment.api_base
        self.models.add(request.body["model"])
        if base in self.hard_fail:
            return self.hard_fail[base]
        adm = self.accounts[base].admit(self.loop.time(), 10)
        if not adm.ok:
            self.refused[base] += 1
            return Outcome(OutcomeKind.RATE_LIMITED, 429, message="Too Many Requests")
        await asyncio.sleep(self.latency)
        self.accounts[base].release()
        self.ok[base] += 1
        return Outcome(OutcomeKind.SUCCESS, 200, body={"choices": []}, tokens_in=5, tokens_out=3)


def run_grouped(accounts: Accounts, n: int, text: str = YAML):
    data = b"".join(json.dumps({"id": f"p{i}", "prompt": "q"}).encode() + b"\n" for i in range(n))
    groups = load_model_list(text, env={"KEY_A": "sk-a", "KEY_B": "sk-b"}, source="d.yaml")
    records, logs = [], []

    async def go(loop):
        accounts.loop = loop
        lanes = RateLanes.adaptive(RateConfig(window_s=5), key_hash="k", clock=loop.time, api_base=None)
        p = Pipeline(job_id="job", lines=lambda pos: PromptReader(lambda s, k: data[s:s + k], len(data), start=pos),
                     parser=LineParser(JobDefaults("gpt-4o-mini")), provider=accounts, controller=lanes,
                     write_part=lambda envs: records.extend(envs), config=PipelineConfig(), clock=loop.time,
                     wall_clock=lambda: 0.0, offload=inline, groups=groups, log=logs.append)
        stats = await p.run()
        return stats, loop.time(), p.lanes.snapshot()

    stats, elapsed, lanes = run_virtual(go)
    return stats, elapsed, lanes, records, logs


def test_two_deployments_give_the_sum_of_their_ceilings_each_in_its_own_lane():
    accounts = Accounts({"http://127.0.0.1:1/v1": AccountLimits(rpm=600), "http://127.0.0.1:2/v1": AccountLimits(rpm=1800)})
    stats, elapsed, lanes, records, _ = run_grouped(accounts, 6000)
    assert stats.succeeded == 6000 and len(records) == 6000
    rate = sum(accounts.ok.values()) / elapsed * 60.0
    assert rate >= 0.85 * 2400, rate  # both ceilings, discovery included (a 2.5-minute job)
    assert accounts.ok["http://127.0.0.1:2/v1"] > 2 * accounts.ok["http://127.0.0.1:1/v1"]  # each at its own
    refused = sum(accounts.refused.values()) / (stats.sent or 1)
    assert refused <= 0.02, refused
    assert {lane.split("#")[0] for lane in lanes} == {"openai/gpt-4o-mini@east", "azure/mini-eu@gpt-4o-mini/1"}
    assert accounts.models == {"openai/gpt-4o-mini", "azure/mini-eu"}  # each deployment's own model name is sent


def test_a_deployment_that_fails_hard_is_dropped_and_the_job_goes_on():
    dead = Outcome(OutcomeKind.FATAL, 401, message="Incorrect API key provided")
    accounts = Accounts({"http://127.0.0.1:1/v1": AccountLimits(rpm=600), "http://127.0.0.1:2/v1": AccountLimits(rpm=600)},
                        hard_fail={"http://127.0.0.1:1/v1": dead})
    stats, _, _, records, logs = run_grouped(accounts, 300)
    assert stats.succeeded == 300 and stats.failed == 0 and len(records) == 300
    assert accounts.ok["http://127.0.0.1:2/v1"] == 300
    dropped = [m for m in logs if "dropped" in m]
    assert len(dropped) == 1 and "east" in dropped[0] and "HTTP 401" in dropped[0] and "sk-a" not in dropped[0]


def test_when_every_deployment_fails_hard_the_job_stops_as_one_bad_key_would():
    dead = Outcome(OutcomeKind.FATAL, 401, message="Incorrect API key provided")
    accounts = Accounts({"http://127.0.0.1:1/v1": AccountLimits(rpm=600), "http://127.0.0.1:2/v1": AccountLimits(rpm=600)},
                        hard_fail={"http://127.0.0.1:1/v1": dead, "http://127.0.0.1:2/v1": dead})
    stats, _, _, records, _ = run_grouped(accounts, 50)
    assert stats.succeeded == 0 and stats.fatal and "every deployment of gpt-4o-mini" in stats.fatal
