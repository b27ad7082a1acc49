# stackmon exporter image: docker build -t stackmon . (compose.yaml builds it as well).
# Two stages: the first builds the wheel, the second installs that wheel with its runtime
# dependencies only, the same install tests/deploy/test_install.py runs and checks.
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11.14-slim-bookworm

LABEL org.opencontainers.image.title="stackmon" \
      org.opencontainers.image.description="One Prometheus exporter for a web platform: host, PostgreSQL, Redis, Celery and HTTP services" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A fixed, unprivileged uid so volume and secret permissions are predictable.
RUN groupadd --system --gid 10001 stackmon \
    && useradd --system --uid 10001 --gid stackmon --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin stackmon

COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/stackmon-*.whl \
    && rm -rf /wheels

USER 10001:10001
EXPOSE 9860

# `stackmon healthcheck` asks /-/healthy where the running exporter listens: it reads the
# exporter's own flags, STACKMON_* variables and config file (a health check process gets
# the container's environment but not its command), and its TLS from --web.config.file.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["stackmon", "healthcheck"]

ENTRYPOINT ["stackmon"]
