"""Data and compute: Firestore (the job registry), GKE Autopilot, Artifact Registry."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig


def _jobs_index(name: str, cfg: StackConfig, db, order: str, opts: pulumi.ResourceOptions):
    """The (status, created_at, job_id) index on the jobs collection, in one direction."""
    return gcp.firestore.Index(
        name, project=cfg.project, database=db.name, collection="promptforge_jobs", query_scope="COLLECTION",
        fields=[gcp.firestore.IndexFieldArgs(field_path="status", order="ASCENDING"),
                gcp.firestore.IndexFieldArgs(field_path="created_at", order=order),
                gcp.firestore.IndexFieldArgs(field_path="job_id", order=order)],
        opts=opts)


class Compute(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("promptforge:data:Compute", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.firestore = gcp.firestore.Database(
            f"{name}-firestore", name="(default)", project=cfg.project, location_id=cfg.region,
            type="FIRESTORE_NATIVE", concurrency_mode="PESSIMISTIC", delete_protection_state="DELETE_PROTECTION_ENABLED",
            opts=child)
        # upload_sensor lists jobs by status oldest first; the sensors and rerun_failed_prompts
        # page them newest first: one composite index for each direction
        self.jobs_by_status, self.jobs_by_status_newest = (
            _jobs_index(f"{name}-jobs-by-status{suffix}", cfg, self.firestore, order, child)
            for suffix, order in (("", "ASCENDING"), ("-newest", "DESCENDING")))
        self.repository = gcp.artifactregistry.Repository(
            f"{name}-images", repository_id="promptforge", format="DOCKER", location=cfg.region,
            project=cfg.project, description="PromptForge code location images", opts=child)
        self.cluster = gcp.container.Cluster(
            f"{name}-gke", name=f"{cfg.prefix}-gke", project=cfg.project, location=cfg.region,
            enable_autopilot=True, deletion_protection=True,
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel="REGULAR"),
            private_cluster_config=gcp.container.ClusterPrivateClusterConfigArgs(
                enable_private_nodes=True, enable_private_endpoint=False),
            workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(
                workload_pool=f"{cfg.project}.svc.id.goog"),
            opts=child)
        self.register_outputs({"cluster": self.cluster.name})
