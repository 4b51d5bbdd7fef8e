"""The event path: GCS finalize in the input bucket -> Eventarc -> the Cloud Run receiver."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.components.identity import Identity
from infra.components.storage import Storage
from infra.config import StackConfig

FINALIZED = "google.cloud.storage.object.v1.finalized"


class Events(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, identity: Identity, storage: Storage,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("promptforge:events:Events", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        service_name = f"{cfg.prefix}-receiver"
        # Eventarc signs its OIDC token for the service URL; Cloud Run's deterministic URL is
        # known before the service exists (https://SERVICE-PROJECT_NUMBER.REGION.run.app).
        project_number = gcp.organizations.get_project_output(project_id=cfg.project).number
        audience = project_number.apply(lambda n: f"https://{service_name}-{n}.{cfg.region}.run.app")
        env = [gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(name=k, value=v) for k, v in {
            "PROMPTFORGE_INPUT_BUCKET": cfg.input_bucket, "PROMPTFORGE_INPUT_PREFIX": cfg.input_prefix,
            "PROMPTFORGE_OUTPUT_PREFIX": cfg.output_prefix, "PROMPTFORGE_OUTPUT_ROOT": f"gs://{cfg.output_bucket}",
            "PROMPTFORGE_REGISTRY": f"firestore://{cfg.project}", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            # the receiver verifies every request: this audience, signed for the trigger's account only
            "RECEIVER_AUDIENCE": audience, "RECEIVER_ALLOWED_EMAILS": identity.eventarc.email,
        }.items()]
        self.receiver = gcp.cloudrunv2.Service(
            f"{name}-receiver", name=service_name, project=cfg.project, location=cfg.region,
            ingress="INGRESS_TRAFFIC_INTERNAL_ONLY", deletion_protection=False,
            template=gcp.cloudrunv2.ServiceTemplateArgs(
                service_account=identity.receiver.email,
                scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(min_instance_count=0, max_instance_count=10),
                containers=[gcp.cloudrunv2.ServiceTemplateContainerArgs(
                    image=cfg.image, args=["python", "-m", "promptforge_dagster.receiver"], envs=env,
                    resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                        limits={"cpu": "1", "memory": "512Mi"}))]),
            opts=child)
        # only Eventarc's identity may call the receiver; no public invoker
        self.invoker = gcp.cloudrunv2.ServiceIamMember(
            f"{name}-receiver-invoker", name=self.receiver.name, project=cfg.project, location=cfg.region,
            role="roles/run.invoker", member=identity.eventarc.email.apply(lambda e: f"serviceAccount:{e}"),
            opts=child)
        # GCS publishes its events through Pub/Sub: its service agent needs to publish
        gcs_agent = gcp.storage.get_project_service_account_output(project=cfg.project)
        self.gcs_publisher = gcp.projects.IAMMember(
            f"{name}-gcs-agent-publisher", project=cfg.project, role="roles/pubsub.publisher",
            member=gcs_agent.email_address.apply(lambda e: f"serviceAccount:{e}"), opts=child)
        self.trigger = gcp.eventarc.Trigger(
            f"{name}-finalized", name=f"{cfg.prefix}-finalized", project=cfg.project, location=cfg.region,
            matching_criterias=[
                gcp.eventarc.TriggerMatchingCriteriaArgs(attribute="type", value=FINALIZED),
                gcp.eventarc.TriggerMatchingCriteriaArgs(attribute="bucket", value=storage.input_bucket.name),
            ],
            destination=gcp.eventarc.TriggerDestinationArgs(
                cloud_run_service=gcp.eventarc.TriggerDestinationCloudRunServiceArgs(
                    service=self.receiver.name, region=cfg.region, path="/")),
            service_account=identity.eventarc.email, event_data_content_type="application/json",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.invoker, self.gcs_publisher]))
        self.register_outputs({"receiver": self.receiver.uri})
