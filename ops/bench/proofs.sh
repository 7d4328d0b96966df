#!/usr/bin/env bash
# Proof serving over HTTP on a large scroll (SPEC §12): fills a scroll with RECEIPTS
# receipts and signs a checkpoint over them, starts a release portal (Redis on), then per
# run measures /v1/health throughput (the baseline), inclusion-proof throughput at random
# positions, full level-0 tile serving (what an HTTP cache asks on a miss), and
# inclusion/consistency latency on one connection. Server-side latency is
# read from the portal's own request-duration histogram.
# Usage: ops/bench/proofs.sh [RUNS]   (env: RECEIPTS default 1000000, SECS per run default 8)
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh
. ops/lib/bench.sh
RUNS=${1:-3}
SECS=${SECS:-8}
RECEIPTS=${RECEIPTS:-1000000}
DB=vaultmesh_bench_proofs
PORT=18090
SCROLL=bench-proofs

vm_bench_prepare "$DB"
OUT=$(mktemp -d)
"$BIN/vaultmesh" keygen --out "$OUT/guardian.key" --vkey-out "$OUT/guardian.vkey" >/dev/null
echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"
"$BIN/vaultmesh" bench seed --database-url "$(vm_owner_url $DB)" --scroll $SCROLL \
    --receipts "$RECEIPTS" --signing-key "$OUT/guardian.key" | tee "$OUT/seed.json"

"$BIN/vaultmesh-portal" --rate-limit-per-sec 0 --api-addr 127.0.0.1:$PORT --metrics-addr 127.0.0.1:$((PORT + 1)) \
    --database-url "$(vm_role_url portal $DB)" --guardian-vkey-file "$OUT/guardian.vkey" \
    --log warn 2>"$OUT/portal.log" &
PORTAL=$!
trap 'kill $PORTAL 2>/dev/null || true; vm_bench_drop "$DB"' EXIT
vm_wait portal curl -sf "http://127.0.0.1:$PORT/v1/health"

load() { "$BIN/vaultmesh" bench reads --addr 127.0.0.1:$PORT --seconds "$SECS" "$@"; }
INCL="/v1/scrolls/$SCROLL/proof/inclusion?seq={seq}"
CONS="/v1/scrolls/$SCROLL/proof/consistency?from={seq}"
for r in $(seq 1 "$RUNS"); do
    load --label health --clients 64 | tee -a "$OUT/health.jsonl"
    load --label inclusion --clients 64 --path "$INCL" --seq-below "$RECEIPTS" | tee -a "$OUT/inclusion.jsonl"
    load --label tile --clients 64 --path "/v1/scrolls/$SCROLL/tiles/0/{seq}" \
        --seq-below $((RECEIPTS / 256)) | tee -a "$OUT/tile.jsonl"
done
curl -sf "http://127.0.0.1:$((PORT + 1))/metrics" > "$OUT/metrics64.txt"
for r in $(seq 1 "$RUNS"); do
    load --label inclusion_1 --clients 1 --path "$INCL" --seq-below "$RECEIPTS" | tee -a "$OUT/inclusion1.jsonl"
    load --label consistency_1 --clients 1 --path "$CONS" --seq-below "$RECEIPTS" | tee -a "$OUT/consistency1.jsonl"
done
curl -sf "http://127.0.0.1:$((PORT + 1))/metrics" > "$OUT/metrics1.txt"
rss_kib=$(awk '/VmHWM/{print $2}' /proc/$PORTAL/status)

python3 - "$OUT" "$rss_kib" <<'PY'
import json, re, statistics, sys, pathlib
out, rss = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def runs(name): return [json.loads(l) for l in (out / f"{name}.jsonl").read_text().splitlines()]
def med(name, key): return statistics.median(r[key] for r in runs(name))
health, incl = med("health", "requests_per_s"), med("inclusion", "requests_per_s")
print(f"health, 64 clients:        {health:9.0f} req/s, p50 {med('health', 'p50_ms'):.2f} ms")
print(f"inclusion, 64 clients:     {incl:9.0f} req/s = {incl / health:.2f}x health (target 0.5x), p50 {med('inclusion', 'p50_ms'):.2f} ms, p99 {med('inclusion', 'p99_ms'):.2f} ms")
tile = med("tile", "requests_per_s")
print(f"full tile (8 KiB), 64 clients: {tile:9.0f} req/s = {tile / health:.2f}x health, p50 {med('tile', 'p50_ms'):.2f} ms, p99 {med('tile', 'p99_ms'):.2f} ms")
for name, label in [("inclusion1", "inclusion, 1 client"), ("consistency1", "consistency, 1 client")]:
    print(f"{label + ':':26s} {med(name, 'requests_per_s'):9.0f} req/s, client p50 {med(name, 'p50_ms'):.3f} ms, p99 {med(name, 'p99_ms'):.3f} ms")
# Server-side: the portal's own histogram of inclusion requests, for the 64-client runs
# and (by difference) for the one-client runs.
def inclusion_buckets(name):
    out_b = {}
    for line in (out / name).read_text().splitlines():
        m = re.match(r'vaultmesh_http_request_duration_seconds_bucket\{(.*)\} (\S+)', line)
        if m and 'proof/inclusion' in m.group(1):
            le = re.search(r'le="([^"]+)"', m.group(1)).group(1)
            out_b[le] = out_b.get(le, 0) + float(m.group(2))
    return out_b
b64, b_all = inclusion_buckets("metrics64.txt"), inclusion_buckets("metrics1.txt")
b1 = {le: b_all[le] - b64.get(le, 0) for le in b_all}
for label, b in [("64 clients", b64), ("1 client", b1)]:
    total = b.get("+Inf", 0)
    shares = ", ".join(f"<= {float(le) * 1000:g} ms: {100 * b[le] / total:.1f}%" for le in ["0.0005", "0.001", "0.0025"] if total and le in b)
    print(f"server-side inclusion, {label} ({total:.0f} requests): {shares}")
print(f"portal peak RSS: {rss / 1024:.1f} MiB")
PY
