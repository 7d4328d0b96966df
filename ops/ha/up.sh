#!/usr/bin/env bash
# VaultMesh on replicated PostgreSQL, on one machine, in the foreground like ops/up.sh
# (docs/operations.md, "Replicated PostgreSQL"); Ctrl-C stops it. Running it again reuses
# the state.
#   A pg_auto_failover formation (ops/lib/ha.sh: a monitor, a primary and two synchronous
#   standbys, `ANY 1`), migrated; then portal(s), guardian(s) and the oracle, each given the
#   multi-host URL of the three nodes with target_session_attrs=read-write, so they follow
#   a failover without a restart; writes are `replicated` (a 201 once a standby has the
#   receipt too). Installs pg_auto_failover (apt-get) if needed.
#   The guardians share one journal file (the sink locks it), as replicas on shared storage
#   would.
#   $STATE/ha.env holds the URLs (VAULTMESH_PORTAL_URLS and VAULTMESH_GUARDIAN_URLS list
#   every replica), API keys, VAULTMESH_GUARDIAN_VKEY and VAULTMESH_HA_CTL (ops/ha/ctl.sh
#   with this formation's directory and port) and is written last: its presence means up.
# Ports: formation VAULTMESH_HA_BASE_PORT (6000: monitor; 6001-6003: nodes); services from
#   VAULTMESH_HA_SERVICE_PORT (8280): portal i at +i, guardian i at +10+i, oracle at +20, and
#   each one's metrics 100 above.
# Also: VAULTMESH_HA_STATE_DIR (.vaultmesh/ha), VAULTMESH_HA_PORTALS (1), VAULTMESH_HA_GUARDIANS
#   (1), VAULTMESH_DURABILITY (replicated), VAULTMESH_BIN_DIR (use these binaries instead of
#   building release ones), VAULTMESH_INTEGRATE_INTERVAL_MS and VAULTMESH_EPOCH_INTERVAL_SECS
#   (passed to the guardians).
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh
. ops/lib/ha.sh

STATE=${VAULTMESH_HA_STATE_DIR:-.vaultmesh/ha}
BASE=${VAULTMESH_HA_BASE_PORT:-6000}
SERVICE=${VAULTMESH_HA_SERVICE_PORT:-8280}
PORTALS=${VAULTMESH_HA_PORTALS:-1}
GUARDIANS=${VAULTMESH_HA_GUARDIANS:-1}
MESH_ID=${VAULTMESH_MESH_ID:-vaultmesh-ha}
for n in "$BASE" "$SERVICE" "$PORTALS" "$GUARDIANS"; do
    case $n in *[!0-9]*|'') vm_log "ports and counts are numbers"; exit 2 ;; esac
done
[ "$PORTALS" -ge 1 ] && [ "$PORTALS" -le 9 ] && [ "$GUARDIANS" -ge 1 ] && [ "$GUARDIANS" -le 9 ] \
    || { vm_log "VAULTMESH_HA_PORTALS and VAULTMESH_HA_GUARDIANS: 1 to 9"; exit 2; }

vm_ensure_packages
vm_ensure_redis
vm_ha_ensure_packages
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
rm -f "$STATE/ha.env"
vm_bin

vm_foreground
trap 'vm_stop_all; vm_ha_stop "$STATE/pg"; exit 0' INT TERM
trap 'vm_stop_all; vm_ha_stop "$STATE/pg"' EXIT
vm_ha_up "$STATE/pg" "$BASE"
OWNER_URL=$(vm_ha_owner_url "$BASE")
"$BIN/vaultmesh" migrate --database-url "$OWNER_URL"
VKEY=$("$BIN/vaultmesh" keygen --name "$MESH_ID/guardian" --out "$STATE/guardian.key" --vkey-out "$STATE/guardian.vkey")
vm_cache_secret "$STATE/cache.secret"
if [ -f "$STATE/keys.env" ]; then . "$STATE/keys.env"; fi
if vm_ensure_api_keys "$BIN" "$OWNER_URL" ha; then
    (
        umask 077
        cat > "$STATE/keys.env" <<ENV
VAULTMESH_ADMIN_KEY_ID=$VAULTMESH_ADMIN_KEY_ID VAULTMESH_ADMIN_KEY=$VAULTMESH_ADMIN_KEY
VAULTMESH_WRITER_KEY_ID=$VAULTMESH_WRITER_KEY_ID VAULTMESH_WRITER_KEY=$VAULTMESH_WRITER_KEY
VAULTMESH_READER_KEY_ID=$VAULTMESH_READER_KEY_ID VAULTMESH_READER_KEY=$VAULTMESH_READER_KEY
ENV
    )
