"""One pure function decides the deployment: the embedded local default or GKE.

Called inside the definitions loader (never at import), from the environment it is given,
so tests pass a dict instead of patching ``os.environ``.

>>> d = deployment_from_env({"PROMPTFORGE_HOME": "/tmp/pf"})
>>> d.name, d.bucket_root, d.registry_uri, d.api_base
('local', '/tmp/pf/bucket', 'sqlite:///tmp/pf/registry.sqlite3', 'simulator')
>>> deployment_from_env({"PROMPTFORGE_DEPLOYMENT": "gke"})
Traceback (most recent call last):
...
ValueError: PROMPTFORGE_DEPLOYMENT=gke needs PROMPTFORGE_OUTPUT_BUCKET (where results go)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from promptforge_dagster import settings
from promptforge_dagster.core.job_planning import prefixes_overlap


@dataclass(frozen=True)
class Deployment:
    name: str  # "local" or "gke"
    bucket_root: str  # a local folder standing in for the bucket, or gs://bucket
    bucket_name: str
    input_prefix: str
    output_prefix: str
    registry_uri: str
    model: str
    api_base: str | None  # "simulator": the project's own provider simulator, started per run
    simulator_rpm: float
    small_job_prompts: int
    checkpoint_interval_s: float
    lease_ttl_s: float
    heartbeat_s: float
    max_retries: int
    input_root: str | None = None  # the input bucket, when it is not the output one
    allow_models: tuple[str, ...] = ()  # other providers' models lines may use (PROMPTFORGE_ALLOW_MODELS, comma-separated)
    # GKE only
    project: str | None = None
    image: str | None = None
    namespace: str = "dagster"
    service_account: str | None = None
    env_secrets: tuple[str, ...] = ()

    @property
    def is_local(self) -> bool:
        return self.name == "local"


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    value = settings.get_float(env, key, default)
    return default if value is None else value


def deployment_from_env(env: Mapping[str, str]) -> Deployment:
    deployment = _deployment(env)
    same_bucket = deployment.input_root in (None, deployment.bucket_root)
    if same_bucket and prefixes_overlap(deployment.input_prefix, deployment.output_prefix):
        raise ValueError(f"PROMPTFORGE_INPUT_PREFIX={deployment.input_prefix!r} and PROMPTFORGE_OUTPUT_PREFIX="
                         f"{deployment.output_prefix!r} overlap in one bucket: results would become new jobs; "
                         "use separate prefixes (or PROMPTFORGE_INPUT_BUCKET)")
    return deployment


def _deployment(env: Mapping[str, str]) -> Deployment:
    def get(name: str) -> str | None:
        return settings.get(env, name)

    name = (get("PROMPTFORGE_DEPLOYMENT") or "local").strip().lower()
    common = dict(
        input_prefix=get("PROMPTFORGE_INPUT_PREFIX"),
        output_prefix=get("PROMPTFORGE_OUTPUT_PREFIX"),
        small_job_prompts=int(_float(env, "PROMPTFORGE_SMALL_JOB_PROMPTS", 1000)),
        checkpoint_interval_s=_float(env, "PROMPTFORGE_CHECKPOINT_INTERVAL", 30.0),
        max_retries=int(_float(env, "PROMPTFORGE_MAX_RETRIES", 3)),
        allow_models=tuple(p.strip() for p in (get("PROMPTFORGE_ALLOW_MODELS") or "").split(",") if p.strip()),
    )
    if name == "local":
        home = settings.home(env)
        return Deployment(
            name="local", bucket_root=os.path.join(home, "bucket"), bucket_name="local-bucket",
            registry_uri=f"sqlite://{os.path.join(home, 'registry.sqlite3')}",
            model=get("PROMPTFORGE_MODEL") or "openai/sim-model",
            api_base=get("PROMPTFORGE_API_BASE") or "simulator",
            simulator_rpm=_float(env, "PROMPTFORGE_SIMULATOR_RPM", 3000.0),
            lease_ttl_s=_float(env, "PROMPTFORGE_LEASE_TTL", 20.0),
            heartbeat_s=_float(env, "PROMPTFORGE_HEARTBEAT", 2.0),
            **common,
        )
    if name == "gke":
        bucket = get("PROMPTFORGE_OUTPUT_BUCKET")
        if not bucket:
            raise ValueError("PROMPTFORGE_DEPLOYMENT=gke needs PROMPTFORGE_OUTPUT_BUCKET (where results go)")
        project = get("PROMPTFORGE_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT")
        if not project:
            raise ValueError("PROMPTFORGE_DEPLOYMENT=gke needs PROMPTFORGE_PROJECT (for the Firestore job registry)")
        input_bucket = get("PROMPTFORGE_INPUT_BUCKET")
        return Deployment(
            name="gke", bucket_root=f"gs://{bucket}", bucket_name=bucket,
            registry_uri=get("PROMPTFORGE_REGISTRY") or f"firestore://{project}",
            model=get("PROMPTFORGE_MODEL") or "openai/gpt-4o-mini",
            api_base=get("PROMPTFORGE_API_BASE"),
            simulator_rpm=0.0,
            lease_ttl_s=_float(env, "PROMPTFORGE_LEASE_TTL", 120.0),
            heartbeat_s=_float(env, "PROMPTFORGE_HEARTBEAT", 10.0),
            project=project,
            input_root=f"gs://{input_bucket}" if input_bucket and input_bucket != bucket else None,
            image=get("PROMPTFORGE_IMAGE"),
            namespace=get("PROMPTFORGE_NAMESPACE"),
            service_account=get("PROMPTFORGE_SERVICE_ACCOUNT"),
            env_secrets=tuple(s for s in (get("PROMPTFORGE_ENV_SECRETS") or "").split(",") if s),
            **common,
        )
    raise ValueError(f"PROMPTFORGE_DEPLOYMENT={name!r}: use local or gke")
