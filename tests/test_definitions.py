"""The code location loads for both deployments from one pure choice; its assets are
dynamically partitioned with their checks; small jobs run in the run worker and large
ones get the k8s_job_executor on GKE; every resource the assets need is bound."""

import pytest
import yaml

import dagster as dg
from promptforge_dagster.definitions import build_definitions
from promptforge_dagster.deployment import deployment_from_env
from tests.conftest import ROOT

GKE_ENV = {"PROMPTFORGE_DEPLOYMENT": "gke", "PROMPTFORGE_OUTPUT_BUCKET": "pf-bucket", "PROMPTFORGE_PROJECT": "pf-proj",
           "PROMPTFORGE_IMAGE": "europe-docker.pkg.dev/pf-proj/pf/promptforge:1"}


def test_workspace_points_at_loadable_definitions(tmp_path, monkeypatch):
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    module = workspace["load_from"][0]["python_module"]
    import importlib

    defs = importlib.import_module(module).defs()
    assert isinstance(defs, dg.Definitions)
    defs.get_repository_def()  # resolves every job, sensor and resource


@pytest.mark.parametrize("env", [{}, GKE_ENV], ids=["local", "gke"])
def test_assets_checks_jobs_and_resources(env, tmp_path):
    d = deployment_from_env({"PROMPTFORGE_HOME": str(tmp_path), **env})
    defs = build_definitions(d)
    repo = defs.get_repository_def()
    results = repo.assets_defs_by_key[dg.AssetKey("batch_results")]
    assert isinstance(results.partitions_def, dg.DynamicPartitionsDefinition)
    assert {c.name for c in results.check_specs} == {
        "one_result_line_per_input_line", "custom_ids_unique", "failure_rate_under_threshold"}
    assert {"llm", "rate_limiter", "checkpoints", "storage", "job_registry"} <= set(repo.get_top_level_resources())
    small, large = repo.get_job("promptforge_small_job"), repo.get_job("promptforge_large_job")
    assert small.executor_def.name == "in_process"
    assert large.executor_def.name == ("k8s" if env else "multiprocess")
    assert {s.name for s in repo.sensor_defs} == {"upload_sensor", "run_watchdog", "run_end_recorder"}
    assert [s.name for s in repo.schedule_defs] == ["rerun_failed_prompts"]
    # what the UI shows: kinds of where this deployment runs, owners, code references, lineage, scoped checks
    graph = defs.resolve_asset_graph()
    node = graph.get(dg.AssetKey("batch_results"))
    assert node.kinds >= ({"gcs", "kubernetes"} if env else {"local"}) and not (node.kinds & ({"local"} if env else {"gcs", "kubernetes"}))
    assert node.owners == ["team:ml-platform"] and dg.AssetKey("uploads") in node.parent_keys
    assert "dagster/code_references" in node.metadata
    assert all(c.partitions_def is results.partitions_def for c in results.check_specs)


def test_deployment_errors_name_what_is_missing():
    with pytest.raises(ValueError, match="PROMPTFORGE_PROJECT"):
        deployment_from_env({"PROMPTFORGE_DEPLOYMENT": "gke", "PROMPTFORGE_OUTPUT_BUCKET": "b"})
    with pytest.raises(ValueError, match="use local or gke"):
        deployment_from_env({"PROMPTFORGE_DEPLOYMENT": "mars"})
    with pytest.raises(ValueError, match="PROMPTFORGE_LEASE_TTL"):
        deployment_from_env({"PROMPTFORGE_LEASE_TTL": "soon"})


def test_gke_keys_come_from_the_environment_not_the_code():
    from promptforge_dagster.definitions import resources_for

    llm = resources_for(deployment_from_env(GKE_ENV))["llm"]
    assert isinstance(llm.api_key, dg.EnvVar) and llm.api_key.env_var_name == "OPENAI_API_KEY"
    local = resources_for(deployment_from_env({}))["llm"]
    assert local.api_key is None and local.api_base == "simulator"


def test_dagster_and_dg_cli_validate_the_code_location(tmp_path):
    """`dagster definitions validate` and `dg check defs` both accept the project."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PROMPTFORGE_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    bindir = os.path.dirname(sys.executable)
    for cmd in ([os.path.join(bindir, "dagster"), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
                [os.path.join(bindir, "dg"), "check", "defs"]):
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, (cmd, p.stdout[-2000:], p.stderr[-2000:])
