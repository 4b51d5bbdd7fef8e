"""Stack configuration, read once. Every component takes a ``StackConfig``, never
``pulumi.Config`` itself, so tests build one directly."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class StackConfig:
    project: str
    region: str
    prefix: str
    image: str
    input_prefix: str = "inputs/"
    output_prefix: str = "outputs/"
    checkpoint_retention_days: int = 30
    output_retention_days: int = 90
    dagster_chart_version: str = "1.13.27"
    dagster_namespace: str = "dagster"
    run_ksa: str = "promptforge-runner"  # the Kubernetes service account run and step pods use
    provider_keys_secret: str = "promptforge-provider-keys"  # the Kubernetes secret: one entry per variable
    # The providers' standard key variables: each is its own Secret Manager secret and its
    # own entry in the Kubernetes secret, so one provider's key can be rotated or revoked alone.
    provider_key_vars: tuple[str, ...] = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY")

    def key_secret_id(self, variable: str) -> str:
        """The Secret Manager id of one provider key: ``<prefix>-openai-api-key``."""
        return f"{self.prefix}-{variable.lower().replace('_', '-')}"

    @property
    def input_bucket(self) -> str:
        return f"{self.prefix}-inputs"

    @property
    def output_bucket(self) -> str:
        return f"{self.prefix}-outputs"


def load() -> StackConfig:
    cfg = pulumi.Config("promptforge")
    gcp = pulumi.Config("gcp")
    return StackConfig(
        project=gcp.require("project"),
        region=cfg.get("region") or gcp.get("region") or "europe-west1",
        prefix=cfg.require("prefix"),
        image=cfg.require("image"),
        input_prefix=cfg.get("inputPrefix") or "inputs/",
        output_prefix=cfg.get("outputPrefix") or "outputs/",
        checkpoint_retention_days=cfg.get_int("checkpointRetentionDays") or 30,
        output_retention_days=cfg.get_int("outputRetentionDays") or 90,
        dagster_chart_version=cfg.get("dagsterChartVersion") or "1.13.27",
        dagster_namespace=cfg.get("dagsterNamespace") or "dagster",
        provider_key_vars=tuple(cfg.get_object("providerKeys") or StackConfig.provider_key_vars),
    )
