#!/usr/bin/env bash
# Guardian benchmarks with their raw baselines in the same run (SPEC §12):
#   1. integration hashing (leaf hash + tile building) vs raw SHA3-256 over the same bytes;
#   2. submit → included in a signed checkpoint at 5,000 receipts/s (release portal +
#      guardian, 1 s integration interval), p50/p99;
#   3. a full divergence recompute (POST /v1/guardian/verify) over a RECOMPUTE-receipt scroll
#      vs raw `COPY (SELECT leaf …) TO STDOUT` of the same rows, and the guardian's peak RSS.
# Usage: ops/bench/guardian.sh [RUNS]   (env: RECOMPUTE default 10000000, SECS default 20)
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh
. ops/lib/bench.sh
RUNS=${1:-3}
SECS=${SECS:-20}
RECOMPUTE=${RECOMPUTE:-10000000}
DB=vaultmesh_bench_guardian
PORT=18100

vm_bench_prepare "$DB"
OWNER=$(vm_owner_url $DB)
OUT=$(mktemp -d)
"$BIN/vaultmesh" keygen --name bench/guardian --out "$OUT/guardian.key" --vkey-out "$OUT/guardian.vkey" >/dev/null
WRITER=$("$BIN/vaultmesh" keys create --database-url "$OWNER" --role writer --label bench --format token)
ADMIN=$("$BIN/vaultmesh" keys create --database-url "$OWNER" --role admin --label bench --format token)
echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"

"$BIN/vaultmesh" bench hashing --runs "$RUNS" | tee "$OUT/hashing.json"

"$BIN/vaultmesh-guardian" --api-addr 127.0.0.1:$PORT --metrics-addr 127.0.0.1:$((PORT + 1)) \
    --database-url "$(vm_role_url guardian $DB)" --mesh-id bench --signing-key-file "$OUT/guardian.key" \
    --journal-path "$OUT/proofchain.jsonl" --log warn 2>"$OUT/guardian.log" &
GUARDIAN=$!
"$BIN/vaultmesh-portal" --rate-limit-per-sec 0 --api-addr 127.0.0.1:$((PORT + 2)) --metrics-addr 127.0.0.1:$((PORT + 3)) \
    --database-url "$(vm_role_url portal $DB)" --mesh-id bench --log warn 2>"$OUT/portal.log" &
PORTAL=$!
trap 'kill $GUARDIAN $PORTAL 2>/dev/null || true; vm_bench_drop "$DB"' EXIT
vm_wait guardian curl -sf "http://127.0.0.1:$PORT/v1/health"
vm_wait portal curl -sf "http://127.0.0.1:$((PORT + 2))/v1/health"

for r in $(seq 1 "$RUNS"); do
    "$BIN/vaultmesh" bench inclusion --addr 127.0.0.1:$((PORT + 2)) --token "$WRITER" \
        --database-url "$OWNER" --scroll drills --rate 5000 --seconds "$SECS" | tee -a "$OUT/inclusion.jsonl"
done

"$BIN/vaultmesh" bench seed --database-url "$OWNER" --scroll bench-recompute --receipts "$RECOMPUTE" \
    --mesh-id bench --signing-key "$OUT/guardian.key" | tee "$OUT/seed.json"
ID=$(psql -X -qtA "$(vm_owner_url $DB)" -c "SELECT id FROM scrolls WHERE name = 'bench-recompute'")
TOTAL=$(psql -X -qtA "$(vm_owner_url $DB)" -c "SELECT count(*) FROM receipts")
rss_before=$(awk '/VmHWM/{print $2}' /proc/$GUARDIAN/status)
now() { date +%s%N; }
for r in $(seq 1 "$RUNS"); do
    t0=$(now)
    psql -X -q "$OWNER" -c "COPY (SELECT leaf FROM receipts WHERE scroll_id = $ID ORDER BY seq) TO STDOUT" > /dev/null
    t1=$(now)
    curl -sf -X POST -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$PORT/v1/guardian/verify" > "$OUT/verify.json"
    t2=$(now)
    grep -q '"intact":true' "$OUT/verify.json" || { echo "verification found divergence:"; head -c 2000 "$OUT/verify.json"; exit 1; }
    echo "{\"copy_s\": $(((t1 - t0) / 1000000))e-3, \"verify_s\": $(((t2 - t1) / 1000000))e-3}" | tee -a "$OUT/recompute.jsonl"
done
rss_after=$(awk '/VmHWM/{print $2}' /proc/$GUARDIAN/status)

python3 - "$OUT" "$RECOMPUTE" "$TOTAL" "$rss_before" "$rss_after" <<'PY'
import json, statistics, sys, pathlib
out, n, total, before, after = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
h = json.loads((out / "hashing.json").read_text().splitlines()[-1])
print(f"integration hashing: {h['ratio_tiles_vs_raw']:.2f}x raw SHA3-256 (target 0.5x)")
inc = [json.loads(l) for l in (out / "inclusion.jsonl").read_text().splitlines()]
med = lambda k: statistics.median(r[k] for r in inc)
print(f"submit -> included at {med('receipts_per_s'):.0f} receipts/s: p50 {med('p50_ms'):.0f} ms, p99 {med('p99_ms'):.0f} ms, never included {sum(r['never_included'] for r in inc)} (targets 1.5 s / 3 s)")
rc = [json.loads(l) for l in (out / "recompute.jsonl").read_text().splitlines()]
copy_s, verify_s = statistics.median(r["copy_s"] for r in rc), statistics.median(r["verify_s"] for r in rc)
print(f"raw COPY of {n} leaves: {copy_s:.1f} s = {n / copy_s:.0f} rows/s")
print(f"full verification pass ({total} receipts in all scrolls): {verify_s:.1f} s = {total / verify_s:.0f} rows/s = {(total / verify_s) / (n / copy_s):.2f}x COPY (target 0.5x)")
print(f"guardian peak RSS: {before / 1024:.1f} MiB before the {n}-receipt passes, {after / 1024:.1f} MiB after (target 100 MB)")
PY
