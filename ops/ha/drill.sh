#!/usr/bin/env bash
# The failover drill (docs/operations.md, "Replicated PostgreSQL"; figures in
# docs/benchmarks.md): a fresh ops/ha/up.sh stack with two portals and two guardians, 16
# clients writing through the portals, and then, REPETITIONS times, a formation member killed
# with SIGKILL (keeper and postmaster) and started again: the primary (pg_auto_failover
# promotes a standby; the services follow without a restart), a standby, the primary again,
# the monitor, and so on. Afterwards every acknowledged receipt must be stored with its seq
# and leaf hash, the scroll gap-free, every checkpoint seen consistent with the last, `verify
# log` passing and the leader's verification pass clean. Prints the figures; exit status 0
# only if nothing was lost.
#   ops/ha/drill.sh [--repetitions N] [other `vaultmesh drill failover` options]
# Environment: as ops/up.sh/ops/ha/up.sh (VAULTMESH_BIN_DIR, VAULTMESH_HA_BASE_PORT,
# VAULTMESH_HA_SERVICE_PORT); VAULTMESH_HA_STATE_DIR (.vaultmesh/ha-drill, emptied first).
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh
. ops/lib/ha.sh

STATE=${VAULTMESH_HA_STATE_DIR:-.vaultmesh/ha-drill}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
if [ -d "$STATE/pg" ]; then vm_ha_stop "$STATE/pg"; fi
rm -rf "$STATE"
mkdir -p "$STATE"
if [ -z "${VAULTMESH_BIN_DIR:-}" ]; then
    vm_log "building release binaries"
    cargo build --release --locked --bins --quiet
    export VAULTMESH_BIN_DIR=$PWD/target/release
fi

VAULTMESH_HA_STATE_DIR=$STATE VAULTMESH_HA_PORTALS=2 VAULTMESH_HA_GUARDIANS=2 \
    VAULTMESH_INTEGRATE_INTERVAL_MS=${VAULTMESH_INTEGRATE_INTERVAL_MS:-200} \
    VAULTMESH_EPOCH_INTERVAL_SECS=${VAULTMESH_EPOCH_INTERVAL_SECS:-5} \
    setsid bash ops/ha/up.sh >"$STATE/up.log" 2>&1 &
UP=$!
stop_stack() {
    kill -TERM "$UP" 2>/dev/null || true
    wait "$UP" 2>/dev/null || true
}
trap stop_stack EXIT
trap 'stop_stack; exit 130' INT TERM
for _ in $(seq 1 600); do
    [ -f "$STATE/ha.env" ] && break
    kill -0 "$UP" 2>/dev/null || { vm_log "ops/ha/up.sh failed:"; tail -n 30 "$STATE/up.log" >&2; exit 1; }
    sleep 0.5
done
[ -f "$STATE/ha.env" ] || { vm_log "ops/ha/up.sh did not come up:"; tail -n 30 "$STATE/up.log" >&2; exit 1; }
. "$STATE/ha.env"
args=()
for url in $VAULTMESH_PORTAL_URLS; do args+=(--portal "$url"); done
for url in $VAULTMESH_GUARDIAN_URLS; do args+=(--guardian "$url"); done
status=0
"$VAULTMESH_BIN_DIR/vaultmesh" drill failover "${args[@]}" --ctl "$VAULTMESH_HA_CTL" \
    --verify-state "$STATE/verify-state.json" "$@" || status=$?
exit "$status"
