#!/usr/bin/env bash
# What governance costs on the hot paths (issue: ≤ 5% each): single-receipt ingest with a
# 50-rule constitution against the same portal with none, and reads of receipt contents
# (every one now counted by the read audit) against the portal built from the commit before
# governance (OLD). Three sides — old, new without a constitution ("none"), new with 50
# rules ("rules50") — each on its own database, alternated round by round in one run so
# that the machine's drift hits all alike.
# Usage: ops/bench/governance_cost.sh OLD_BIN_DIR [RUNS]
#   OLD_BIN_DIR: release binaries of the commit before governance, e.g.
#     git worktree add /tmp/vm-old c7f2012 && (cd /tmp/vm-old && cargo build --release --bins)
#   env: SECS per measurement (default 8), RECEIPTS in the read scroll (default 100000)
#   MODE=callgrind: instead of throughput, count the portal's own CPU instructions per
#     request under valgrind's callgrind (counts, not seconds: repeatable on a noisy VM), one
#     round per side, SECS of load each after a warm-up, from one client (so that every
#     request is its own group commit and the path per request is the same on every side).
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh
. ops/lib/bench.sh
OLD=${1:?usage: ops/bench/governance_cost.sh OLD_BIN_DIR [RUNS]}
RUNS=${2:-5}
SECS=${SECS:-8}
RECEIPTS=${RECEIPTS:-100000}
PORT=18190
SCROLL=bench-reads
SIDES="old none rules50"
OUT=$(mktemp -d)
vm_bench_prepare vaultmesh_bench_gov_none
NEW=$BIN

# The 50-rule constitution: 29 rules on `drills` (the scroll the ingest load writes; most of
# them patterns the load's type does not match, so the gate walks them all), 21 on others.
python3 - "$OUT/constitution.json" <<'PY'
import json, sys
drills = {
    "types": ["load_test", "latency_probe", "drill_*", "exercise_*"] + [f"kind_{k}" for k in range(10)],
    "max_payload_bytes": 4096,
    "payload": {"load_*": {"type": "object", "required": ["client", "i", "note"],
                           "properties": {"client": {"type": "integer", "minimum": 0},
                                          "i": {"type": "integer", "minimum": 0},
                                          "note": {"type": "string", "maxLength": 1024}}}},
    "writers": {"load_*": {"roles": ["writer", "admin"]}},
}
for k in range(15):
    drills["payload"][f"x{k}_*"] = {"type": "object", "required": ["id"]}
for k in range(10):
    drills["writers"][f"y{k}_*"] = {"roles": ["admin"]}
scrolls = {"drills": drills}
for s in ["compliance", "treasury", "mesh", "offsec", "identity", "observability", "automation", "psi", "federation"]:
    scrolls[s] = {"types": [f"{s}_*"], "max_payload_bytes": 8192}
scrolls["*"] = {"types": ["generic_*"], "max_payload_bytes": 8192}
scrolls["treasury"]["payload"] = {"treasury_*": {"type": "object", "required": ["amount"]}}
doc = {"version": 1, "description": "benchmark: 50 rules", "scrolls": scrolls}
rules = sum(("types" in r) + ("max_payload_bytes" in r) + len(r.get("payload", {})) + len(r.get("writers", {})) for r in scrolls.values())
assert rules == 50, rules
json.dump(doc, open(sys.argv[1], "w"))
PY

for side in $SIDES; do
    db=vaultmesh_bench_gov_$side
    bin=$NEW; [ "$side" = old ] && bin=$OLD
    vm_psql_super -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db OWNER vaultmesh"
    "$bin/vaultmesh" migrate --database-url "$(vm_owner_url $db)" 2>/dev/null
    "$bin/vaultmesh" keygen --out "$OUT/$side.key" --vkey-out "$OUT/$side.vkey" >/dev/null
    for role in writer reader admin; do
        "$NEW/vaultmesh" keys create --database-url "$(vm_owner_url $db)" --role $role --label bench --format token > "$OUT/$side.$role"
    done
    "$bin/vaultmesh" bench seed --database-url "$(vm_owner_url $db)" --scroll $SCROLL \
        --receipts "$RECEIPTS" --signing-key "$OUT/$side.key" > "$OUT/$side-seed.json"
done
trap 'for s in $SIDES; do vm_bench_drop vaultmesh_bench_gov_$s; done' EXIT

start_portal() {  # side → sets PORTAL
    local side=$1 db=vaultmesh_bench_gov_$1 bin=$NEW
    [ "$side" = old ] && bin=$OLD
    "$bin/vaultmesh-portal" --rate-limit-per-sec 0 --api-addr 127.0.0.1:$PORT \
        --metrics-addr 127.0.0.1:$((PORT + 1)) --database-url "$(vm_role_url portal $db)" \
        --guardian-vkey-file "$OUT/$side.vkey" --mesh-id bench --log warn 2>>"$OUT/portal-$side.log" &
    PORTAL=$!
    vm_wait portal curl -sf "http://127.0.0.1:$PORT/v1/health"
}
stop_portal() { kill "$PORTAL" 2>/dev/null || true; wait "$PORTAL" 2>/dev/null || true; }

start_portal rules50
"$NEW/vaultmesh" constitution adopt --portal-url "http://127.0.0.1:$PORT" \
    --api-key "$(cat "$OUT/rules50.admin")" "$OUT/constitution.json" >/dev/null
stop_portal

echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"
READ="/v1/scrolls/$SCROLL/receipts/{seq}"

