#!/usr/bin/env bash
# Three VaultMesh meshes on one machine witnessing one another all-to-all (docs/federation.md),
# in the foreground like ops/up.sh; Ctrl-C stops them. Running it again reuses the state.
#   Each mesh (mesh-a, mesh-b, mesh-c) has its own database, guardian key, witness key, cache
#   secret, API keys, portal and guardian; each guardian witnesses the two others (their
#   guardian vkeys and portals) and asks the two others to cosign (their witness vkeys and
#   guardians). For each mesh an env file $STATE/<mesh>.env holds its URLs, metrics URLs, API
#   keys, VAULTMESH_GUARDIAN_VKEY and VAULTMESH_WITNESS_VKEY: `. .vaultmesh/federation/mesh-a.env`.
# Ports: mesh i (0, 1, 2) uses BASE+10i (portal), BASE+10i+1 (guardian), BASE+10i+5 (portal
# metrics) and BASE+10i+6 (guardian metrics); VAULTMESH_FEDERATION_BASE_PORT (8180).
# Also: VAULTMESH_FEDERATION_STATE_DIR (.vaultmesh/federation), VAULTMESH_FEDERATION_DATABASE_PREFIX
# (vaultmesh_fed: databases <prefix>_a, _b, _c, created if missing), VAULTMESH_BIN_DIR (use
# these binaries instead of building release ones), VAULTMESH_INTEGRATE_INTERVAL_MS and
# VAULTMESH_REMOTE_POLL_INTERVAL_MS (passed to the guardians).
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh

STATE=${VAULTMESH_FEDERATION_STATE_DIR:-.vaultmesh/federation}
PREFIX=${VAULTMESH_FEDERATION_DATABASE_PREFIX:-vaultmesh_fed}
BASE=${VAULTMESH_FEDERATION_BASE_PORT:-8180}
MESHES=(mesh-a mesh-b mesh-c)
case $PREFIX in *[!a-z0-9_]*|'') vm_log "VAULTMESH_FEDERATION_DATABASE_PREFIX: lower-case letters, digits and _ only"; exit 2 ;; esac
case $BASE in *[!0-9]*|'') vm_log "VAULTMESH_FEDERATION_BASE_PORT: a number"; exit 2 ;; esac

vm_ensure_stack
vm_bin

port() { echo $((BASE + 10 * $1 + $2)); }   # port MESH_INDEX OFFSET
database() { echo "${PREFIX}_${1#mesh-}"; }

