#!/usr/bin/env bash
# Create the secret files compose.yaml reads (./secrets/*, git-ignored); keeps existing ones.
#   bash scripts/make-secrets.sh
# Each missing file gets a random password, which suits the demo profile. To watch your own
# servers, write their passwords into the files instead (one line, no quotes).
# The directory is private (0700); the files are 0644 so the containers' unprivileged users
# can read them through the bind mount that compose makes for a file secret.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 077
mkdir -p secrets
chmod 700 secrets

random_password() {
    python3 -c 'import secrets; print(secrets.token_urlsafe(24))'
}

for name in postgres_password redis_password grafana_admin_password; do
    if [ ! -e "secrets/$name" ]; then
        random_password > "secrets/$name"
        echo "make-secrets: created secrets/$name"
    fi
done
# The demo broker is the demo Redis: same password unless you set another one.
if [ ! -e secrets/broker_password ]; then
    cp secrets/redis_password secrets/broker_password
    echo "make-secrets: created secrets/broker_password (same as redis_password)"
fi
chmod 644 secrets/*_password
echo "make-secrets: Grafana login is admin / the password in secrets/grafana_admin_password"
