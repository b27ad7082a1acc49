#!/usr/bin/env bash
# Install everything the tests need, run the static checks and the whole suite. The tests
# start their own PostgreSQL, Redis and RabbitMQ; the machine's own are left alone.
#   bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh test
bash scripts/test-services.sh
.venv/bin/ruff check exporter tests scripts bench grafana demo
.venv/bin/mypy
.venv/bin/mypy grafana
exec .venv/bin/python -m pytest "$@"
