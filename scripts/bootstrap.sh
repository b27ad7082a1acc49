#!/usr/bin/env bash
# Create ./.venv and install stackmon into it (with the test tools for "test").
# The install is editable, so code changes need no reinstall; pip runs again only when
# pyproject.toml (dependencies, entry points) or the venv's Python changed since the last
# successful install (a stamp per extra in .venv/).
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
name=runtime
if [ "$extra" = test ]; then
    spec=".[test]"
    name=test
fi
stamp=".venv/.stackmon-installed-$name"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $(.venv/bin/python -c 'import sys; print(sys.version)' | head -1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/stackmon ]; then
    exit 0
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
echo "$want" > "$stamp"