# Keys, databases and API keys of every mesh first: each guardian needs the others' vkeys.
declare -A VKEY WVKEY ADMIN
for i in 0 1 2; do
    mesh=${MESHES[$i]} dir=$STATE/${MESHES[$i]} db=$(database "${MESHES[$i]}")
    mkdir -p "$dir"
    if [ -z "$(vm_psql_super -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
        vm_psql_super -d postgres -qc "CREATE DATABASE $db OWNER vaultmesh"
    fi
    "$BIN/vaultmesh" migrate --database-url "$(vm_owner_url "$db")"
    VKEY[$mesh]=$("$BIN/vaultmesh" keygen --name "$mesh/guardian" --out "$dir/guardian.key" --vkey-out "$dir/guardian.vkey")
    WVKEY[$mesh]=$("$BIN/vaultmesh" keygen --witness --name "$mesh/witness" --out "$dir/witness.key" --vkey-out "$dir/witness.vkey")
    vm_cache_secret "$dir/cache.secret"
    owner=$(vm_owner_url "$db")
    unset VAULTMESH_ADMIN_KEY_ID VAULTMESH_WRITER_KEY_ID VAULTMESH_READER_KEY_ID
    if [ -f "$STATE/$mesh.env" ]; then . "$STATE/$mesh.env"; fi
    vm_ensure_api_keys "$BIN" "$owner" "$mesh" || true
    ADMIN[$mesh]=$VAULTMESH_ADMIN_KEY
    (
        umask 077
        cat > "$STATE/$mesh.env" <<ENV
# Written by ops/federation/up.sh for $mesh. Source it: . $STATE/$mesh.env
export VAULTMESH_MESH_ID=$mesh
export VAULTMESH_PORTAL_URL=http://127.0.0.1:$(port "$i" 0)
export VAULTMESH_GUARDIAN_URL=http://127.0.0.1:$(port "$i" 1)
export VAULTMESH_PORTAL_METRICS_URL=http://127.0.0.1:$(port "$i" 5)/metrics
export VAULTMESH_GUARDIAN_METRICS_URL=http://127.0.0.1:$(port "$i" 6)/metrics
export VAULTMESH_ADMIN_KEY=$VAULTMESH_ADMIN_KEY
export VAULTMESH_WRITER_KEY=$VAULTMESH_WRITER_KEY
export VAULTMESH_READER_KEY=$VAULTMESH_READER_KEY
export VAULTMESH_ADMIN_KEY_ID=$VAULTMESH_ADMIN_KEY_ID
export VAULTMESH_WRITER_KEY_ID=$VAULTMESH_WRITER_KEY_ID
export VAULTMESH_READER_KEY_ID=$VAULTMESH_READER_KEY_ID
export VAULTMESH_GUARDIAN_VKEY=${VKEY[$mesh]}
export VAULTMESH_WITNESS_VKEY=${WVKEY[$mesh]}
ENV
    )
done

export VAULTMESH_REDIS_URL=redis://127.0.0.1:$VM_REDIS_PORT
unset VAULTMESH_API_ADDR VAULTMESH_METRICS_ADDR VAULTMESH_MESH_ID VAULTMESH_REMOTE_MESHES VAULTMESH_WITNESSES

vm_foreground

for i in 0 1 2; do
    mesh=${MESHES[$i]} dir=$STATE/${MESHES[$i]} db=$(database "${MESHES[$i]}")
    federation=()
    for j in 0 1 2; do
        [ "$j" = "$i" ] && continue
        other=${MESHES[$j]}
        federation+=(--remote-mesh "$other,${VKEY[$other]},http://127.0.0.1:$(port "$j" 0)")
        federation+=(--witness "$other,${WVKEY[$other]},http://127.0.0.1:$(port "$j" 1)")
    done
    VAULTMESH_CACHE_SECRET_FILE=$dir/cache.secret setsid "$BIN/vaultmesh-portal" --mesh-id "$mesh" \
        --database-url "$(vm_role_url portal "$db")" --api-addr "127.0.0.1:$(port "$i" 0)" \
        --metrics-addr "127.0.0.1:$(port "$i" 5)" --guardian-vkey-file "$dir/guardian.vkey" & VM_PIDS+=($!)
    VAULTMESH_CACHE_SECRET_FILE=$dir/cache.secret setsid "$BIN/vaultmesh-guardian" --mesh-id "$mesh" \
        --database-url "$(vm_role_url guardian "$db")" --api-addr "127.0.0.1:$(port "$i" 1)" \
        --metrics-addr "127.0.0.1:$(port "$i" 6)" --signing-key-file "$dir/guardian.key" \
        --journal-path "$dir/proofchain.jsonl" --witness-key-file "$dir/witness.key" \
        "${federation[@]}" & VM_PIDS+=($!)
done
for i in 0 1 2; do
    for offset in 0 1; do
        vm_wait "${MESHES[$i]} on :$(port "$i" "$offset")" curl -sf "http://127.0.0.1:$(port "$i" "$offset")/v1/health"
    done
done
for i in 0 1 2; do
    "$BIN/vaultmesh" constitution adopt --if-newer --portal-url "http://127.0.0.1:$(port "$i" 0)" \
        --api-key "${ADMIN[${MESHES[$i]}]}" ops/governance/constitution.json >/dev/null
done
vm_log "up: mesh-a portal :$(port 0 0) guardian :$(port 0 1); mesh-b :$(port 1 0)/:$(port 1 1); mesh-c :$(port 2 0)/:$(port 2 1)"
vm_log "credentials: . $STATE/mesh-a.env (mesh-b.env, mesh-c.env)    stop: Ctrl-C"
wait -n "${VM_PIDS[@]}" || true
vm_log "a service exited; stopping the rest"
exit 1