fi

export VAULTMESH_REDIS_URL=redis://127.0.0.1:$VM_REDIS_PORT
export VAULTMESH_CACHE_SECRET_FILE=$STATE/cache.secret
export VAULTMESH_MESH_ID=$MESH_ID
export VAULTMESH_DURABILITY=${VAULTMESH_DURABILITY:-replicated}
unset VAULTMESH_API_ADDR VAULTMESH_METRICS_ADDR VAULTMESH_DATABASE_URL VAULTMESH_MIGRATE_DATABASE_URL
GUARDIAN_TUNING=()
[ -n "${VAULTMESH_INTEGRATE_INTERVAL_MS:-}" ] && GUARDIAN_TUNING+=(--integrate-interval-ms "$VAULTMESH_INTEGRATE_INTERVAL_MS")
[ -n "${VAULTMESH_EPOCH_INTERVAL_SECS:-}" ] && GUARDIAN_TUNING+=(--epoch-interval-secs "$VAULTMESH_EPOCH_INTERVAL_SECS")

PORTAL_URLS=() GUARDIAN_URLS=() PORTS=()
for i in $(seq 0 $((PORTALS - 1))); do
    port=$((SERVICE + i))
    setsid "$BIN/vaultmesh-portal" --database-url "$(vm_ha_role_url "$BASE" portal)" \
        --api-addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$((port + 100))" \
        --node-instance "ha-$i" --guardian-vkey-file "$STATE/guardian.vkey" & VM_PIDS+=($!)
    PORTAL_URLS+=("http://127.0.0.1:$port") PORTS+=("$port")
done
for i in $(seq 0 $((GUARDIANS - 1))); do
    port=$((SERVICE + 10 + i))
    setsid "$BIN/vaultmesh-guardian" --database-url "$(vm_ha_role_url "$BASE" guardian)" \
        --api-addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$((port + 100))" \
        --node-instance "ha-$i" --signing-key-file "$STATE/guardian.key" \
        --journal-path "$STATE/proofchain.jsonl" "${GUARDIAN_TUNING[@]}" & VM_PIDS+=($!)
    GUARDIAN_URLS+=("http://127.0.0.1:$port") PORTS+=("$port")
done
port=$((SERVICE + 20))
setsid "$BIN/vaultmesh-oracle" --database-url "$(vm_ha_role_url "$BASE" oracle)" \
    --api-addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$((port + 100))" \
    --node-instance ha-0 --corpus-dir ops/corpus & VM_PIDS+=($!)
PORTS+=("$port")
for port in "${PORTS[@]}"; do
    vm_wait "service on :$port" curl -sf "http://127.0.0.1:$port/v1/health"
done
"$BIN/vaultmesh" constitution adopt --if-newer --portal-url "${PORTAL_URLS[0]}" \
    --api-key "$VAULTMESH_ADMIN_KEY" ops/governance/constitution.json >/dev/null
(
    umask 077
    cat > "$STATE/ha.env.new" <<ENV
# Written by ops/ha/up.sh. Source it: . $STATE/ha.env
export VAULTMESH_PORTAL_URL=${PORTAL_URLS[0]}
export VAULTMESH_PORTAL_URLS="${PORTAL_URLS[*]}"
export VAULTMESH_GUARDIAN_URL=${GUARDIAN_URLS[0]}
export VAULTMESH_GUARDIAN_URLS="${GUARDIAN_URLS[*]}"
export VAULTMESH_ORACLE_URL=http://127.0.0.1:$((SERVICE + 20))
export VAULTMESH_ADMIN_KEY=$VAULTMESH_ADMIN_KEY
export VAULTMESH_WRITER_KEY=$VAULTMESH_WRITER_KEY
export VAULTMESH_READER_KEY=$VAULTMESH_READER_KEY
export VAULTMESH_GUARDIAN_VKEY=$VKEY
export VAULTMESH_HA_OWNER_URL=$OWNER_URL
export VAULTMESH_HA_CTL="bash $PWD/ops/ha/ctl.sh $STATE/pg $BASE"
ENV
    mv "$STATE/ha.env.new" "$STATE/ha.env"
)
vm_log "up: portal(s) ${PORTAL_URLS[*]}, guardian(s) ${GUARDIAN_URLS[*]}, oracle :$((SERVICE + 20)); formation: $(vm_ha_primary "$BASE") primary (monitor :$BASE)"
vm_log "credentials: . $STATE/ha.env    formation: \$VAULTMESH_HA_CTL state    stop: Ctrl-C"
wait -n "${VM_PIDS[@]}" || true
vm_log "a service exited; stopping the rest"
exit 1
