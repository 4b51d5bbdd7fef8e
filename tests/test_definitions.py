"""Invariant: the code location named in workspace.yaml loads as Dagster Definitions."""

import yaml

from tests.conftest import ROOT


def test_workspace_points_at_loadable_definitions():
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    module = workspace["load_from"][0]["python_module"]
    import importlib

    import dagster as dg

    defs = importlib.import_module(module).defs
    assert isinstance(defs, dg.Definitions)
