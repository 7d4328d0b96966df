#!/usr/bin/env bash
# Restores a backup made by ops/backup/backup.sh into a new, empty database (never over an
# existing one), after checking the manifest. The application role gets its grants back from
# the dump; the schema owner owns everything.
#
#   ops/backup/restore.sh --from DIR --database NAME [--admin-url URL]
#
# ADMIN_URL: a role allowed to create databases (default: the schema owner on `postgres`).
# The restored database's migrations are those of the backup; run `vaultmesh migrate` after
# restoring into a newer release.
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh

from=
database=
admin_url=$(vm_owner_url postgres)
while [ $# -gt 0 ]; do
    case $1 in
        --from) from=$2; shift 2 ;;
        --database) database=$2; shift 2 ;;
        --admin-url) admin_url=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) vm_log "unknown argument: $1"; exit 2 ;;
    esac
done
[ -n "$from" ] && [ -n "$database" ] || { vm_log "--from DIR and --database NAME are required"; exit 2; }
case $database in *[!a-z0-9_]*) vm_log "database name: lower-case letters, digits and _ only"; exit 2 ;; esac

(cd "$from" && sha256sum --check --quiet SHA256SUMS) || { vm_log "backup in $from fails its SHA256SUMS"; exit 1; }
if [ -n "$(psql "$admin_url" -tAc "SELECT 1 FROM pg_database WHERE datname = '$database'")" ]; then
    vm_log "database $database already exists: restore into a new name"
    exit 1
fi
started=$(date +%s.%N)
psql "$admin_url" -q -c "CREATE DATABASE \"$database\" OWNER vaultmesh"
target=${admin_url%/*}/$database
pg_restore --no-owner --role=vaultmesh --exit-on-error --dbname="$target" "$from/vaultmesh.dump"
vm_log "restored $from into $database in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $started}") s"
