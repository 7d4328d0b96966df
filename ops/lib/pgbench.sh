# The raw Postgres baseline both benchmark scripts compare against: pgbench inserting the
# receipts row shape (same columns and constraints, ~300-byte leaf, 32-byte hash, primary
# key and leaf-hash index) in 500-row statements from 8 clients.
# Usage: vm_pgbench_rows_per_s DB RUNS TOTAL_ROWS  → prints the median rows/s, and the runs
# on stderr. Needs ops/lib/stack.sh sourced and DB migrated.
vm_pgbench_rows_per_s() {
    local db=$1 runs=$2 total=$3 dir pgb
    dir=$(mktemp -d)
    psql -X -q "$(vm_owner_url "$db")" <<'SQL'
DROP TABLE IF EXISTS bench_rows;
DROP SEQUENCE IF EXISTS bench_seq;
CREATE TABLE bench_rows (LIKE receipts INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE bench_rows ADD PRIMARY KEY (scroll_id, seq);
CREATE INDEX ON bench_rows (leaf_hash);
CREATE SEQUENCE bench_seq;
SQL
    cat > "$dir/insert.sql" <<'SQL'
INSERT INTO bench_rows (scroll_id, seq, leaf, leaf_hash, type, submitted_at, submitter)
SELECT 1, s, convert_to(repeat('x', 300) || s::text, 'UTF8'),
       decode(md5(s::text) || md5(s::text || 'x'), 'hex'), 'drill_completed', now(), 'key_bench'
FROM (SELECT nextval('bench_seq') AS s FROM generate_series(1, 500)) AS g;
SQL
    pgb=$(ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -n 1)
    local rates=() tps
    for _ in $(seq 1 "$runs"); do
        tps=$("${pgb:-pgbench}" -n -c 8 -j 2 -t $((total / 500 / 8)) -f "$dir/insert.sql" "$(vm_owner_url "$db")" 2>/dev/null \
            | awk '/^tps = /{print $3}')
        rates+=("$(awk -v t="$tps" 'BEGIN{printf "%.0f", t*500}')")
    done
    echo "pgbench runs (rows/s): ${rates[*]}" >&2
    printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'
    rm -rf "$dir"
}
