#!/usr/bin/env bash
# The README's first command: brings up the whole dev stack in the foreground.
#   PostgreSQL + Redis (installed and started if needed), migrations, the guardian's signing
#   key, the cache secret, dev API keys in .vaultmesh/dev.env, then portal, guardian and oracle.
# Ctrl-C stops everything. Running it again reuses .vaultmesh/ (same keys, same data).
# Ports: VAULTMESH_{PORTAL,GUARDIAN,ORACLE}_PORT (8080/8081/8082) and
#        VAULTMESH_{PORTAL,GUARDIAN,ORACLE}_METRICS_PORT (9090/9091/9092).
# Also: VAULTMESH_STATE_DIR (.vaultmesh), VAULTMESH_DEV_DATABASE (vaultmesh; created if
# missing), VAULTMESH_BIN_DIR (use these binaries instead of building release ones).
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/lib/stack.sh

STATE=${VAULTMESH_STATE_DIR:-.vaultmesh}
DATABASE=${VAULTMESH_DEV_DATABASE:-vaultmesh}
MESH_ID=${VAULTMESH_MESH_ID:-vaultmesh-dev}
PORTAL_PORT=${VAULTMESH_PORTAL_PORT:-8080}
GUARDIAN_PORT=${VAULTMESH_GUARDIAN_PORT:-8081}
ORACLE_PORT=${VAULTMESH_ORACLE_PORT:-8082}
PORTAL_METRICS=${VAULTMESH_PORTAL_METRICS_PORT:-9090}
GUARDIAN_METRICS=${VAULTMESH_GUARDIAN_METRICS_PORT:-9091}
ORACLE_METRICS=${VAULTMESH_ORACLE_METRICS_PORT:-9092}

vm_ensure_stack
case $DATABASE in *[!a-z0-9_]*|'') vm_log "VAULTMESH_DEV_DATABASE: lower-case letters, digits and _ only"; exit 2 ;; esac
if [ -z "$(vm_psql_super -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" ]; then
    vm_psql_super -d postgres -qc "CREATE DATABASE $DATABASE OWNER vaultmesh"
fi
mkdir -p "$STATE"
vm_bin
OWNER_URL=$(vm_owner_url "$DATABASE")

"$BIN/vaultmesh" migrate --database-url "$OWNER_URL"
VKEY=$("$BIN/vaultmesh" keygen --name "$MESH_ID/guardian" --out "$STATE/guardian.key" --vkey-out "$STATE/guardian.vkey")
# The secret that authenticates every Redis cache entry (it never enters Redis): 32 random
# bytes as hex, made once and shared by the three services.
vm_cache_secret "$STATE/cache.secret"

if [ -f "$STATE/dev.env" ]; then . "$STATE/dev.env"; fi
vm_ensure_api_keys "$BIN" "$OWNER_URL" dev || true
(
    umask 077
    cat > "$STATE/dev.env" <<ENV
# Written by ops/up.sh for the dev stack. Source it: . .vaultmesh/dev.env
export VAULTMESH_PORTAL_URL=http://127.0.0.1:$PORTAL_PORT
export VAULTMESH_GUARDIAN_URL=http://127.0.0.1:$GUARDIAN_PORT
export VAULTMESH_ORACLE_URL=http://127.0.0.1:$ORACLE_PORT
export VAULTMESH_ADMIN_KEY=$VAULTMESH_ADMIN_KEY
export VAULTMESH_WRITER_KEY=$VAULTMESH_WRITER_KEY
export VAULTMESH_READER_KEY=$VAULTMESH_READER_KEY
export VAULTMESH_ADMIN_KEY_ID=$VAULTMESH_ADMIN_KEY_ID
export VAULTMESH_WRITER_KEY_ID=$VAULTMESH_WRITER_KEY_ID
export VAULTMESH_READER_KEY_ID=$VAULTMESH_READER_KEY_ID
export VAULTMESH_GUARDIAN_VKEY=$VKEY
ENV
)

export VAULTMESH_REDIS_URL=redis://127.0.0.1:$VM_REDIS_PORT
export VAULTMESH_CACHE_SECRET_FILE=$STATE/cache.secret
export VAULTMESH_MESH_ID=$MESH_ID
unset VAULTMESH_API_ADDR VAULTMESH_METRICS_ADDR

vm_foreground

setsid "$BIN/vaultmesh-portal" --database-url "$(vm_role_url portal "$DATABASE")" --api-addr "127.0.0.1:$PORTAL_PORT" --metrics-addr "0.0.0.0:$PORTAL_METRICS" --guardian-vkey-file "$STATE/guardian.vkey" & VM_PIDS+=($!)
setsid "$BIN/vaultmesh-guardian" --database-url "$(vm_role_url guardian "$DATABASE")" --api-addr "127.0.0.1:$GUARDIAN_PORT" --metrics-addr "0.0.0.0:$GUARDIAN_METRICS" \
    --signing-key-file "$STATE/guardian.key" --journal-path "$STATE/proofchain.jsonl" & VM_PIDS+=($!)
setsid "$BIN/vaultmesh-oracle" --database-url "$(vm_role_url oracle "$DATABASE")" --api-addr "127.0.0.1:$ORACLE_PORT" --metrics-addr "0.0.0.0:$ORACLE_METRICS" \
    --corpus-dir ops/corpus & VM_PIDS+=($!)

for port in "$PORTAL_PORT" "$GUARDIAN_PORT" "$ORACLE_PORT"; do
    vm_wait "service on :$port" curl -sf "http://127.0.0.1:$port/v1/health"
done
vm_log "adopting ops/governance/constitution.json (kept if the one in force is as new)"
"$BIN/vaultmesh" constitution adopt --if-newer --portal-url "http://127.0.0.1:$PORTAL_PORT" \
    --api-key "$VAULTMESH_ADMIN_KEY" ops/governance/constitution.json >/dev/null
vm_log "up: portal :$PORTAL_PORT (metrics :$PORTAL_METRICS), guardian :$GUARDIAN_PORT (:$GUARDIAN_METRICS), oracle :$ORACLE_PORT (:$ORACLE_METRICS)"
vm_log "credentials: . $STATE/dev.env    stop: Ctrl-C"
# Any service exiting stops the stack (the EXIT trap stops the rest).
wait -n "${VM_PIDS[@]}" || true
vm_log "a service exited; stopping the rest"
exit 1
