#!/usr/bin/env bash
# Portal ingest benchmark with the raw Postgres baseline measured in the same run (SPEC §12):
#   single-receipt requests, 64 keep-alive clients, 1 scroll and 12 scrolls;
#   batch requests of 100 receipts; p99 at half the single-receipt load; portal peak RSS.
# Usage: ops/bench/ingest.sh [RUNS]   (env: SECS per run, default 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh
. ops/lib/bench.sh
. ops/lib/pgbench.sh
RUNS=${1:-3}
SECS=${SECS:-10}
DB=vaultmesh_bench_ingest
PORT=18080

vm_bench_prepare "$DB"
TOKEN=$("$BIN/vaultmesh" keys create --database-url "$(vm_owner_url $DB)" --role writer --label bench --format token)
OUT=$(mktemp -d)

"$BIN/vaultmesh-portal" --rate-limit-per-sec 0 --api-addr 127.0.0.1:$PORT --metrics-addr 127.0.0.1:$((PORT + 1)) \
    --database-url "$(vm_role_url portal $DB)" --db-pool-size 16 --log warn 2>"$OUT/portal.log" &
PORTAL=$!
trap 'kill $PORTAL 2>/dev/null || true; vm_bench_drop "$DB"' EXIT
vm_wait portal curl -sf "http://127.0.0.1:$PORT/v1/health"

echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"
pg=$(vm_pgbench_rows_per_s "$DB" "$RUNS" 200000)
echo "{\"bench\":\"pgbench_insert\",\"rows_per_s_median\":$pg}" | tee "$OUT/pgbench.json"

load() { "$BIN/vaultmesh" bench ingest --addr 127.0.0.1:$PORT --token "$TOKEN" --seconds "$SECS" "$@"; }
for r in $(seq 1 "$RUNS"); do
    load --clients 64 --scrolls 1 | tee -a "$OUT/single1.jsonl"
    load --clients 64 --scrolls 12 | tee -a "$OUT/single12.jsonl"
    load --clients 16 --scrolls 1 --batch 100 | tee -a "$OUT/batch.jsonl"
done
half=$(python3 -c "import json,statistics,sys; print(statistics.median(json.loads(l)['requests_per_s'] for l in open('$OUT/single1.jsonl')) / 2)")
for r in $(seq 1 "$RUNS"); do
    load --clients 64 --scrolls 1 --rate "$half" | tee -a "$OUT/half.jsonl"
done
rss_kib=$(awk '/VmHWM/{print $2}' /proc/$PORTAL/status)

python3 - "$OUT" "$pg" "$rss_kib" <<'PY'
import json, statistics, sys, pathlib
out, pg, rss = pathlib.Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
def runs(name): return [json.loads(l) for l in (out / f"{name}.jsonl").read_text().splitlines()]
def med(name, key): return statistics.median(r[key] for r in runs(name))
for name, label, target in [("single1", "single receipt, 1 scroll", 0.4), ("single12", "single receipt, 12 scrolls", 0.4), ("batch", "batch of 100, 1 scroll", 0.7)]:
    rps = med(name, "receipts_per_s")
    print(f"{label:28s} {rps:9.0f} receipts/s = {rps / pg:.2f}x pgbench (target {target}x), p50 {med(name, 'p50_ms'):.1f} ms, p99 {med(name, 'p99_ms'):.1f} ms")
print(f"{'half load, 1 scroll':28s} {med('half', 'receipts_per_s'):9.0f} receipts/s, p50 {med('half', 'p50_ms'):.2f} ms, p99 {med('half', 'p99_ms'):.2f} ms (target p99 <= 25 ms)")
print(f"portal peak RSS: {rss / 1024:.1f} MiB (target <= 100 MB)")
PY
