#!/usr/bin/env bash
# What the trust-boundary and strict-protocol checks cost on the hot paths (SPEC §12: each
# new check ≤ 5% of the throughput it sits on): the same load against the portal built from
# an earlier commit (OLD) and from this tree (NEW), alternated round by round in one run so
# that the machine's drift hits both alike. Measures single-receipt ingest (64 clients, one
# scroll: append gate, per-item validation, strict parsing, the listener guard) and
# inclusion proofs on a seeded scroll (authenticated Redis tiles and checkpoints).
# Usage: ops/bench/trust_cost.sh OLD_BIN_DIR [RUNS]
#   OLD_BIN_DIR: release binaries of the earlier commit, e.g. built with
#     git worktree add /tmp/vm-old <commit> && (cd /tmp/vm-old && cargo build --release --bins)
#   env: SECS per run (default 8), RECEIPTS in the proof scroll (default 200000)
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh
. ops/lib/bench.sh
OLD=${1:?usage: ops/bench/trust_cost.sh OLD_BIN_DIR [RUNS]}
RUNS=${2:-5}
SECS=${SECS:-8}
RECEIPTS=${RECEIPTS:-200000}
PORT=18180
SCROLL=bench-proofs
OUT=$(mktemp -d)
vm_bench_prepare vaultmesh_bench_cost_new
NEW=$BIN
for side in old new; do
    db=vaultmesh_bench_cost_$side
    bin=$OLD; [ "$side" = new ] && bin=$NEW
    vm_psql_super -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db OWNER vaultmesh"
    "$bin/vaultmesh" migrate --database-url "$(vm_owner_url $db)" 2>/dev/null
    "$bin/vaultmesh" keygen --out "$OUT/$side.key" --vkey-out "$OUT/$side.vkey" >/dev/null
    "$NEW/vaultmesh" keys create --database-url "$(vm_owner_url $db)" --role writer --label bench --format token > "$OUT/$side.token"
    "$bin/vaultmesh" bench seed --database-url "$(vm_owner_url $db)" --scroll $SCROLL \
        --receipts "$RECEIPTS" --signing-key "$OUT/$side.key" > "$OUT/$side-seed.json"
done
trap 'for s in old new; do vm_bench_drop vaultmesh_bench_cost_$s; done' EXIT

start_portal() {  # side → sets PORTAL
    local side=$1 db=vaultmesh_bench_cost_$1
    if [ "$side" = old ]; then
        "$OLD/vaultmesh-portal" --api-addr 127.0.0.1:$PORT --metrics-addr 127.0.0.1:$((PORT + 1)) \
            --database-url "$(vm_owner_url $db)" --guardian-vkey-file "$OUT/old.vkey" \
            --mesh-id bench --log warn 2>>"$OUT/portal-old.log" &
    else
        "$NEW/vaultmesh-portal" --rate-limit-per-sec 0 --api-addr 127.0.0.1:$PORT \
            --metrics-addr 127.0.0.1:$((PORT + 1)) --database-url "$(vm_role_url portal $db)" \
            --guardian-vkey-file "$OUT/new.vkey" --mesh-id bench --log warn 2>>"$OUT/portal-new.log" &
    fi
    PORTAL=$!
    vm_wait portal curl -sf "http://127.0.0.1:$PORT/v1/health"
}
stop_portal() { kill "$PORTAL" 2>/dev/null || true; wait "$PORTAL" 2>/dev/null || true; }

echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"
INCL="/v1/scrolls/$SCROLL/proof/inclusion?seq={seq}"
for r in $(seq 1 "$RUNS"); do
    for side in old new; do
        start_portal "$side"
        token=$(cat "$OUT/$side.token")
        "$NEW/vaultmesh" bench ingest --addr 127.0.0.1:$PORT --token "$token" --seconds "$SECS" \
            --clients 64 --scrolls 1 | tee -a "$OUT/ingest-$side.jsonl"
        # Warm the tile memo and Redis, then measure.
        "$NEW/vaultmesh" bench reads --addr 127.0.0.1:$PORT --seconds 3 --label warm --clients 64 \
            --path "$INCL" --seq-below "$RECEIPTS" > /dev/null
        "$NEW/vaultmesh" bench reads --addr 127.0.0.1:$PORT --seconds "$SECS" --label inclusion \
            --clients 64 --path "$INCL" --seq-below "$RECEIPTS" | tee -a "$OUT/inclusion-$side.jsonl"
        stop_portal
    done
done

python3 - "$OUT" <<'PY'
import json, statistics, sys, pathlib
out = pathlib.Path(sys.argv[1])
def runs(name): return [json.loads(l) for l in (out / f"{name}.jsonl").read_text().splitlines()]
for what, key in [("ingest", "receipts_per_s"), ("inclusion", "requests_per_s")]:
    old = [r[key] for r in runs(f"{what}-old")]
    new = [r[key] for r in runs(f"{what}-new")]
    mo, mn = statistics.median(old), statistics.median(new)
    print(f"{what:10s} old median {mo:9.0f}/s (runs {', '.join(f'{x:.0f}' for x in old)})")
    print(f"{what:10s} new median {mn:9.0f}/s (runs {', '.join(f'{x:.0f}' for x in new)})")
    print(f"{what:10s} new/old = {mn / mo:.3f} (cost {100 * (1 - mn / mo):+.1f}%; target cost <= 5%)")
PY