if [ "${MODE:-}" = callgrind ]; then
    receipts_in() { vm_psql_super -d "vaultmesh_bench_gov_$1" -Atc "SELECT count(*) FROM receipts r JOIN scrolls s ON s.id = r.scroll_id WHERE s.name = 'drills'"; }
    counted() {  # dump the counts since the last zeroing → instructions
        callgrind_control -d "$PORTAL" >/dev/null 2>&1
        local f; f=$(ls -t "$OUT"/cg.out.* | head -n 1)
        awk '/^(summary|totals):/{print $2; exit}' "$f"
    }
    for side in $SIDES; do
        db=vaultmesh_bench_gov_$side bin=$NEW
        [ "$side" = old ] && bin=$OLD
        valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out.%p" "$bin/vaultmesh-portal" \
            --rate-limit-per-sec 0 --api-addr 127.0.0.1:$PORT --metrics-addr 127.0.0.1:$((PORT + 1)) \
            --database-url "$(vm_role_url portal $db)" --guardian-vkey-file "$OUT/$side.vkey" \
            --mesh-id bench --log warn 2>>"$OUT/portal-$side.log" &
        PORTAL=$!
        for _ in $(seq 1 240); do curl -sf "http://127.0.0.1:$PORT/v1/health" >/dev/null && break; sleep 0.5; done
        ingest() { "$NEW/vaultmesh" bench ingest --addr 127.0.0.1:$PORT --token "$(cat "$OUT/$side.writer")" --seconds "$1" --clients 1 --scrolls 1; }
        reads() { "$NEW/vaultmesh" bench reads --addr 127.0.0.1:$PORT --token "$(cat "$OUT/$side.reader")" --seconds "$1" --clients 1 --label read --path "$READ" --seq-below "$RECEIPTS"; }
        ingest 3 >/dev/null; reads 3 >/dev/null
        callgrind_control -z "$PORTAL" >/dev/null 2>&1
        before=$(receipts_in "$side")
        ingest "$SECS" >/dev/null
        n=$(( $(receipts_in "$side") - before ))
        ir=$(counted)
        echo "{\"side\": \"$side\", \"what\": \"ingest\", \"requests\": $n, \"instructions\": $ir}" | tee -a "$OUT/cg.jsonl"
        callgrind_control -z "$PORTAL" >/dev/null 2>&1
        n=$(reads "$SECS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(round(r["requests_per_s"]*r["seconds"]))')
        ir=$(counted)
        echo "{\"side\": \"$side\", \"what\": \"read\", \"requests\": $n, \"instructions\": $ir}" | tee -a "$OUT/cg.jsonl"
        stop_portal
    done
    python3 - "$OUT/cg.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
per = {(r["side"], r["what"]): r["instructions"] / max(r["requests"], 1) for r in rows}
for r in rows:
    print(f'{r["what"]:6s} {r["side"]:8s} {r["requests"]:6d} requests, {per[(r["side"], r["what"])]:12,.0f} instructions/request')
for what, a, b, label in [("ingest", "none", "rules50", "50-rule constitution"), ("ingest", "old", "none", "governance plumbing"),
                          ("read", "old", "none", "read audit"), ("read", "old", "rules50", "read audit + 50 rules")]:
    print(f"{what}, {label}: {b}/{a} = {per[(b, what)] / per[(a, what)]:.3f} instructions per request")
PY
    exit 0
fi
for r in $(seq 1 "$RUNS"); do
    for side in $SIDES; do
        start_portal "$side"
        "$NEW/vaultmesh" bench ingest --addr 127.0.0.1:$PORT --token "$(cat "$OUT/$side.writer")" \
            --seconds "$SECS" --clients 64 --scrolls 1 | tee -a "$OUT/ingest-$side.jsonl"
        "$NEW/vaultmesh" bench reads --addr 127.0.0.1:$PORT --seconds 3 --label warm --clients 64 \
            --token "$(cat "$OUT/$side.reader")" --path "$READ" --seq-below "$RECEIPTS" > /dev/null
        "$NEW/vaultmesh" bench reads --addr 127.0.0.1:$PORT --seconds "$SECS" --label read \
            --clients 64 --token "$(cat "$OUT/$side.reader")" --path "$READ" --seq-below "$RECEIPTS" \
            | tee -a "$OUT/read-$side.jsonl"
        stop_portal
    done
done
# The audit really ran: the new sides wrote access receipts for the reads.
for side in none rules50; do
    n=$(vm_psql_super -d vaultmesh_bench_gov_$side -Atc "SELECT count(*) FROM receipts r JOIN scrolls s ON s.id = r.scroll_id WHERE s.name = 'access'")
    echo "access receipts written ($side): $n"
done

python3 - "$OUT" <<'PY'
import json, statistics, sys, pathlib
out = pathlib.Path(sys.argv[1])
def med(name, key):
    xs = [json.loads(l)[key] for l in (out / f"{name}.jsonl").read_text().splitlines()]
    return statistics.median(xs), xs
def show(label, a, b, key, target):
    (ma, xa), (mb, xb) = med(a, key), med(b, key)
    print(f"{label}: {a} median {ma:.0f}/s (runs {', '.join(f'{x:.0f}' for x in xa)})")
    print(f"{label}: {b} median {mb:.0f}/s (runs {', '.join(f'{x:.0f}' for x in xb)})")
    print(f"{label}: {b}/{a} = {mb / ma:.3f} (cost {100 * (1 - mb / ma):+.1f}%; target cost <= {target}%)")
show("ingest, constitution", "ingest-none", "ingest-rules50", "receipts_per_s", 5)
show("ingest, governance plumbing", "ingest-old", "ingest-none", "receipts_per_s", 5)
show("reads, read audit", "read-old", "read-none", "requests_per_s", 5)
show("reads, audit + 50 rules", "read-old", "read-rules50", "requests_per_s", 5)
PY
