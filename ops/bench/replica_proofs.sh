#!/usr/bin/env bash
# Proof serving from a read replica vs from the primary, same run, same formation
# (ops/lib/ha.sh: a primary and two synchronous standbys on this machine): fills a scroll with
# RECEIPTS receipts and a signed checkpoint, waits for a standby to replay it, then loads two
# release portals alternately (no Redis, no in-process tile memo, so every proof reads its
# tiles from Postgres): one reading the primary, one with --read-database-url on the standby;
# /v1/health of the first is the baseline. Prints medians and where the proofs were read.
# Usage: ops/bench/replica_proofs.sh [RUNS]   (env: RECEIPTS default 200000, SECS per run
#   default 8; VAULTMESH_BIN_DIR: use these binaries instead of a release build;
#   VM_HA_BENCH_BASE: 6100)
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh
. ops/lib/ha.sh
RUNS=${1:-3}
SECS=${SECS:-8}
RECEIPTS=${RECEIPTS:-200000}
BASE=${VM_HA_BENCH_BASE:-6100}
PORT=18190
SCROLL=bench-proofs
vm_ha_bench_formation "$BASE"
OWNER=$(vm_ha_owner_url "$BASE")
"$BIN/vaultmesh" keygen --out "$DIR/guardian.key" --vkey-out "$DIR/guardian.vkey" >/dev/null
echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"
"$BIN/vaultmesh" bench seed --database-url "$OWNER" --scroll $SCROLL --receipts "$RECEIPTS" \
    --signing-key "$DIR/guardian.key" >/dev/null
standby=$(vm_ha_state "$BASE" | awk '$2 == "secondary" { print $1; exit }')
standby_port=$(vm_ha_port "$BASE" "$standby")
replayed() {
    [ "$(vm_ha_psql "$standby_port" vaultmesh "SELECT count(*) FROM checkpoints c \
        JOIN scrolls s ON s.id = c.scroll_id WHERE s.name = '$SCROLL'")" -ge 1 ]
}
vm_wait "the standby replaying the checkpoint" replayed
replica_url="postgres://vaultmesh_portal:$VAULTMESH_PORTAL_PASSWORD@127.0.0.1:$standby_port/vaultmesh"
for which in primary replica; do
    port=$PORT; extra=()
    if [ "$which" = replica ]; then port=$((PORT + 2)); extra=(--read-database-url "$replica_url"); fi
    "$BIN/vaultmesh-portal" --rate-limit-per-sec 0 --api-addr 127.0.0.1:$port --metrics-addr 127.0.0.1:$((port + 1)) \
        --database-url "$(vm_ha_role_url "$BASE" portal)" --guardian-vkey-file "$DIR/guardian.vkey" \
        --redis-url "" --proof-tile-memo 0 --mesh-node false --log warn "${extra[@]}" 2>"$DIR/portal-$which.log" &
    PIDS+=($!)
    vm_wait "portal ($which)" curl -sf "http://127.0.0.1:$port/v1/ready"
done
load() { "$BIN/vaultmesh" bench reads --addr "127.0.0.1:$1" --seconds "$SECS" --clients 64 "${@:2}"; }
INCL="/v1/scrolls/$SCROLL/proof/inclusion?seq={seq}"
for r in $(seq 1 "$RUNS"); do
    load $PORT --label health | tee -a "$DIR/health.jsonl"
    load $PORT --label primary --path "$INCL" --seq-below "$RECEIPTS" | tee -a "$DIR/primary.jsonl"
    load $((PORT + 2)) --label replica --path "$INCL" --seq-below "$RECEIPTS" | tee -a "$DIR/replica.jsonl"
done
curl -sf "http://127.0.0.1:$((PORT + 3))/metrics" | grep '^vaultmesh_replica_reads_total' || true
python3 - "$DIR" <<'PY'
import json, statistics, sys, pathlib
out = pathlib.Path(sys.argv[1])
def med(name, key): return statistics.median(json.loads(l)[key] for l in (out / f"{name}.jsonl").read_text().splitlines())
h = med("health", "requests_per_s")
print(f"health, 64 clients:                 {h:9.0f} req/s")
for name, label in [("primary", "inclusion from the primary"), ("replica", "inclusion from the replica")]:
    r = med(name, "requests_per_s")
    print(f"{label + ', 64 clients:':35s}{r:9.0f} req/s = {r / h:.2f}x health, p50 {med(name, 'p50_ms'):.2f} ms, p99 {med(name, 'p99_ms'):.2f} ms")
PY
