#!/usr/bin/env bash
# The README's test command: brings up PostgreSQL and Redis (installing them if needed),
# creates the roles, provides Python for the independent verifier and Prometheus (server and
# promtool) and Alertmanager for the monitoring tests and pg_auto_failover for the replicated
# PostgreSQL test, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/lib/stack.sh
. ops/lib/ha.sh
vm_ensure_stack
vm_ensure_python
vm_ensure_prometheus
vm_ensure_alertmanager
vm_ha_ensure_packages
export VAULTMESH_TEST_ADMIN_URL=${VAULTMESH_TEST_ADMIN_URL:-$(vm_owner_url postgres)}
export VAULTMESH_TEST_REDIS_URL=${VAULTMESH_TEST_REDIS_URL:-redis://127.0.0.1:$VM_REDIS_PORT}
exec cargo test --workspace --all-targets --locked "$@"
