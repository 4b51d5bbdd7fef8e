"""Storage: private input and output buckets with lifecycle rules."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.components.identity import Identity
from infra.config import StackConfig


def _bucket(name: str, bucket_name: str, cfg: StackConfig, rules: list, opts: pulumi.ResourceOptions):
    return gcp.storage.Bucket(
        name, name=bucket_name, project=cfg.project, location=cfg.region.upper(),
        uniform_bucket_level_access=True, public_access_prevention="enforced",
        versioning=gcp.storage.BucketVersioningArgs(enabled=False), lifecycle_rules=rules,
        force_destroy=False, opts=opts)


def _delete(age: int | None = None, *, prefixes: list[str] | None = None, suffixes: list[str] | None = None,
            days_since_custom_time: int | None = None):
    return gcp.storage.BucketLifecycleRuleArgs(
        action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
        condition=gcp.storage.BucketLifecycleRuleConditionArgs(
            age=age, matches_prefixes=prefixes, matches_suffixes=suffixes,
            days_since_custom_time=days_since_custom_time))


# A job's working state (core/job/layout.py): never deleted by age alone. An attempt that
# publishes stamps these objects' Custom-Time; the rule counts days from that stamp, so the
# state of a job that has not published (failed, paused, waiting for a rerun) is kept.
WORKING_STATE_SUFFIXES = [".pfck", "/scan.json", ".part.jsonl"]
# What a job publishes: deleted by age after the output retention.
PUBLISHED_SUFFIXES = ["/results.jsonl", "/summary.json", "/rate.png"]


class Storage(pulumi.ComponentResource):
    """Inputs arrive in one bucket; outputs, parts and checkpoints go to the other."""

    def __init__(self, name: str, cfg: StackConfig, identity: Identity,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("promptforge:storage:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.input_bucket = _bucket(f"{name}-inputs", cfg.input_bucket, cfg,
                                    [_delete(cfg.output_retention_days, prefixes=[cfg.input_prefix])], child)
        self.output_bucket = _bucket(f"{name}-outputs", cfg.output_bucket, cfg, [
            _delete(days_since_custom_time=cfg.checkpoint_retention_days, suffixes=WORKING_STATE_SUFFIXES),
            _delete(cfg.output_retention_days, prefixes=[cfg.output_prefix], suffixes=PUBLISHED_SUFFIXES),
        ], child)

        def grant(key: str, bucket: gcp.storage.Bucket, role: str, sa) -> None:
            gcp.storage.BucketIAMMember(f"{name}-{key}", bucket=bucket.name, role=role,
                                        member=sa.email.apply(lambda e: f"serviceAccount:{e}"), opts=child)

        grant("runner-read-inputs", self.input_bucket, "roles/storage.objectViewer", identity.runner)
        grant("runner-write-outputs", self.output_bucket, "roles/storage.objectUser", identity.runner)
        grant("dagster-list-inputs", self.input_bucket, "roles/storage.objectViewer", identity.control_plane)
        grant("dagster-read-outputs", self.output_bucket, "roles/storage.objectViewer", identity.control_plane)
        self.register_outputs({"input_bucket": self.input_bucket.name, "output_bucket": self.output_bucket.name})
