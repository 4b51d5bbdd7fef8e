"""Every PROMPTFORGE_*/RECEIVER_* variable the code reads is declared once in settings.py
(with its one meaning), and a retired name fails with one line naming its replacement."""

import re
from pathlib import Path

import pytest

from promptforge_dagster import settings
from promptforge_dagster.deployment import deployment_from_env

PACKAGE = Path(__file__).resolve().parents[1] / "promptforge_dagster"


def test_every_variable_named_in_the_code_is_declared():
    named = set()
    for path in PACKAGE.rglob("*.py"):
        named |= set(re.findall(r"\b((?:PROMPTFORGE|RECEIVER)_[A-Z_]+)\b", path.read_text()))
    undeclared = named - set(settings.BY_NAME) - set(settings.RETIRED)
    assert not undeclared, f"read but not declared in settings.py: {sorted(undeclared)}"


def test_no_component_reads_the_environment_for_its_own_settings_directly():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "settings.py":
            continue
        for line in path.read_text().splitlines():
            if re.search(r"(environ|env)(\.get\(|\[)[\"'](PROMPTFORGE|RECEIVER)_", line):
                offenders.append(f"{path.name}: {line.strip()}")
    assert not offenders, offenders


def test_a_retired_variable_is_one_clear_line():
    with pytest.raises(ValueError, match="PROMPTFORGE_BUCKET is no longer read .*PROMPTFORGE_OUTPUT_BUCKET"):
        deployment_from_env({"PROMPTFORGE_DEPLOYMENT": "gke", "PROMPTFORGE_BUCKET": "b", "PROMPTFORGE_PROJECT": "p"})


def test_input_and_output_buckets_each_mean_one_thing():
    d = deployment_from_env({"PROMPTFORGE_DEPLOYMENT": "gke", "PROMPTFORGE_OUTPUT_BUCKET": "out-b",
                             "PROMPTFORGE_INPUT_BUCKET": "in-b", "PROMPTFORGE_PROJECT": "p"})
    assert d.bucket_root == "gs://out-b" and d.input_root == "gs://in-b"
    with pytest.raises(ValueError, match="PROMPTFORGE_LEASE_TTL='soon' is not a number"):
        deployment_from_env({"PROMPTFORGE_LEASE_TTL": "soon"})
