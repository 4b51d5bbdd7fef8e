# The PromptForge code location (and the receiver): uv, the pinned lock, non-root.
#   docker build -t REGION-docker.pkg.dev/PROJECT/promptforge/promptforge:TAG .
FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.9.5 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-group infra --no-install-project
COPY promptforge_dagster ./promptforge_dagster
COPY workspace.yaml ./
RUN uv sync --frozen --no-dev --no-group infra

FROM python:3.11-slim
RUN groupadd --system --gid 10001 promptforge \
 && useradd --system --uid 10001 --gid promptforge --home-dir /app --shell /usr/sbin/nologin promptforge
WORKDIR /app
COPY --from=build --chown=promptforge:promptforge /app /app
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    DAGSTER_HOME=/tmp/dagster_home
USER 10001
EXPOSE 3030 8080
# Dagster's chart runs `dagster api grpc -m promptforge_dagster.definitions`; Cloud Run runs the receiver.
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "3030", "-m", "promptforge_dagster.definitions"]
