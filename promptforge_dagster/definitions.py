"""The Dagster code location, built once.

``deployment_from_env`` (pure) decides local or GKE; this module wires resources, the
executor of each job, the sensors and the schedule for that deployment. Nothing is read
from the environment at import: Dagster calls ``defs()`` when it loads the location.
"""

from __future__ import annotations

import os

import dagster as dg

from promptforge_dagster.assets.batch import UPLOADS, batch_results, batch_summary, jobs_partitions
from promptforge_dagster.core.job_planning import (
    LARGE_JOB, POD_EPHEMERAL_STORAGE, POD_EPHEMERAL_STORAGE_LIMIT, SMALL_JOB,
)
from promptforge_dagster.deployment import Deployment, deployment_from_env
from promptforge_dagster.resources import (
    CheckpointResource, JobRegistryResource, LLMResource, RateLimiterResource, StorageResource,
)
from promptforge_dagster.sensors.rerun_failed import build_rerun_failed_prompts
from promptforge_dagster.sensors.run_watchdog import build_run_end_recorder, build_run_watchdog
from promptforge_dagster.sensors.upload_sensor import build_upload_sensor


def resources_for(d: Deployment) -> dict[str, dg.ConfigurableResource]:
    api_key = None if d.is_local else dg.EnvVar("OPENAI_API_KEY")
    return {
        "llm": LLMResource(model=d.model, api_base=d.api_base, api_key=api_key, simulator_rpm=d.simulator_rpm,
                           allow_models=list(d.allow_models)),
        "rate_limiter": RateLimiterResource(window_s=30.0),
        "checkpoints": CheckpointResource(interval_s=d.checkpoint_interval_s, lease_ttl_s=d.lease_ttl_s,
                                          heartbeat_s=d.heartbeat_s),
        "storage": StorageResource(root=d.bucket_root, input_root=d.input_root, input_prefix=d.input_prefix,
                                   output_prefix=d.output_prefix),
        "job_registry": JobRegistryResource(uri=d.registry_uri),
    }


def k8s_executor_config(d: Deployment) -> dict:
    """The k8s_job_executor's configuration: one pod per step, the runner's service
    account, provider keys from a Kubernetes secret, and labels to find the pods by."""
    return {
        "job_namespace": d.namespace,
        "service_account_name": d.service_account,
        "env_secrets": list(d.env_secrets),
        "env_vars": ["PROMPTFORGE_DEPLOYMENT=gke", f"PROMPTFORGE_OUTPUT_BUCKET={d.bucket_name}",
                     *([f"PROMPTFORGE_INPUT_BUCKET={d.input_root[5:]}"] if d.input_root else []),
                     f"PROMPTFORGE_PROJECT={d.project}", f"PROMPTFORGE_REGISTRY={d.registry_uri}",
                     "LITELLM_LOCAL_MODEL_COST_MAP=True"],
        "labels": {"app.kubernetes.io/name": "promptforge", "app.kubernetes.io/component": "batch-step"},
        "step_k8s_config": {"container_config": {"resources": {
            "requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": POD_EPHEMERAL_STORAGE},
            "limits": {"cpu": "2", "memory": "2Gi", "ephemeral-storage": POD_EPHEMERAL_STORAGE_LIMIT}}}},
        "image_pull_policy": "IfNotPresent",
        **({"job_image": d.image} if d.image else {}),
    }


def executors_for(d: Deployment) -> tuple[dg.ExecutorDefinition, dg.ExecutorDefinition]:
    """(small, large): small jobs run inside the run worker; large ones get a dedicated
    pod per step on GKE (a separate step process locally, as the pod would be)."""
    if d.is_local:
        return dg.in_process_executor, dg.multiprocess_executor.configured({"max_concurrent": 1})
    from dagster_k8s import k8s_job_executor

    return dg.in_process_executor, k8s_job_executor


def large_run_config(d: Deployment, plan) -> dict | None:
    """On GKE, a large job's executor config with its step pod sized for the job."""
    if d.is_local:
        return None
    config = k8s_executor_config(d)
    if plan.step_resources:
        config["step_k8s_config"] = {"container_config": {"resources": plan.step_resources}}
    return {"execution": {"config": config}}


def assets_for(d: Deployment) -> list:
    """The assets, with kinds that say where this deployment runs them: local files and the
    simulator locally; GCS and Kubernetes pods on GKE."""
    where = {"local"} if d.is_local else {"gcs", "kubernetes"}

    def placed(spec: dg.AssetSpec) -> dg.AssetSpec:
        return spec.replace_attributes(kinds={*spec.kinds, *where})

    uploads = UPLOADS.replace_attributes(kinds={"jsonl", "local"} if d.is_local else {"jsonl", "gcs"})
    return [uploads, batch_results.map_asset_specs(placed), batch_summary.map_asset_specs(placed)]


def with_code_references(assets: list) -> list:
    """Each asset linked to the file and line that defines it (the UI's code references)."""
    return dg.with_source_code_references(assets)


def build_definitions(d: Deployment) -> dg.Definitions:
    small_exec, large_exec = executors_for(d)
    selection = dg.AssetSelection.assets(batch_results, batch_summary)
    small = dg.define_asset_job(SMALL_JOB, selection=selection, partitions_def=jobs_partitions,
                                executor_def=small_exec, description="Jobs under the small-job threshold: run in "
                                "the shared run worker, no dedicated pod.")
    large = dg.define_asset_job(LARGE_JOB, selection=selection, partitions_def=jobs_partitions,
                                executor_def=large_exec, description="Large jobs: a dedicated pod (GKE).",
                                config=None if d.is_local else {"execution": {"config": k8s_executor_config(d)}})
    upload = build_upload_sensor([small, large], small_job_prompts=d.small_job_prompts, max_retries=d.max_retries,
                                 listing_interval_s=0.0 if d.is_local else 60.0,
                                 minimum_interval_seconds=2 if d.is_local else 15,
                                 run_config_for=lambda plan: large_run_config(d, plan) if plan.job_name == LARGE_JOB
                                 else None, k8s=not d.is_local)
    return dg.Definitions(
        assets=with_code_references(assets_for(d)),
        jobs=[small, large],
        sensors=[upload, build_run_watchdog(minimum_interval_seconds=3 if d.is_local else 30),
                 build_run_end_recorder(minimum_interval_seconds=3 if d.is_local else 30)],
        schedules=[build_rerun_failed_prompts(small, max_retries=d.max_retries)],
        resources=resources_for(d),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(deployment_from_env(os.environ))
