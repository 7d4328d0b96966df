#!/usr/bin/env bash
# Capacity planning figures: stored bytes per receipt (table, indexes, Merkle tiles,
# checkpoints), backup bytes per receipt (pg_dump custom format), Redis bytes per cached
# receipt, and journal bytes per epoch. Fills a scratch database with RECEIPTS receipts of
# about 300 bytes (the leaf size of the other benchmarks) and one signed checkpoint.
# Usage: ops/bench/capacity.sh   (env: RECEIPTS default 1000000)
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh
. ops/lib/bench.sh
RECEIPTS=${RECEIPTS:-1000000}
DB=vaultmesh_bench_capacity
SCROLL=bench-capacity

vm_bench_prepare "$DB"
OUT=$(mktemp -d)
trap 'vm_bench_drop "$DB"; rm -rf "$OUT"' EXIT
"$BIN/vaultmesh" keygen --out "$OUT/guardian.key" --vkey-out "$OUT/guardian.vkey" >/dev/null
echo "# machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"
"$BIN/vaultmesh" bench seed --database-url "$(vm_owner_url $DB)" --scroll $SCROLL \
    --receipts "$RECEIPTS" --signing-key "$OUT/guardian.key" >/dev/null
vm_psql_super -d "$DB" -qc "VACUUM ANALYZE" >/dev/null
start=$(date +%s.%N)
pg_dump --format=custom --compress=6 --file="$OUT/db.dump" --dbname="$(vm_owner_url $DB)"
dump_secs=$(awk "BEGIN{print $(date +%s.%N) - $start}")
dump_bytes=$(stat -c %s "$OUT/db.dump")
# The benchmark's payload filler compresses well; the uncompressed dump bounds it from above.
pg_dump --format=custom --compress=0 --file="$OUT/db-plain.dump" --dbname="$(vm_owner_url $DB)"
plain_bytes=$(stat -c %s "$OUT/db-plain.dump")

# One cached receipt in Redis: the portal stores the 32-byte leaf hash and the leaf.
leaf=$(vm_psql_super -d "$DB" -tAc "SELECT encode(leaf_hash || leaf, 'hex') FROM receipts LIMIT 1")
key="vm:capacity-probe:receipt:$SCROLL:0"
printf '%s' "$leaf" | xxd -r -p | redis-cli -p "$VM_REDIS_PORT" -x SET "$key" >/dev/null
redis_bytes=$(redis-cli -p "$VM_REDIS_PORT" MEMORY USAGE "$key")
redis-cli -p "$VM_REDIS_PORT" DEL "$key" >/dev/null

vm_psql_super -d "$DB" -tA -F ' ' -c "
  SELECT count(*), avg(length(leaf))::int,
         pg_relation_size('receipts'), pg_indexes_size('receipts'),
         pg_total_relation_size('receipts'), pg_total_relation_size('tree_tiles'),
         pg_total_relation_size('checkpoints'), pg_database_size(current_database())
  FROM receipts" > "$OUT/sizes"
python3 - "$OUT/sizes" "$dump_bytes" "$dump_secs" "$redis_bytes" "$plain_bytes" <<'PY'
import json, sys
n, leaf, heap, idx, total, tiles, cps, dbsize = map(int, open(sys.argv[1]).read().split())
dump, dump_secs, redis = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
plain = int(sys.argv[5])
per = lambda b: round(b / n, 1)
print(json.dumps({
    "receipts": n, "avg_leaf_bytes": leaf,
    "receipts_heap_per_receipt": per(heap), "receipts_indexes_per_receipt": per(idx),
    "receipts_total_per_receipt": per(total), "tiles_per_receipt": per(tiles),
    "checkpoints_bytes": cps, "database_per_receipt": per(dbsize),
    "dump_per_receipt": per(dump), "dump_uncompressed_per_receipt": per(plain),
    "dump_seconds": round(dump_secs, 1),
    "dump_receipts_per_second": round(n / dump_secs),
    "redis_bytes_per_cached_receipt": redis,
}))
PY
