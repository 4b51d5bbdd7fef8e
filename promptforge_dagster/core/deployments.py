"""Deployment groups: one model name served by several deployments (keys, base URLs,
regions), so a job's rate is the sum of theirs.

The file is LiteLLM Router's ``model_list`` (JSON or YAML): each entry maps the
``model_name`` lines use to one deployment's ``litellm_params``. Keys are named, not
written: ``api_key: os.environ/AZURE_EU_KEY`` reads the variable when the job starts (a
literal key is accepted, as the Router does, and is never printed).

    model_list:
      - model_name: gpt-4o-mini
        litellm_params: {model: azure/gpt-4o-mini-eu, api_base: "https://eu.example.com",
                         api_key: os.environ/AZURE_EU_KEY}
        model_info: {id: eu}          # optional; else "<model_name>/<n>"
      - model_name: gpt-4o-mini
        litellm_params: {model: openai/gpt-4o-mini, api_key: os.environ/OPENAI_API_KEY}

Each deployment is its own rate lane (its own learned ceiling). :meth:`DeploymentGroup.pick`
gives a request to whichever deployment has allowance now; a deployment that fails hard
(401/403, quota exhausted) is dropped and the job goes on with the others. Pure: the
environment and the acquire function are arguments.

>>> groups = parse_model_list({"model_list": [
...     {"model_name": "m", "litellm_params": {"model": "openai/m", "api_base": "http://a", "api_key": "os.environ/KA"}},
...     {"model_name": "m", "litellm_params": {"model": "openai/m", "api_base": "http://b", "api_key": "os.environ/KB"}},
... ]}, env={"KA": "sk-a", "KB": "sk-b"}, source="d.yaml")
>>> g = groups["m"]; [d.id for d in g.deployments], repr(g.deployments[0]).count("sk-a")
(['m/0', 'm/1'], 0)
>>> waits = {"m/0": 0.5, "m/1": 0.0}
>>> g.pick(lambda d: waits[d.id])[0].id    # the one with allowance now
'm/1'
>>> _ = g.drop("m/1", "HTTP 401"); g.pick(lambda d: waits[d.id])
(None, 0.5)
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

ENV_PREFIX = "os.environ/"  # LiteLLM Router's way to name a key's variable instead of writing the key


class DeploymentConfigError(ValueError):
    """A deployments file that cannot be used; the message names the file and the entry.
    ``missing_variable``: the key variable it names that is not set (a credentials error)."""

    def __init__(self, message: str, missing_variable: str | None = None) -> None:
        super().__init__(message)
        self.missing_variable = missing_variable


@dataclass(frozen=True)
class Deployment:
    id: str
    model_name: str  # what lines ask for
    model: str  # what is sent: provider/model
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never in a repr, a log or a lane name
    region: str | None = None
    api_version: str | None = None  # Azure OpenAI's

    @property
    def key_hash(self) -> str:
        return hashlib.sha256(self.api_key.encode()).hexdigest()[:12] if self.api_key else "nokey"


@dataclass
class DeploymentGroup:
    name: str
    deployments: list[Deployment]
    dropped: dict[str, str] = field(default_factory=dict)  # deployment id -> why
    _next: int = 0  # where the next pick starts: deployments with allowance take turns

    def alive(self) -> list[Deployment]:
        return [d for d in self.deployments if d.id not in self.dropped]

    def pick(self, acquire: Callable[[Deployment], float]) -> tuple[Deployment | None, float]:
        """The first deployment (taking turns) whose ``acquire`` grants a request now, else
        (None, the shortest wait); (None, inf) once every deployment is dropped.
        ``acquire`` spends the allowance it grants, so it is called until one grants."""
        alive = self.alive()
        if not alive:
            return None, math.inf
        shortest = math.inf
        for i in range(len(alive)):
            d = alive[(self._next + i) % len(alive)]
            wait = acquire(d)
            if wait <= 0.0:
                self._next = (self._next + i + 1) % len(alive)
                return d, 0.0
            shortest = min(shortest, wait)
        return None, shortest

    def drop_failed(self, deployment: Deployment, status: int, message: str) -> str | None:
        """Drop a deployment after a hard failure; the reason (its key scrubbed) if it was
        still in the group, else None.

        >>> g = DeploymentGroup("m", [Deployment("a", "m", "openai/m", api_key="sk-secret")])
        >>> g.drop_failed(g.deployments[0], 401, "bad key sk-secret"), g.drop_failed(g.deployments[0], 401, "")
        ('HTTP 401: bad key ***', None)
        """
        text = message[:200]
        if deployment.api_key:
            text = text.replace(deployment.api_key, "***")
        reason = f"HTTP {status}" + (f": {text}" if text else "")
        return reason if self.drop(deployment.id, reason) else None

    def drop(self, deployment_id: str, reason: str) -> bool:
        """Take a deployment out of the group; False if it was out already."""
        if deployment_id in self.dropped:
            return False
        self.dropped[deployment_id] = reason
        return True


def parse_model_list(data: Any, *, env: Mapping[str, str], source: str) -> dict[str, DeploymentGroup]:
    """Groups by model name from a parsed Router ``model_list`` document."""
    entries = data.get("model_list") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise DeploymentConfigError(f"{source}: expected a non-empty model_list (LiteLLM Router's format)")
    groups: dict[str, DeploymentGroup] = {}
    seen: set[str] = set()
    for n, entry in enumerate(entries):
        where = f"{source}: model_list[{n}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str) \
                or not isinstance(entry.get("litellm_params"), dict):
            raise DeploymentConfigError(f"{where}: needs model_name and litellm_params")
        name, params = entry["model_name"], entry["litellm_params"]
        model = params.get("model")
        if not isinstance(model, str) or not model:
            raise DeploymentConfigError(f"{where}: litellm_params.model is missing")
        group = groups.setdefault(name, DeploymentGroup(name, []))
        info = entry.get("model_info") if isinstance(entry.get("model_info"), dict) else {}
        dep_id = str(info.get("id") or f"{name}/{len(group.deployments)}")
        if dep_id in seen:
            raise DeploymentConfigError(f"{where}: deployment id {dep_id!r} is used twice")
        seen.add(dep_id)
        group.deployments.append(Deployment(
            dep_id, name, model, api_base=_text(params.get("api_base"), where, "api_base"),
            api_key=_key(params.get("api_key"), env, where),
            region=_text(params.get("region") or params.get("vertex_location") or params.get("aws_region_name"),
                         where, "region"),
            api_version=_text(params.get("api_version"), where, "api_version")))
    return groups


def load_model_list(text: str, *, env: Mapping[str, str], source: str) -> dict[str, DeploymentGroup]:
    """Parse a deployments file's text: JSON, else YAML."""
    try:
        data = json.loads(text)
    except ValueError:
        import yaml  # PyYAML: already here (Dagster's dependency)

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise DeploymentConfigError(f"{source}: not valid JSON or YAML{at}") from None
    return parse_model_list(data, env=env, source=source)


def group_for(groups: Mapping[str, DeploymentGroup], model: str) -> DeploymentGroup | None:
    """The group a line's model names: exactly, or without its provider prefix.

    >>> g = {"gpt-4o-mini": DeploymentGroup("gpt-4o-mini", [])}
    >>> group_for(g, "openai/gpt-4o-mini").name, group_for(g, "gpt-4o")
    ('gpt-4o-mini', None)
    """
    if not groups:
        return None
    return groups.get(model) or groups.get(model.split("/", 1)[1] if "/" in model else model)


def _text(value: Any, where: str, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DeploymentConfigError(f"{where}: {name} must be a string")
    return value


def _key(value: Any, env: Mapping[str, str], where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DeploymentConfigError(f"{where}: api_key must be a string (os.environ/VARIABLE)")
    if value.startswith(ENV_PREFIX):
        variable = value[len(ENV_PREFIX):]
        key = env.get(variable)
        if not key:
            raise DeploymentConfigError(f"{where}: api_key names {variable}, which is not set", variable)
        return key
    return value
