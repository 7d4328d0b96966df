#!/usr/bin/env bash
# Ledger benchmarks with their raw baselines measured in the same run:
#   1. leaf hashing + tile building vs raw SHA3-256 over the same leaf bytes (one core);
#   2. store appends (500-receipt batches, 8 writers) vs pgbench inserting the same row
#      shape in 500-row statements with 8 clients;
#   3. roots and proofs from stored tiles on a 1M-leaf tree.
# Prints JSON lines and a summary; medians over RUNS repetitions.
# Usage: ops/bench/ledger.sh [RUNS]   (env: LEAVES, APPEND_TOTAL, PROOF_LEAVES)
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh
. ops/lib/bench.sh
RUNS=${1:-5}
LEAVES=${LEAVES:-1000000}
APPEND_TOTAL=${APPEND_TOTAL:-200000}
PROOF_LEAVES=${PROOF_LEAVES:-1000000}
DB=vaultmesh_bench

vm_bench_prepare "$DB"
BIN=target/release/vaultmesh
APP=$(vm_owner_url $DB)
OUT=$(mktemp -d)

echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"
"$BIN" bench hashing --leaves "$LEAVES" --runs "$RUNS" | tee "$OUT/hashing.json"

. ops/lib/pgbench.sh
pg_median=$(vm_pgbench_rows_per_s "$DB" "$RUNS" "$APPEND_TOTAL")
echo "{\"bench\":\"pgbench_insert\",\"rows_per_statement\":500,\"clients\":8,\"rows_per_s_median\":$pg_median}" | tee "$OUT/pgbench.json"

"$BIN" bench append --database-url "$APP" --writers 8 --batch 500 --scrolls 1 --total "$APPEND_TOTAL" --runs "$RUNS" | tee "$OUT/append1.json"
"$BIN" bench append --database-url "$APP" --writers 8 --batch 500 --scrolls 12 --total "$APPEND_TOTAL" --runs "$RUNS" | tee "$OUT/append12.json"
"$BIN" bench proofs --database-url "$APP" --leaves "$PROOF_LEAVES" --samples 2000 | tee "$OUT/proofs.json"

python3 - "$OUT" <<'PY'
import json, sys, pathlib
d = {p.stem: json.loads(p.read_text()) for p in pathlib.Path(sys.argv[1]).glob("*.json")}
pg = d["pgbench"]["rows_per_s_median"]
print(f"append ratio (1 scroll):   {d['append1']['rows_per_s_median'] / pg:.2f}x pgbench")
print(f"append ratio (12 scrolls): {d['append12']['rows_per_s_median'] / pg:.2f}x pgbench")
print(f"hashing ratio (tiles):     {d['hashing']['ratio_tiles_vs_raw']:.2f}x raw SHA3-256")
PY
vm_psql_super -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
