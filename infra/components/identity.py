"""Identity and secrets: one service account per component, only the roles it needs."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig


class Identity(pulumi.ComponentResource):
    """Service accounts (receiver, Eventarc, Dagster control plane, run pods) and one
    secret per provider key, each readable only by the run pods' account."""

    def __init__(self, name: str, cfg: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("promptforge:identity:Identity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def account(key: str, display: str) -> gcp.serviceaccount.Account:
            return gcp.serviceaccount.Account(f"{name}-{key}", account_id=f"{cfg.prefix}-{key}"[:30],
                                              display_name=display, project=cfg.project, opts=child)

        self.receiver = account("receiver", "PromptForge Eventarc receiver (Cloud Run)")
        self.eventarc = account("eventarc", "PromptForge Eventarc trigger identity")
        self.control_plane = account("dagster", "PromptForge Dagster control plane (webserver, daemon, code)")
        self.runner = account("runner", "PromptForge run and step pods")

        def project_role(key: str, sa: gcp.serviceaccount.Account, role: str) -> gcp.projects.IAMMember:
            return gcp.projects.IAMMember(f"{name}-{key}", project=cfg.project, role=role,
                                          member=sa.email.apply(lambda e: f"serviceAccount:{e}"), opts=child)

        # Firestore (the job registry): the receiver records jobs, the sensors read them, runs update them.
        project_role("receiver-datastore", self.receiver, "roles/datastore.user")
        project_role("dagster-datastore", self.control_plane, "roles/datastore.user")
        project_role("runner-datastore", self.runner, "roles/datastore.user")
        project_role("eventarc-receiver", self.eventarc, "roles/eventarc.eventReceiver")

        # GKE pods act as these accounts through Workload Identity.
        def workload_identity(key: str, sa: gcp.serviceaccount.Account, ksa: str) -> gcp.serviceaccount.IAMMember:
            return gcp.serviceaccount.IAMMember(
                f"{name}-{key}-wi", service_account_id=sa.name, role="roles/iam.workloadIdentityUser",
                member=f"serviceAccount:{cfg.project}.svc.id.goog[{cfg.dagster_namespace}/{ksa}]", opts=child)

        workload_identity("runner", self.runner, cfg.run_ksa)
        workload_identity("dagster", self.control_plane, "dagster")

        # One secret per provider key (values are added out of band: keys never enter Pulumi
        # state), each readable by the run pods' account only.
        self.provider_keys = {}
        for variable in cfg.provider_key_vars:
            key = variable.lower().replace("_", "-")
            secret = gcp.secretmanager.Secret(
                f"{name}-{key}", secret_id=cfg.key_secret_id(variable), project=cfg.project,
                labels={"promptforge": "provider-key"},
                replication=gcp.secretmanager.SecretReplicationArgs(auto=gcp.secretmanager.SecretReplicationAutoArgs()),
                opts=child)
            gcp.secretmanager.SecretIamMember(
                f"{name}-{key}-runner", secret_id=secret.id, project=cfg.project,
                role="roles/secretmanager.secretAccessor",
                member=self.runner.email.apply(lambda e: f"serviceAccount:{e}"), opts=child)
            self.provider_keys[variable] = secret
        self.register_outputs({"runner": self.runner.email, "receiver": self.receiver.email})
