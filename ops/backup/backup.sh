#!/usr/bin/env bash
# Backs up a VaultMesh ledger: the database (pg_dump, custom format) and then the guardian's
# ProofChain journal, with a SHA-256 manifest. The dump is taken first so the journal copy
# covers every epoch the dump records as journaled.
#
#   ops/backup/backup.sh --database-url OWNER_URL --journal FILE --out DIR
#
# OWNER_URL is the schema owner's URL (default: the dev stack's). Exit 0 with DIR holding
# vaultmesh.dump, proofchain.jsonl and SHA256SUMS.
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh

db_url=$(vm_owner_url)
journal=.vaultmesh/proofchain.jsonl
out=
while [ $# -gt 0 ]; do
    case $1 in
        --database-url) db_url=$2; shift 2 ;;
        --journal) journal=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) vm_log "unknown argument: $1"; exit 2 ;;
    esac
done
[ -n "$out" ] || { vm_log "--out DIR is required"; exit 2; }
mkdir -p "$out"

started=$(date +%s.%N)
pg_dump --format=custom --compress=6 --file="$out/vaultmesh.dump" --dbname="$db_url"
if [ -f "$journal" ]; then
    cp "$journal" "$out/proofchain.jsonl"
else
    vm_log "no journal at $journal: backing up the database only"
fi
(cd "$out" && sha256sum vaultmesh.dump $( [ -f proofchain.jsonl ] && echo proofchain.jsonl ) > SHA256SUMS)
vm_log "backup in $out: $(du -h "$out/vaultmesh.dump" | cut -f1) dump, $( [ -f "$out/proofchain.jsonl" ] && wc -l < "$out/proofchain.jsonl" || echo 0) journal lines, $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $started}") s"
