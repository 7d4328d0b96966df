#!/usr/bin/env bash
# Oracle extractive answer latency over a generated corpus (SPEC §12: p95 ≤ 50 ms at 10k
# sections): a release oracle on a scratch database, `vaultmesh bench oracle` filling the
# corpus and asking questions one at a time over HTTP (each answer also receipted).
# Usage: ops/bench/oracle.sh [RUNS]   (env: SECTIONS default 10000, QUERIES default 500)
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh
. ops/lib/bench.sh
RUNS=${1:-3}
SECTIONS=${SECTIONS:-10000}
QUERIES=${QUERIES:-500}
DB=vaultmesh_bench_oracle
PORT=18120

vm_bench_prepare "$DB"
OWNER=$(vm_owner_url $DB)
READER=$("$BIN/vaultmesh" keys create --database-url "$OWNER" --role reader --label bench --format token)
OUT=$(mktemp -d)
"$BIN/vaultmesh-oracle" --api-addr 127.0.0.1:$PORT --metrics-addr 127.0.0.1:$((PORT + 1)) \
    --database-url "$(vm_role_url oracle $DB)" --log warn 2>"$OUT/oracle.log" &
ORACLE=$!
trap 'kill $ORACLE 2>/dev/null || true; vm_bench_drop "$DB"' EXIT
vm_wait oracle curl -sf "http://127.0.0.1:$PORT/v1/health"
echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"
for r in $(seq 1 "$RUNS"); do
    "$BIN/vaultmesh" bench oracle --addr 127.0.0.1:$PORT --token "$READER" --database-url "$OWNER" \
        --sections "$SECTIONS" --queries "$QUERIES" | tee -a "$OUT/oracle.jsonl"
done
python3 - "$OUT" <<'PY'
import json, statistics, sys, pathlib
runs = [json.loads(l) for l in (pathlib.Path(sys.argv[1]) / "oracle.jsonl").read_text().splitlines()]
med = lambda k: statistics.median(r[k] for r in runs)
print(f"oracle, {runs[0]['sections']} sections: p50 {med('p50_ms'):.1f} ms, p95 {med('p95_ms'):.1f} ms, p99 {med('p99_ms'):.1f} ms (target p95 <= 50 ms); answers with citations {med('answers_with_citations'):.0f}/{runs[0]['queries']}")
PY
