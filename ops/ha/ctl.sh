#!/usr/bin/env bash
# Controls a pg_auto_failover formation made by ops/ha/up.sh (ops/lib/ha.sh), for drills and
# by hand:
#   ops/ha/ctl.sh DIR BASE state                        member states (name reported goal health)
#   ops/ha/ctl.sh DIR BASE kill primary|standby|monitor|nodeN   SIGKILL a member's keeper and
#                                                       postmaster; prints the member killed
#   ops/ha/ctl.sh DIR BASE start MEMBER                 start a member again (it rejoins)
#   ops/ha/ctl.sh DIR BASE wait-healthy [SECONDS]       until one primary and healthy standbys
#   ops/ha/ctl.sh DIR BASE stop                         stop every member
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib/stack.sh
. ops/lib/ha.sh
[ $# -ge 3 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
DIR=$1 BASE=$2 CMD=$3
shift 3
case $CMD in
    state) vm_ha_state "$BASE" ;;
    kill)
        target=${1:?kill what}
        case $target in
            primary) member=$(vm_ha_primary "$BASE") ;;
            standby) member=$(vm_ha_state "$BASE" | awk '$2 == "secondary" { print $1; exit }') ;;
            *) member=$target ;;
        esac
        [ -n "$member" ] || { vm_log "no $target to kill"; vm_ha_state "$BASE" >&2 || true; exit 1; }
        vm_ha_kill "$DIR" "$member"
        echo "$member"
        ;;
    start) vm_ha_start "$DIR" "${1:?start what}" ;;
    wait-healthy)
        vm_wait "the monitor" pg_isready -q -h 127.0.0.1 -p "$BASE"
        vm_ha_wait_healthy "$BASE" "${1:-180}"
        ;;
    stop) vm_ha_stop "$DIR" ;;
    *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
