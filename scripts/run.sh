#!/usr/bin/env bash
# Install stackmon into ./.venv and run it (host metrics on :9860 with no config).
#   bash scripts/run.sh [stackmon flags]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/stackmon "$@"
