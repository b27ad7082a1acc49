#!/usr/bin/env bash
# Install everything the tests need, start the test services, run the whole suite.
#   bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh test
bash scripts/test-services.sh
.venv/bin/ruff check exporter tests scripts bench grafana
.venv/bin/mypy
.venv/bin/mypy grafana
exec .venv/bin/python -m pytest "$@"
