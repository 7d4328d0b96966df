#!/usr/bin/env bash
# Ingest at `replicated` vs `local` durability on the same pg_auto_failover formation
# (ops/lib/ha.sh: a primary and two synchronous standbys on this machine), in the same run:
# two portals on the formation's multi-host URL, one per level, loaded alternately with
# `vaultmesh bench ingest` (single receipts, 64 clients; batches of 100, 16 clients).
# Prints medians and the replicated/local ratio (goal >= 0.7x).
# Usage: ops/bench/replicated.sh [RUNS]   (env: SECS per run, default 8;
#   VAULTMESH_BIN_DIR: use these binaries instead of a release build; VM_HA_BENCH_BASE: 6100)
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh
. ops/lib/ha.sh
RUNS=${1:-3}
SECS=${SECS:-8}
BASE=${VM_HA_BENCH_BASE:-6100}
PORT=18180
vm_ha_bench_formation "$BASE"
TOKEN=$("$BIN/vaultmesh" keys create --database-url "$(vm_ha_owner_url "$BASE")" --role writer --label bench --format token)
for level in local replicated; do
    port=$PORT; [ "$level" = replicated ] && port=$((PORT + 2))
    "$BIN/vaultmesh-portal" --rate-limit-per-sec 0 --api-addr 127.0.0.1:$port --metrics-addr 127.0.0.1:$((port + 1)) \
        --database-url "$(vm_ha_role_url "$BASE" portal)" --durability "$level" --db-pool-size 16 \
        --mesh-node false --log warn 2>"$DIR/portal-$level.log" &
    PIDS+=($!)
    vm_wait "portal ($level)" curl -sf "http://127.0.0.1:$port/v1/ready"
done

echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"
echo "# formation: $(vm_ha_state "$BASE" | tr '\n' ';')"
load() { "$BIN/vaultmesh" bench ingest --addr "127.0.0.1:$1" --token "$TOKEN" --seconds "$SECS" "${@:2}"; }
for r in $(seq 1 "$RUNS"); do
    for level in local replicated; do
        port=$PORT; [ "$level" = replicated ] && port=$((PORT + 2))
        load "$port" --clients 64 --scrolls 1 | tee -a "$DIR/single-$level.jsonl"
        load "$port" --clients 16 --scrolls 1 --batch 100 | tee -a "$DIR/batch-$level.jsonl"
    done
done
python3 - "$DIR" <<'PY'
import json, statistics, sys, pathlib
out = pathlib.Path(sys.argv[1])
def med(name, key): return statistics.median(json.loads(l)[key] for l in (out / f"{name}.jsonl").read_text().splitlines())
for shape, label in [("single", "single receipt, 64 clients"), ("batch", "batch of 100, 16 clients")]:
    loc, rep = med(f"{shape}-local", "receipts_per_s"), med(f"{shape}-replicated", "receipts_per_s")
    print(f"{label:28s} local {loc:9.0f} receipts/s (p99 {med(f'{shape}-local', 'p99_ms'):.1f} ms), "
          f"replicated {rep:9.0f} receipts/s (p99 {med(f'{shape}-replicated', 'p99_ms'):.1f} ms): {rep / loc:.2f}x (goal >= 0.7x)")
PY
