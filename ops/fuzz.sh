#!/usr/bin/env bash
# The long fuzzing run: the same as the test in ops/test.sh (portal/tests/openapi_fuzz.rs —
# schemathesis against a live portal and guardian on real PostgreSQL and Redis, with no key
# and with reader, writer and admin keys, checks in ops/fuzz/schemathesis.toml) with many
# more cases and a fresh seed each time.
#
#   ops/fuzz.sh                      # 500 cases per operation and key (about 26,000 in all, ~3-4 min)
#   FUZZ_EXAMPLES=2000 ops/fuzz.sh   # longer
#   FUZZ_SEED=1234 ops/fuzz.sh       # replay the run that printed this seed
#
# Exits non-zero if schemathesis reports any failure or error, or fewer than FUZZ_MIN_CASES
# cases ran. A failing run keeps its logs (one per key, with a curl command reproducing each
# failure) in the temporary directory named in the output.
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/lib/stack.sh
vm_ensure_stack
vm_ensure_python
export VAULTMESH_TEST_ADMIN_URL=${VAULTMESH_TEST_ADMIN_URL:-$(vm_owner_url postgres)}
export VAULTMESH_TEST_REDIS_URL=${VAULTMESH_TEST_REDIS_URL:-redis://127.0.0.1:$VM_REDIS_PORT}
export VAULTMESH_FUZZ_EXAMPLES=${FUZZ_EXAMPLES:-500}
export VAULTMESH_FUZZ_SEED=${FUZZ_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
export VAULTMESH_FUZZ_MIN_CASES=${FUZZ_MIN_CASES:-10000}
vm_log "fuzzing the portal: $VAULTMESH_FUZZ_EXAMPLES examples per operation and key, seed $VAULTMESH_FUZZ_SEED"
exec cargo test --locked -p vaultmesh-portal --test openapi_fuzz -- --nocapture
