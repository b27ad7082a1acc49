#!/usr/bin/env bash
# Create ./.venv and install stackmon into it (with the test tools for "test").
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"

if ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
   || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "bootstrap: installing Python 3.11+ with venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 python3-venv python3-pip >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
spec="."
[ "$extra" = test ] && spec=".[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
