# A pg_auto_failover formation on this machine (docs/operations.md, "Replicated PostgreSQL"):
# a monitor and three Postgres nodes (one primary, two synchronous standbys, `ANY 1`), each
# with its own data directory and port, run by pg_autoctl as the postgres user. Sourced by
# ops/ha/*.sh after ops/lib/stack.sh.
#
# Layout: DIR/monitor, DIR/node1..3, pg_autoctl's own files in DIR/.pg_autoctl; DIR must be
# an absolute path. Ports BASE (monitor), BASE+1..3 (nodes). Each pg_autoctl
# runs in a session of its own (setsid), so killing a node's session kills its keeper and its
# postmaster at once, as a machine failure would.
#
# Dev settings, not for production: trust authentication on 127.0.0.1 and no TLS; failure
# detection tuned down (health checks every second, a node unhealthy after 3 s, the old
# primary given 6 s to demote itself, keepers declaring a partition after 4 s), and 30 s
# checkpoints.

VM_HA_NODES=(node1 node2 node3)

vm_ha_ensure_packages() {
    command -v pg_autoctl >/dev/null 2>&1 && return 0
    local v
    v=$(basename "$(dirname "$(vm_pg_bin)")")
    vm_log "installing pg_auto_failover for PostgreSQL $v with apt-get"
    vm_as_root apt-get update -qq
    vm_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        "postgresql-$v-auto-failover" pg-auto-failover-cli >/dev/null
}

# vm_ha_as_postgres DIR CMD…: runs a command as the postgres user with Postgres's binaries
# first on PATH, from a directory it can read, with pg_autoctl's configuration and state
# files kept under DIR/.pg_autoctl (so removing DIR removes the formation for good).
vm_ha_as_postgres() {
    local dir=$1 path
    shift
    path="$(vm_pg_bin):$PATH"
    local env=(env PATH="$path" XDG_CONFIG_HOME="$dir/.pg_autoctl/config"
        XDG_DATA_HOME="$dir/.pg_autoctl/data")
    if [ "$(id -u)" = 0 ]; then
        (cd / && runuser -u postgres -- "${env[@]}" "$@")
    else
        (cd / && sudo -u postgres "${env[@]}" "$@")
    fi
}

vm_ha_psql() { # PORT DATABASE SQL
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d "$2" -tAc "$3"
}

