"""The image builds from the pinned lock (uv sync --frozen, no dev dependencies) and runs
as a non-root user."""

from tests.conftest import ROOT


def test_dockerfile_uses_the_lock_and_a_non_root_user():
    text = (ROOT / "Dockerfile").read_text()
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    assert any("uv sync --frozen --no-dev" in l for l in lines)
    assert "COPY pyproject.toml uv.lock README.md ./" in lines
    users = [l for l in lines if l.startswith("USER ")]
    assert users and users[-1] not in ("USER root", "USER 0")
    assert lines[-1].startswith("CMD") and "promptforge_dagster.definitions" in lines[-1]
