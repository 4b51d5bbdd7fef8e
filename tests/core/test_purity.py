"""Invariant: promptforge_dagster.core imports no Dagster, LiteLLM or Google client, directly or at all."""

import ast
import subprocess
import sys
from pathlib import Path

import promptforge_dagster.core as core

FORBIDDEN = ("dagster", "litellm", "google", "aiohttp")


def test_core_sources_import_no_framework_or_client():
    offenders = []
    for path in Path(core.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_importing_all_of_core_loads_none_of_them():
    code = (
        "import sys, pkgutil, importlib, promptforge_dagster.core as c\n"
        "for m in pkgutil.iter_modules(c.__path__): importlib.import_module('promptforge_dagster.core.' + m.name)\n"
        f"print([m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
