# Shared by ops/bench/*.sh: the stack up, a release build (or $VAULTMESH_BIN_DIR, to compare
# two builds in one session), and a freshly migrated scratch database. Needs ops/lib/stack.sh
# sourced.
# Usage: vm_bench_prepare DB   → sets BIN (release binaries dir); vm_bench_drop DB at exit.
vm_bench_prepare() {
    local db=$1
    vm_ensure_stack
    vm_bin
    vm_psql_super -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db OWNER vaultmesh"
    "$BIN/vaultmesh" migrate --database-url "$(vm_owner_url "$db")" 2>/dev/null
}

vm_bench_drop() {
    vm_psql_super -d postgres -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1 || true
}
