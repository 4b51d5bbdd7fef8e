"""Every environment variable PromptForge reads, in one table: one name, one meaning.

Components read variables only through :func:`get` (or :func:`read` for all of them), so a
name that is not declared here cannot be read, and a retired name fails with one line that
says what replaced it. Provider keys (``OPENAI_API_KEY``, ...) are the providers' own
names and live in ``core/request_policy.py``; ``STORAGE_EMULATOR_HOST``,
``FIRESTORE_EMULATOR_HOST`` and ``OTEL_EXPORTER_OTLP_*`` are the Google and OpenTelemetry
clients' own.

>>> get({}, "PROMPTFORGE_INPUT_PREFIX")
'inputs/'
>>> get({"PROMPTFORGE_BUCKET": "b"}, "PROMPTFORGE_MODEL")
Traceback (most recent call last):
...
ValueError: PROMPTFORGE_BUCKET is no longer read (it meant the input bucket to the receiver and the output bucket to Dagster): set PROMPTFORGE_OUTPUT_BUCKET (where results go) and PROMPTFORGE_INPUT_BUCKET (where uploads arrive)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class Variable:
    name: str
    meaning: str
    default: str | None
    read_by: str  # who reads it: dagster, receiver, cli, all


VARIABLES: tuple[Variable, ...] = (
    Variable("PROMPTFORGE_DEPLOYMENT", "local (embedded default) or gke", "local", "dagster"),
    Variable("PROMPTFORGE_HOME", "local mode's folder: the local bucket and the SQLite registry",
             "~/.promptforge", "all"),
    Variable("PROMPTFORGE_INPUT_BUCKET", "the bucket uploads arrive in (GKE; default: the output bucket)", None,
             "dagster, receiver"),
    Variable("PROMPTFORGE_OUTPUT_BUCKET", "the bucket results, parts and checkpoints go to (GKE, required)", None,
             "dagster"),
    Variable("PROMPTFORGE_INPUT_PREFIX", "the prefix whose new objects become jobs", "inputs/", "dagster, receiver"),
    Variable("PROMPTFORGE_OUTPUT_PREFIX", "the prefix each job's output folder goes under", "outputs/",
             "dagster, receiver"),
    Variable("PROMPTFORGE_OUTPUT_ROOT", "the receiver's gs:// root for outputs (default: the input bucket)", None,
             "receiver"),
    Variable("PROMPTFORGE_PROJECT", "the GCP project of the Firestore registry (GKE; or GOOGLE_CLOUD_PROJECT)",
             None, "dagster"),
    Variable("PROMPTFORGE_REGISTRY", "the job registry: sqlite:///PATH or firestore://PROJECT[/DATABASE]", None,
             "all"),
    Variable("PROMPTFORGE_MODEL", "the default model of a job whose lines name none",
             None, "dagster"),
    Variable("PROMPTFORGE_API_BASE", "the provider endpoint (local default: simulator, the project's own)", None,
             "dagster"),
    Variable("PROMPTFORGE_ALLOW_MODELS", "comma-separated patterns of other providers' models lines may use", "",
             "dagster"),
    Variable("PROMPTFORGE_SIMULATOR_RPM", "the local simulator's account limit (requests per minute)", "3000",
             "dagster"),
    Variable("PROMPTFORGE_SMALL_JOB_PROMPTS", "jobs under this many prompts share the small-job pool", "1000",
             "dagster"),
    Variable("PROMPTFORGE_CHECKPOINT_INTERVAL", "seconds between checkpoint commits", "30", "dagster"),
    Variable("PROMPTFORGE_LEASE_TTL", "seconds a job's lease lives unrenewed (local 20, GKE 120)", None, "dagster"),
    Variable("PROMPTFORGE_HEARTBEAT", "seconds between lease renewals (local 2, GKE 10)", None, "dagster"),
    Variable("PROMPTFORGE_MAX_RETRIES", "Dagster run retries per job", "3", "dagster"),
    Variable("PROMPTFORGE_IMAGE", "the code location image step pods run (GKE)", None, "dagster"),
    Variable("PROMPTFORGE_NAMESPACE", "the Kubernetes namespace of step pods (GKE)", "dagster", "dagster"),
    Variable("PROMPTFORGE_SERVICE_ACCOUNT", "the Kubernetes service account of step pods (GKE)",
             "promptforge-runner", "dagster"),
    Variable("PROMPTFORGE_ENV_SECRETS", "comma-separated Kubernetes secrets step pods get as environment (GKE)",
             "promptforge-provider-keys", "dagster"),
    Variable("PROMPTFORGE_PROMETHEUS_PORT", "serve a local Prometheus scrape endpoint on this port", None, "all"),
    Variable("PROMPTFORGE_PROMETHEUS_HOST", "the address the Prometheus endpoint binds", "127.0.0.1", "all"),
    Variable("RECEIVER_AUDIENCE", "the OIDC audience Eventarc's tokens must carry (receiver)", "", "receiver"),
    Variable("RECEIVER_ALLOWED_EMAILS", "comma-separated service accounts allowed to sign events (receiver)", "",
             "receiver"),
    Variable("RECEIVER_INSECURE", "1: accept unverified events (local use only)", "", "receiver"),
    Variable("PORT", "the receiver's port (Cloud Run sets it)", "8080", "receiver"),
    Variable("K_SERVICE", "set by Cloud Run: the receiver listens on all interfaces", None, "receiver"),
)
BY_NAME = {v.name: v for v in VARIABLES}

RETIRED = {
    "PROMPTFORGE_BUCKET": ("it meant the input bucket to the receiver and the output bucket to Dagster",
                           "set PROMPTFORGE_OUTPUT_BUCKET (where results go) and PROMPTFORGE_INPUT_BUCKET "
                           "(where uploads arrive)"),
}


def check_retired(env: Mapping[str, str]) -> None:
    """One clear line for a retired name that is still set."""
    for name, (meant, instead) in RETIRED.items():
        if env.get(name):
            raise ValueError(f"{name} is no longer read ({meant}): {instead}")


def get(env: Mapping[str, str], name: str) -> str | None:
    """The value of a declared variable, or its default; an empty value counts as unset."""
    check_retired(env)
    var = BY_NAME[name]  # KeyError: every variable read is declared above
    value = env.get(name)
    return value if value not in (None, "") else var.default


def get_float(env: Mapping[str, str], name: str, default: float | None = None) -> float | None:
    """A number, or one line naming the variable when it is not one.

    >>> get_float({"PROMPTFORGE_LEASE_TTL": "abc"}, "PROMPTFORGE_LEASE_TTL")
    Traceback (most recent call last):
    ...
    ValueError: PROMPTFORGE_LEASE_TTL='abc' is not a number
    """
    raw = get(env, name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


def home(env: Mapping[str, str] = os.environ) -> str:
    """Local mode's folder."""
    value = get(env, "PROMPTFORGE_HOME")
    return os.path.expanduser(value) if value else os.path.join(os.path.expanduser("~"), ".promptforge")


def read(env: Mapping[str, str] = os.environ) -> dict[str, str | None]:
    """Every declared variable's value (or default), read once."""
    check_retired(env)
    return {v.name: get(env, v.name) for v in VARIABLES}
