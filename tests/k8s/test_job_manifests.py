"""The Kubernetes Jobs PromptForge asks for on GKE are valid and sized for the job.

The upload sensor of the production definitions plans a small and a large job; their
manifests are rendered by dagster-k8s's own functions, the way its run launcher (run
worker pod, sized by the run's ``dagster-k8s/config`` tag) and its k8s_job_executor
(step pod, from the run's executor config) build them, with no cluster: the Kubernetes
API is never called. Each manifest passes ``kubernetes-validate --strict`` and carries
the resources, service account, secrets and labels we set."""

import json
import os
import time
import subprocess
import sys

import pytest
import yaml
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

import dagster as dg
from promptforge_dagster.core.job_planning import LARGE_JOB, SMALL_JOB
from promptforge_dagster.definitions import build_definitions
from promptforge_dagster.deployment import deployment_from_env
from promptforge_dagster.resources import JobRegistryResource, StorageResource

GKE_ENV = {"PROMPTFORGE_DEPLOYMENT": "gke", "PROMPTFORGE_OUTPUT_BUCKET": "pf-bucket", "PROMPTFORGE_PROJECT": "pf-proj",
           "PROMPTFORGE_IMAGE": "europe-docker.pkg.dev/pf-proj/promptforge/promptforge:1.0"}


def plan_gke_runs(tmp_path):
    d = deployment_from_env(GKE_ENV)
    sensor = build_definitions(d).get_repository_def().get_sensor_def("upload_sensor")
    root = tmp_path / "bucket"
    (root / "inputs").mkdir(parents=True)
    (root / "inputs" / "small.jsonl").write_text('{"id": "a", "prompt": "p"}\n' * 10)
    (root / "inputs" / "large.jsonl").write_text(('{"id": "a", "prompt": "' + "x" * 280 + '"}\n') * 4000)
    past = int((time.time() - 60) * 1e9)  # uploads that finished a minute ago (local files must stop changing)
    for name in ("small.jsonl", "large.jsonl"):
        os.utime(root / "inputs" / name, ns=(past, past))
    resources = {"storage": StorageResource(root=str(root)),  # a local stand-in: the plan does not depend on it
                 "job_registry": JobRegistryResource(uri=f"sqlite://{tmp_path / 'r.sqlite3'}")}
    with dg.DagsterInstance.ephemeral() as instance:
        result = sensor(dg.build_sensor_context(instance=instance, resources=resources))
    return d, {r.job_name: r for r in result.run_requests}


class HelmRunLauncherSettings:
    """What the dagster Helm chart configures on the K8sRunLauncher (the manifests read
    these four settings from it; no Kubernetes client is created)."""

    job_image = None
    dagster_home = "/opt/dagster/dagster_home"
    instance_config_map = "dagster-instance"
    postgres_password_secret = "dagster-postgresql-secret"


LAUNCHER = HelmRunLauncherSettings()


def executor_context(exc_cfg):
    """As dagster_k8s.executor.k8s_job_executor builds it from its config."""
    return K8sContainerContext(
        image_pull_policy=exc_cfg.get("image_pull_policy"), service_account_name=exc_cfg.get("service_account_name"),
        env_secrets=exc_cfg.get("env_secrets"), env_vars=exc_cfg.get("env_vars"), labels=exc_cfg.get("labels"),
        namespace=exc_cfg.get("job_namespace"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(exc_cfg.get("step_k8s_config", {})))


def render(tmp_path, name, job):
    from kubernetes.client import ApiClient

    body = ApiClient().sanitize_for_serialization(job)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path, body


def validate(path):
    exe = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    proc = subprocess.run([exe, "--strict", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_small_job_runs_in_a_sized_run_worker_and_large_job_gets_a_sized_step_pod(tmp_path):
    d, runs = plan_gke_runs(tmp_path)
    assert set(runs) == {SMALL_JOB, LARGE_JOB}
    small, large = runs[SMALL_JOB], runs[LARGE_JOB]

    # the run worker of the small job: sized by the run's dagster-k8s/config tag
    base = executor_context({**large.run_config["execution"]["config"], "step_k8s_config": {}})
    run_ctx = base.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(small.tags)))
    run_job = construct_dagster_k8s_job(
        job_config=run_ctx.get_k8s_job_config(d.image, LAUNCHER), args=["dagster", "api", "execute_run", "{}"],
        job_name="dagster-run-0123456789abcdef", pod_name="dagster-run-0123456789abcdef", component="run_worker",
        user_defined_k8s_config=run_ctx.run_k8s_config,
        labels={"dagster/job": SMALL_JOB, "dagster/run-id": "0123456789abcdef"})
    path, body = render(tmp_path, "small-run-worker", run_job)
    validate(path)
    pod = body["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "promptforge-runner"
    container = pod["containers"][0]
    assert container["image"] == GKE_ENV["PROMPTFORGE_IMAGE"]
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1Gi"}
    assert {"secretRef": {"name": "promptforge-provider-keys"}} in container["envFrom"]
    assert body["metadata"]["labels"]["app.kubernetes.io/name"] == "promptforge"

    # the step pod of the large job: the k8s_job_executor's config from the run's run_config
    exc_cfg = large.run_config["execution"]["config"]
    step_ctx = executor_context(exc_cfg)
    step_job = construct_dagster_k8s_job(
        job_config=step_ctx.get_k8s_job_config(exc_cfg.get("job_image"), LAUNCHER),
        args=["dagster", "api", "execute_step"], job_name="dagster-step-fedcba9876543210",
        pod_name="dagster-step-fedcba9876543210", component="step_worker",
        user_defined_k8s_config=step_ctx.run_k8s_config,
        labels={"dagster/job": LARGE_JOB, "dagster/op": "batch_results", "dagster/run-id": "fedcba9876543210"},
        env_vars=[{"name": "DAGSTER_RUN_STEP_KEY", "value": "batch_results"}])
    path, body = render(tmp_path, "large-step", step_job)
    validate(path)
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["memory"] == "1Gi"
    assert container["resources"]["limits"]["memory"] == "2Gi"
    assert body["metadata"]["labels"]["app.kubernetes.io/component"] == "batch-step"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PROMPTFORGE_DEPLOYMENT"] == "gke" and env["PROMPTFORGE_OUTPUT_BUCKET"] == "pf-bucket"
    assert env["PROMPTFORGE_REGISTRY"] == "firestore://pf-proj"
    assert not any("sk-" in (v or "") for v in env.values())  # keys come from the secret, never inline


def test_an_invalid_manifest_is_rejected(tmp_path):
    """The validator is strict: an unknown field fails (so the test above can fail)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
                                   "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i",
                                                                                  "cpuz": 1}]}}}}))
    with pytest.raises(AssertionError):
        validate(bad)
