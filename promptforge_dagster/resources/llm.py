"""The LLM resource: LiteLLM against a provider, or the project's own simulator."""

from __future__ import annotations

import subprocess
import threading
from typing import Optional

import dagster as dg
from pydantic import PrivateAttr

SIMULATOR = "simulator"


def _import_litellm() -> None:
    import promptforge_dagster.clients.litellm_provider  # noqa: F401


class LLMResource(dg.ConfigurableResource):
    """``api_key`` comes through ``dg.EnvVar`` (never logged: LiteLLM calls are made with
    it and error messages are scrubbed of it). ``api_base="simulator"`` starts the
    project's provider simulator for the run (the embedded default: no key, no cost)."""

    model: str = "openai/gpt-4o-mini"
    api_base: Optional[str] = None
    api_key: Optional[str] = None
    api_version: Optional[str] = None  # Azure OpenAI's api-version (azure/DEPLOYMENT models)
    timeout_s: float = 120.0
    transport: str = "auto"  # auto: the lean HTTP client for openai/ models, LiteLLM otherwise; or lean, litellm
    max_in_flight: Optional[int] = None  # an optional cap; by default the bound follows rate x latency
    allow_models: list[str] = []  # lines may name models of another provider matching these (e.g. "anthropic/*")
    # several deployments for a model (LiteLLM Router's model_list, JSON or YAML; keys as os.environ/VARIABLE):
    # a file path, or the document itself; each deployment is paced as its own lane
    deployments: Optional[str] = None
    simulator_rpm: float = 3000.0
    simulator_latency_ms: float = 50.0
    _sim: Optional[subprocess.Popen] = PrivateAttr(default=None)
    _sim_base: Optional[str] = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # LiteLLM takes seconds to import: start now, beside Dagster's own step start-up
        threading.Thread(target=_import_litellm, daemon=True).start()
        if self.api_base == SIMULATOR:
            from promptforge_dagster.simulator.launch import start_simulator

            self._sim, self._sim_base = start_simulator(
                "--rpm", str(self.simulator_rpm), "--headers", "none", "--latency-ms", str(self.simulator_latency_ms))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._sim is not None:
            self._sim.kill()
            self._sim.wait(timeout=10)
            self._sim = None

    @property
    def effective_api_base(self) -> Optional[str]:
        return self._sim_base if self.api_base == SIMULATOR else self.api_base

    def effective_api_key(self) -> Optional[str]:
        if self.api_base == SIMULATOR:
            return "sk-promptforge-simulator"
        return self.api_key or self._credentials()[0]

    def _credentials(self):
        import os

        from promptforge_dagster.core.request_policy import job_credentials

        return job_credentials(self.model, self.effective_api_base, tuple(self.allow_models), os.environ)

    def policy(self):
        """What a line may ask for: the job model's provider, plus ``allow_models``."""
        return self._credentials()[2]

    def provider(self):
        from promptforge_dagster.clients.litellm_provider import provider_of
        from promptforge_dagster.clients.transport import make_provider

        from promptforge_dagster.clients.transport import with_deployments

        provider = make_provider(self.transport, api_base=self.effective_api_base, api_key=self.effective_api_key(),
                                 timeout_s=self.timeout_s, default_provider=provider_of(self.model),
                                 provider_keys=self._credentials()[1], api_version=self.api_version)
        return with_deployments(provider, self.groups(), transport=self.transport, timeout_s=self.timeout_s)

    def groups(self) -> dict:
        """The deployment groups of ``deployments`` (empty without); raises
        :class:`~promptforge_dagster.core.deployments.DeploymentConfigError` with one line."""
        import os

        from promptforge_dagster.core.deployments import DeploymentConfigError, load_model_list

        if not self.deployments:
            return {}
        text, source = self.deployments, "the llm resource's deployments"
        if "\n" not in text and not text.lstrip().startswith(("{", "[")):  # a path
            source = text
            try:
                with open(text, encoding="utf-8") as f:
                    text = f.read()
            except OSError as exc:
                raise DeploymentConfigError(f"llm resource deployments={source}: {exc.strerror or exc}") from None
        return load_model_list(text, env=os.environ, source=source)

    def key_hash(self) -> str:
        from promptforge_dagster.clients.litellm_provider import key_hash

        return key_hash(self.effective_api_key())

    def default_provider(self) -> str:
        from promptforge_dagster.clients.litellm_provider import provider_of

        return provider_of(self.model)
