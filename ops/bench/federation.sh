#!/usr/bin/env bash
# Federation benchmarks (docs/benchmarks.md, "Federation"):
#  1. add-checkpoint requests/s one witness (a release guardian) sustains — note signature,
#     consistency proof, atomic persist, cosignature — with CLIENTS logs submitting at once,
#     against the same run's baseline of one Ed25519 note verification + one Postgres round
#     trip per operation (`vaultmesh bench witness`).
#  2. submit → a checkpoint holding K=2 cosignatures: ops/federation/up.sh's three meshes,
#     RATE receipts/s in all (RATE/3 into each mesh at once), latency p50/p99 per mesh
#     (`vaultmesh bench inclusion --witnessed 2`).
# Usage: ops/bench/federation.sh [RUNS]  (env: SECS 8, CLIENTS 16, RATE 5000, LOAD_SECS 20)
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh
. ops/lib/bench.sh
RUNS=${1:-3}
SECS=${SECS:-8}
CLIENTS=${CLIENTS:-16}
RATE=${RATE:-5000}
LOAD_SECS=${LOAD_SECS:-20}
DB=vaultmesh_bench_witness
PORT=18290
FED_BASE=18300
FED_PREFIX=vaultmesh_bench_fed

vm_bench_prepare "$DB"
OUT=$(mktemp -d)
echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"
"$BIN/vaultmesh" keygen --name bench-remote/guardian --out "$OUT/remote.key" --vkey-out "$OUT/remote.vkey" >/dev/null
"$BIN/vaultmesh" keygen --out "$OUT/guardian.key" >/dev/null
"$BIN/vaultmesh" keygen --witness --name bench/witness --out "$OUT/witness.key" >/dev/null
"$BIN/vaultmesh-guardian" --api-addr 127.0.0.1:$PORT --metrics-addr 127.0.0.1:$((PORT + 1)) \
    --database-url "$(vm_role_url guardian $DB)" --signing-key-file "$OUT/guardian.key" \
    --journal-path "$OUT/journal.jsonl" --witness-key-file "$OUT/witness.key" \
    --remote-mesh "bench-remote,$(cat "$OUT/remote.vkey"),http://127.0.0.1:$((PORT + 2))" \
    --log warn 2>"$OUT/guardian.log" &
GUARDIAN=$!
FED=
cleanup() {
    kill "$GUARDIAN" 2>/dev/null || true
    [ -n "$FED" ] && kill -TERM "$FED" 2>/dev/null && wait "$FED" 2>/dev/null || true
    vm_bench_drop "$DB"
    for m in a b c; do vm_bench_drop "${FED_PREFIX}_$m"; done
}
trap cleanup EXIT
vm_wait guardian curl -sf "http://127.0.0.1:$PORT/v1/health"
for r in $(seq 1 "$RUNS"); do
    "$BIN/vaultmesh" bench witness --addr 127.0.0.1:$PORT --signing-key "$OUT/remote.key" \
        --mesh bench-remote --database-url "$(vm_owner_url $DB)" --clients "$CLIENTS" \
        --seconds "$SECS" | tee -a "$OUT/witness.jsonl"
done
kill "$GUARDIAN"; wait "$GUARDIAN" 2>/dev/null || true

VAULTMESH_BIN_DIR=$BIN VAULTMESH_FEDERATION_STATE_DIR=$OUT/federation \
    VAULTMESH_FEDERATION_DATABASE_PREFIX=$FED_PREFIX VAULTMESH_FEDERATION_BASE_PORT=$FED_BASE \
    VAULTMESH_REMOTE_POLL_INTERVAL_MS=1000 VAULTMESH_RATE_LIMIT_PER_SEC=0 \
    setsid bash ops/federation/up.sh 2>"$OUT/federation.log" &
FED=$!
for i in 0 1 2; do
    vm_wait "mesh $i" curl -sf "http://127.0.0.1:$((FED_BASE + 10 * i + 1))/v1/health"
done
for r in $(seq 1 "$RUNS"); do
    pids=()
    for m in a b c; do
        i=$(( $(printf '%d' "'$m") - 97 ))
        (. "$OUT/federation/mesh-$m.env" && "$BIN/vaultmesh" bench inclusion \
            --addr "127.0.0.1:$((FED_BASE + 10 * i))" --token "$VAULTMESH_WRITER_KEY" \
            --database-url "$(vm_owner_url "${FED_PREFIX}_$m")" --witnessed 2 \
            --rate "$(python3 -c "print($RATE / 3)")" --clients 22 --seconds "$LOAD_SECS" \
            | sed "s/^{/{\"mesh\":\"mesh-$m\",/" >> "$OUT/inclusion.jsonl") & pids+=($!)
    done
    wait "${pids[@]}"
done
cat "$OUT/inclusion.jsonl"

python3 - "$OUT" <<'PY'
import json, statistics, sys, pathlib
out = pathlib.Path(sys.argv[1])
w = [json.loads(l) for l in (out / "witness.jsonl").read_text().splitlines()]
med = lambda rows, k: statistics.median(r[k] for r in rows)
print(f"witness add-checkpoint, {w[0]['clients']} clients: {med(w, 'requests_per_s'):.0f} req/s "
      f"(p50 {med(w, 'p50_ms'):.2f} ms, p99 {med(w, 'p99_ms'):.2f} ms, refused {sum(r['refused'] for r in w)}); "
      f"baseline verify + round trip {med(w, 'baseline_ops_per_s'):.0f} ops/s; ratio {med(w, 'ratio'):.3f} "
      f"(runs: {[r['ratio'] for r in w]})")
inc = [json.loads(l) for l in (out / "inclusion.jsonl").read_text().splitlines()]
total = sum(r["receipts_per_s"] for r in inc) / (len(inc) / 3)
print(f"submit -> checkpoint with 2 cosignatures, {total:.0f} receipts/s over three meshes:")
for m in ["mesh-a", "mesh-b", "mesh-c"]:
    rows = [r for r in inc if r["mesh"] == m]
    print(f"  {m}: p50 {med(rows, 'p50_ms'):.0f} ms, p99 {med(rows, 'p99_ms'):.0f} ms, "
          f"never witnessed {sum(r['never_included'] for r in rows)} (runs p50: {[round(r['p50_ms']) for r in rows]})")
allp50 = statistics.median(r["p50_ms"] for r in inc)
print(f"  all meshes: median p50 {allp50:.0f} ms (goal <= 2000 ms)")
PY
