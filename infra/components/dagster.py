"""Dagster on GKE: the official Helm chart with K8sRunLauncher, run monitoring, run
retries and Postgres; the code location image; Workload Identity for every pod."""

from __future__ import annotations

import json

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.components.data import Compute
from infra.components.identity import Identity
from infra.config import StackConfig

DAGSTER_CHART_REPO = "https://dagster-io.github.io/helm"
# The Kubernetes secret both the Dagster chart (DAGSTER_PG_PASSWORD) and its PostgreSQL
# subchart read the run-storage password from, under the key both expect.
DB_SECRET = "dagster-postgresql-secret"
DB_SECRET_KEY = "postgresql-password"
DB_PASSWORD_LENGTH = 32  # 32 characters of letters and digits: ~190 bits


def kubeconfig(cluster) -> pulumi.Output[str]:
    """A kubeconfig that authenticates with gke-gcloud-auth-plugin (no static credentials)."""
    def build(args):
        name, endpoint, auth = args
        ca = (auth or {}).get("cluster_ca_certificate") if isinstance(auth, dict) else getattr(
            auth, "cluster_ca_certificate", None)
        return json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": name, "cluster": {"server": f"https://{endpoint}",
                                                    "certificate-authority-data": ca}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "users": [{"name": name, "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "gke-gcloud-auth-plugin",
                "provideClusterInfo": True, "interactiveMode": "Never"}}}],
        })

    return pulumi.Output.all(cluster.name, cluster.endpoint, cluster.master_auth).apply(build)


def helm_values(cfg: StackConfig, control_plane_email, runner_ksa: str) -> dict:
    repository, _, tag = cfg.image.rpartition(":")
    env = {"PROMPTFORGE_DEPLOYMENT": "gke", "PROMPTFORGE_OUTPUT_BUCKET": cfg.output_bucket,
           "PROMPTFORGE_INPUT_BUCKET": cfg.input_bucket,
           "PROMPTFORGE_PROJECT": cfg.project, "PROMPTFORGE_IMAGE": cfg.image,
           "PROMPTFORGE_NAMESPACE": cfg.dagster_namespace, "PROMPTFORGE_SERVICE_ACCOUNT": runner_ksa,
           "PROMPTFORGE_ENV_SECRETS": cfg.provider_keys_secret, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return {
        "serviceAccount": {"create": True, "name": "dagster",
                           "annotations": {"iam.gke.io/gcp-service-account": control_plane_email}},
        "dagsterWebserver": {"replicaCount": 1},
        "dagster-user-deployments": {"enabled": True, "deployments": [{
            "name": "promptforge",
            "image": {"repository": repository, "tag": tag or "latest", "pullPolicy": "IfNotPresent"},
            "dagsterApiGrpcArgs": ["-m", "promptforge_dagster.definitions"],
            "port": 3030,
            "env": [{"name": k, "value": v} for k, v in env.items()],
        }]},
        "runLauncher": {"type": "K8sRunLauncher", "config": {"k8sRunLauncher": {
            "envSecrets": [{"name": cfg.provider_keys_secret}],
            "runK8sConfig": {"podSpecConfig": {"serviceAccountName": runner_ksa}},
        }}},
        # step and run logs (stdout/stderr) in the output bucket, readable from the UI: dagster-gcp's manager
        "computeLogManager": {"type": "GCSComputeLogManager", "config": {"gcsComputeLogManager": {
            "bucket": cfg.output_bucket, "prefix": "dagster-compute-logs", "uploadInterval": 30}}},
        "dagsterDaemon": {
            "runMonitoring": {"enabled": True, "pollIntervalSeconds": 30, "startTimeoutSeconds": 300},
            "runRetries": {"enabled": True, "maxRetries": 3},
        },
        # run storage: the generated password from our own secret, never the chart's default
        "generatePostgresqlPasswordSecret": False,
        "global": {"postgresqlSecretName": DB_SECRET},
        "postgresql": {"enabled": True, "existingSecret": DB_SECRET},
    }


class DagsterPlatform(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, identity: Identity, compute: Compute,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("promptforge:dagster:DagsterPlatform", name, None, opts)
        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=kubeconfig(compute.cluster),
                                     opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=self.provider)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-ns", metadata=k8s.meta.v1.ObjectMetaArgs(name=cfg.dagster_namespace), opts=child)
        self.runner_ksa = k8s.core.v1.ServiceAccount(
            f"{name}-runner-ksa", metadata=k8s.meta.v1.ObjectMetaArgs(
                name=cfg.run_ksa, namespace=cfg.dagster_namespace,
                annotations={"iam.gke.io/gcp-service-account": identity.runner.email}),
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[self.namespace]))
        # Dagster's run storage password: generated once, kept in Secret Manager (for operators
        # and backups) and in the Kubernetes secret the chart reads; never the chart's default.
        self.db_password = random.RandomPassword(f"{name}-db-password", length=DB_PASSWORD_LENGTH, special=False,
                                                 opts=pulumi.ResourceOptions(parent=self))
        self.db_secret = gcp.secretmanager.Secret(
            f"{name}-db-password", secret_id=f"{cfg.prefix}-dagster-db-password", project=cfg.project,
            replication=gcp.secretmanager.SecretReplicationArgs(auto=gcp.secretmanager.SecretReplicationAutoArgs()),
            opts=pulumi.ResourceOptions(parent=self))
        gcp.secretmanager.SecretVersion(f"{name}-db-password-v", secret=self.db_secret.id,
                                        secret_data=self.db_password.result, opts=pulumi.ResourceOptions(parent=self))
        self.db_k8s_secret = k8s.core.v1.Secret(
            f"{name}-db-secret", metadata=k8s.meta.v1.ObjectMetaArgs(name=DB_SECRET, namespace=cfg.dagster_namespace),
            string_data={DB_SECRET_KEY: self.db_password.result},
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[self.namespace]))
        self.release = k8s.helm.v3.Release(
            f"{name}-dagster", name="dagster", chart="dagster", version=cfg.dagster_chart_version,
            namespace=cfg.dagster_namespace,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=DAGSTER_CHART_REPO),
            values=identity.control_plane.email.apply(lambda e: helm_values(cfg, e, cfg.run_ksa)),
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider,
                                        depends_on=[self.runner_ksa, self.db_k8s_secret]))
        self.register_outputs({"release": self.release.name})