# The port of a node (node1 → BASE+1) or of the monitor (BASE).
vm_ha_port() { # BASE NAME
    case $2 in
        monitor) echo "$1" ;;
        node*) echo $(($1 + ${2#node})) ;;
    esac
}

# The pid of a member's supervisor (its session id), if it runs.
vm_ha_pid() { # DIR NAME
    pgrep -u postgres -x -f "pg_autoctl run --pgdata $1/$2" | head -n 1 | grep .
}

# Starts a member's pg_autoctl in a session of its own (no-op when it runs).
vm_ha_start() { # DIR NAME
    vm_ha_pid "$1" "$2" >/dev/null && return 0
    vm_ha_as_postgres "$1" setsid pg_autoctl run --pgdata "$1/$2" >>"$1/$2.log" 2>&1 </dev/null &
    disown 2>/dev/null || true
}

# SIGKILLs a member's whole session: keeper, postmaster and backends.
vm_ha_kill() { # DIR NAME
    local pid
    pid=$(vm_ha_pid "$1" "$2") || return 0
    pkill -KILL -s "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        pgrep -s "$pid" >/dev/null 2>&1 || return 0
        sleep 0.05
    done
}

# Stops every member (nodes first, then the monitor), gently, then for good.
vm_ha_stop() { # DIR
    local name pid
    for name in "${VM_HA_NODES[@]}" monitor; do
        pid=$(vm_ha_pid "$1" "$name") || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            pgrep -s "$pid" >/dev/null 2>&1 || break
            sleep 0.1
        done
        vm_ha_kill "$1" "$name"
    done
}

# Member states as "name reported goal health" lines, from the monitor.
vm_ha_state() { # BASE
    vm_ha_psql "$1" pg_auto_failover \
        "SELECT nodename || ' ' || reportedstate || ' ' || goalstate || ' ' || health \
         FROM pgautofailover.node ORDER BY nodeid" 2>/dev/null
}

# The name of the node that is primary (reported and assigned), if any.
vm_ha_primary() { # BASE
    vm_ha_state "$1" | awk '$2 == "primary" && $3 == "primary" { print $1 }'
}

# Succeeds once there is a primary and every other node is a healthy secondary.
vm_ha_healthy() { # BASE
    local state
    state=$(vm_ha_state "$1") || return 1
    [ "$(awk '$2 == "primary" && $3 == "primary"' <<<"$state" | wc -l)" = 1 ] || return 1
    [ "$(awk '$2 == "secondary" && $3 == "secondary" && $4 == 1' <<<"$state" | wc -l)" = \
        $((${#VM_HA_NODES[@]} - 1)) ]
}

vm_ha_wait_healthy() { # BASE [SECONDS]
    local deadline=$((SECONDS + ${2:-120}))
    until vm_ha_healthy "$1"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            vm_log "the formation did not become healthy:"; vm_ha_state "$1" >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

# Creates (first run) and starts the monitor and the nodes, tunes failure detection, and
# waits for a healthy formation; then makes VaultMesh's roles and database on the primary.
vm_ha_up() { # DIR BASE
    local dir=$1 base=$2 monitor name
    mkdir -p "$dir/.pg_autoctl"
    chown postgres "$dir" "$dir/.pg_autoctl" 2>/dev/null || vm_as_root chown postgres "$dir" "$dir/.pg_autoctl"
    chmod 700 "$dir/.pg_autoctl"
    dir=$(cd "$dir" && pwd)
    if [ ! -f "$dir/monitor/PG_VERSION" ]; then
        vm_log "creating the pg_auto_failover monitor on :$base"
        vm_ha_as_postgres "$dir" pg_autoctl create monitor --pgdata "$dir/monitor" --pgport "$base" \
            --hostname 127.0.0.1 --auth trust --no-ssl >>"$dir/monitor.log" 2>&1
    fi
    vm_ha_start "$dir" monitor
    vm_wait "the monitor" pg_isready -q -h 127.0.0.1 -p "$base"
    vm_wait "the monitor's extension" vm_ha_psql "$base" pg_auto_failover "SELECT 1 FROM pgautofailover.node LIMIT 1"
    local setting
    for setting in health_check_period=1000 health_check_timeout=1000 health_check_max_retries=1 \
        health_check_retry_delay=500 node_considered_unhealthy_timeout=3000 primary_demote_timeout=6000; do
        vm_ha_psql "$base" pg_auto_failover \
            "ALTER SYSTEM SET pgautofailover.${setting%%=*} = ${setting#*=}" >/dev/null
    done
    vm_ha_psql "$base" pg_auto_failover "SELECT pg_reload_conf()" >/dev/null
    monitor="postgres://autoctl_node@127.0.0.1:$base/pg_auto_failover?sslmode=disable"
    for name in "${VM_HA_NODES[@]}"; do
        if [ ! -f "$dir/$name/PG_VERSION" ]; then
            vm_log "creating pg_auto_failover node $name on :$(vm_ha_port "$base" "$name")"
            vm_ha_as_postgres "$dir" pg_autoctl create postgres --pgdata "$dir/$name" \
                --pgport "$(vm_ha_port "$base" "$name")" --hostname 127.0.0.1 --name "$name" \
                --monitor "$monitor" --auth trust --no-ssl --dbname vaultmesh >>"$dir/$name.log" 2>&1
            vm_ha_as_postgres "$dir" pg_autoctl config set --pgdata "$dir/$name" \
                timeout.network_partition_timeout 4 >/dev/null
        fi
        vm_ha_start "$dir" "$name"
        # Nodes join one at a time: the first becomes the primary. A standby that cannot be
        # rewound is cloned again with pg_basebackup, which waits for a spread checkpoint:
        # short checkpoints keep that wait to seconds (standbys copy these settings).
        if [ "$name" = node1 ]; then
            vm_wait "node1" pg_isready -q -h 127.0.0.1 -p "$(vm_ha_port "$base" node1)"
            for setting in "checkpoint_timeout = '30s'" "checkpoint_completion_target = 0.1"; do
                vm_ha_psql "$(vm_ha_port "$base" node1)" postgres "ALTER SYSTEM SET $setting" >/dev/null
            done
            vm_ha_psql "$(vm_ha_port "$base" node1)" postgres "SELECT pg_reload_conf()" >/dev/null
        fi
    done
    vm_ha_wait_healthy "$base" 180
    local primary
    primary=$(vm_ha_port "$base" "$(vm_ha_primary "$base")")
    VM_PG_HOST=127.0.0.1 VM_PG_PORT=$primary vm_ha_roles "$primary"
}

# VaultMesh's roles (as vm_ensure_roles) and the vaultmesh database, owned by the owner role.
vm_ha_roles() { # PRIMARY_PORT
    local role password
    vm_ha_psql "$1" postgres "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vaultmesh') THEN
            CREATE ROLE vaultmesh LOGIN CREATEDB CREATEROLE; END IF; END \$\$;
        ALTER ROLE vaultmesh PASSWORD '${VAULTMESH_OWNER_PASSWORD}'" >/dev/null
    for role in portal guardian oracle; do
        case $role in
            portal) password=$VAULTMESH_PORTAL_PASSWORD ;;
            guardian) password=$VAULTMESH_GUARDIAN_PASSWORD ;;
            oracle) password=$VAULTMESH_ORACLE_PASSWORD ;;
        esac
        vm_ha_psql "$1" postgres "DO \$\$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vaultmesh_$role') THEN
                CREATE ROLE vaultmesh_$role LOGIN; END IF; END \$\$;
            ALTER ROLE vaultmesh_$role PASSWORD '$password'" >/dev/null
    done
    vm_ha_psql "$1" vaultmesh "ALTER DATABASE vaultmesh OWNER TO vaultmesh;
        ALTER SCHEMA public OWNER TO vaultmesh" >/dev/null
}

# A multi-host URL over the three nodes that connects to whichever is the primary.
vm_ha_url() { # BASE USER PASSWORD
    printf 'postgres://%s:%s@127.0.0.1:%s,127.0.0.1:%s,127.0.0.1:%s/vaultmesh?target_session_attrs=read-write' \
        "$2" "$3" $(($1 + 1)) $(($1 + 2)) $(($1 + 3))
}
vm_ha_owner_url() { vm_ha_url "$1" vaultmesh "$VAULTMESH_OWNER_PASSWORD"; }
vm_ha_role_url() { # BASE portal|guardian|oracle
    local password
    case $2 in
        portal) password=$VAULTMESH_PORTAL_PASSWORD ;;
        guardian) password=$VAULTMESH_GUARDIAN_PASSWORD ;;
        oracle) password=$VAULTMESH_ORACLE_PASSWORD ;;
    esac
    vm_ha_url "$1" "vaultmesh_$2" "$password"
}

# For the benchmarks: a fresh formation on BASE in a scratch directory (DIR, set here),
# migrated, with BIN set (vm_bin); at exit every pid in PIDS is stopped and the formation
# removed.
vm_ha_bench_formation() { # BASE
    vm_ensure_packages
    vm_ensure_redis
    vm_ha_ensure_packages
    vm_bin
    DIR=$(mktemp -d /tmp/vaultmesh-bench-ha.XXXXXX)
    chmod 755 "$DIR"   # the postgres user runs the formation inside it
    PIDS=()
    trap vm_ha_bench_cleanup EXIT
    vm_ha_up "$DIR/pg" "$1"
    "$BIN/vaultmesh" migrate --database-url "$(vm_ha_owner_url "$1")" 2>/dev/null
}

vm_ha_bench_cleanup() {
    if [ "${#PIDS[@]}" -gt 0 ]; then
        kill "${PIDS[@]}" 2>/dev/null || true
        wait "${PIDS[@]}" 2>/dev/null || true
    fi
    vm_ha_stop "$DIR/pg"
    rm -rf "$DIR"
}
