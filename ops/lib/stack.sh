# Shared by ops/up.sh, ops/test.sh and ops/bench/*: installs (apt-get) and starts
# PostgreSQL and Redis when missing or stopped, and creates VaultMesh's roles and database.
# Idempotent. Source it, then call vm_ensure_stack.
#
# Dev/test credentials (override for anything real):
#   VAULTMESH_OWNER_PASSWORD    (role vaultmesh: owns the schema, runs migrations, manages keys)
#   VAULTMESH_PORTAL_PASSWORD   (role vaultmesh_portal: the portal at run time)
#   VAULTMESH_GUARDIAN_PASSWORD (role vaultmesh_guardian: the guardian at run time)
#   VAULTMESH_ORACLE_PASSWORD   (role vaultmesh_oracle: the oracle at run time)
# Each service role's dev password is its own name; the migrations give the roles their rights.

VM_PG_HOST=${VM_PG_HOST:-127.0.0.1}
VM_PG_PORT=${VM_PG_PORT:-5432}
VM_REDIS_PORT=${VM_REDIS_PORT:-6379}
VAULTMESH_OWNER_PASSWORD=${VAULTMESH_OWNER_PASSWORD:-vaultmesh}
VAULTMESH_PORTAL_PASSWORD=${VAULTMESH_PORTAL_PASSWORD:-vaultmesh_portal}
VAULTMESH_GUARDIAN_PASSWORD=${VAULTMESH_GUARDIAN_PASSWORD:-vaultmesh_guardian}
VAULTMESH_ORACLE_PASSWORD=${VAULTMESH_ORACLE_PASSWORD:-vaultmesh_oracle}

vm_log() { printf '[vaultmesh] %s\n' "$*" >&2; }

vm_as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

vm_pg_bin() {
    local v
    v=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$v" ] && printf '/usr/lib/postgresql/%s/bin' "$v"
}

vm_ensure_packages() {
    local missing=()
    [ -n "$(vm_pg_bin)" ] && [ -x "$(vm_pg_bin)/postgres" ] || missing+=(postgresql postgresql-contrib)
    command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
    # The test suite's timestamp authority is `openssl ts`.
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    if [ "${#missing[@]}" -gt 0 ]; then
        vm_log "installing ${missing[*]} with apt-get"
        vm_as_root apt-get update -qq
        vm_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

vm_wait() {
    local what=$1; shift
    for _ in $(seq 1 60); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    vm_log "$what did not come up"; return 1
}

vm_ensure_postgres() {
    if pg_isready -q -h "$VM_PG_HOST" -p "$VM_PG_PORT"; then return 0; fi
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$version" ]; then
        version=$(basename "$(dirname "$(vm_pg_bin)")")
        vm_log "creating PostgreSQL $version cluster"
        vm_as_root pg_createcluster "$version" main >/dev/null
    fi
    vm_log "starting PostgreSQL $version"
    vm_as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    vm_wait PostgreSQL pg_isready -q -h "$VM_PG_HOST" -p "$VM_PG_PORT"
}

vm_ensure_redis() {
    if redis-cli -h 127.0.0.1 -p "$VM_REDIS_PORT" ping >/dev/null 2>&1; then return 0; fi
    vm_log "starting Redis on port $VM_REDIS_PORT"
    vm_as_root mkdir -p /var/lib/redis /var/log/redis
    vm_as_root redis-server --daemonize yes --bind 127.0.0.1 --port "$VM_REDIS_PORT" \
        --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/vaultmesh.log
    vm_wait Redis redis-cli -h 127.0.0.1 -p "$VM_REDIS_PORT" ping
}

vm_psql_super() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$VM_PG_PORT" "$@"
    else
        sudo -u postgres psql -X -q -v ON_ERROR_STOP=1 -p "$VM_PG_PORT" "$@"
    fi
}

# Roles: vaultmesh (owner; CREATEDB and CREATEROLE so tests can make databases) and one LOGIN
# role per service (privileges come from the migrations). Database: vaultmesh.
vm_ensure_roles() {
    vm_psql_super -d postgres <<SQL
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vaultmesh') THEN
        CREATE ROLE vaultmesh LOGIN CREATEDB CREATEROLE PASSWORD '${VAULTMESH_OWNER_PASSWORD}';
    ELSE
        ALTER ROLE vaultmesh LOGIN CREATEDB CREATEROLE PASSWORD '${VAULTMESH_OWNER_PASSWORD}';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vaultmesh_portal') THEN
        CREATE ROLE vaultmesh_portal LOGIN PASSWORD '${VAULTMESH_PORTAL_PASSWORD}';
    ELSE
        ALTER ROLE vaultmesh_portal LOGIN PASSWORD '${VAULTMESH_PORTAL_PASSWORD}';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vaultmesh_guardian') THEN
        CREATE ROLE vaultmesh_guardian LOGIN PASSWORD '${VAULTMESH_GUARDIAN_PASSWORD}';
    ELSE
        ALTER ROLE vaultmesh_guardian LOGIN PASSWORD '${VAULTMESH_GUARDIAN_PASSWORD}';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vaultmesh_oracle') THEN
        CREATE ROLE vaultmesh_oracle LOGIN PASSWORD '${VAULTMESH_ORACLE_PASSWORD}';
    ELSE
        ALTER ROLE vaultmesh_oracle LOGIN PASSWORD '${VAULTMESH_ORACLE_PASSWORD}';
    END IF;
END
\$\$;
SQL
    if [ -z "$(vm_psql_super -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'vaultmesh'")" ]; then
        vm_psql_super -d postgres -c "CREATE DATABASE vaultmesh OWNER vaultmesh"
    fi
}

vm_owner_url() { printf 'postgres://vaultmesh:%s@%s:%s/%s' "$VAULTMESH_OWNER_PASSWORD" "$VM_PG_HOST" "$VM_PG_PORT" "${1:-vaultmesh}"; }
# vm_role_url portal|guardian|oracle [database]: a service role's URL.
vm_role_url() {
    local role=$1 password
    case $role in
        portal) password=$VAULTMESH_PORTAL_PASSWORD ;;
        guardian) password=$VAULTMESH_GUARDIAN_PASSWORD ;;
        oracle) password=$VAULTMESH_ORACLE_PASSWORD ;;
        *) vm_log "unknown service role $role"; return 1 ;;
    esac
    printf 'postgres://vaultmesh_%s:%s@%s:%s/%s' "$role" "$password" "$VM_PG_HOST" "$VM_PG_PORT" "${2:-vaultmesh}"
}

# Python with rfc8785 and cryptography for the independent verifier in ops/verify/,
# kubernetes-validate (with PyYAML) for the Kubernetes manifest tests, and schemathesis
# (pinned to VM_SCHEMATHESIS_VERSION: its checks and configuration keys change between
# releases) for fuzzing the portal from its OpenAPI document (portal/tests/openapi_fuzz.rs,
# ops/fuzz.sh).
# Uses the system python3 if it already has them, else a venv in target/pyenv.
# Prometheus and promtool (Debian's prometheus package) for the alert-rule tests and the
# end-to-end monitoring test. Debian starts a Prometheus service on :9090 where systemd runs;
# that port is the portal's metrics port, so it is stopped (the tests run their own).
vm_ensure_prometheus() {
    command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && return 0
    vm_log "installing prometheus (server and promtool) with apt-get"
    vm_as_root apt-get update -qq
    vm_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
        vm_as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
}

vm_ensure_alertmanager() {
    command -v prometheus-alertmanager >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 && return 0
    vm_log "installing prometheus-alertmanager with apt-get"
    vm_as_root apt-get update -qq
    vm_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus-alertmanager 2>/dev/null; then
        vm_as_root systemctl disable --now prometheus-alertmanager >/dev/null 2>&1 || true
    fi
}

VM_SCHEMATHESIS_VERSION=${VM_SCHEMATHESIS_VERSION:-4.32.5}

vm_ensure_python() {
    local modules="import rfc8785, cryptography, kubernetes_validate, yaml, schemathesis, sys, importlib.metadata as md
sys.exit(md.version('schemathesis') != '$VM_SCHEMATHESIS_VERSION')"
    if python3 -c "$modules" >/dev/null 2>&1; then
        VAULTMESH_PYTHON=$(command -v python3)
    else
        if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
            vm_log "installing python3-venv with apt-get"
            vm_as_root apt-get update -qq
            vm_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        fi
        local venv=target/pyenv
        if ! "$venv/bin/python" -c "$modules" >/dev/null 2>&1; then
            vm_log "installing rfc8785, cryptography, kubernetes-validate and schemathesis $VM_SCHEMATHESIS_VERSION into $venv"
            python3 -m venv "$venv"
            "$venv/bin/python" -m pip install --quiet --disable-pip-version-check rfc8785 cryptography \
                kubernetes-validate "schemathesis==$VM_SCHEMATHESIS_VERSION"
        fi
        VAULTMESH_PYTHON=$PWD/$venv/bin/python
    fi
    export VAULTMESH_PYTHON
}

# vm_key_active BIN_DIR OWNER_URL KEY_ID: the API key recorded in an env file still exists and
# is not revoked. The listing is read whole before it is searched: `… | grep -q` under
# pipefail fails whenever grep stops reading early and the lister gets a broken pipe.
vm_key_active() {
    local listing
    [ -n "${3:-}" ] || return 1
    listing=$("$1/vaultmesh" keys list --database-url "$2") || return 1
    grep -q "\"id\":\"$3\".*\"revoked_at\":null" <<<"$listing"
}

# vm_ensure_api_keys BIN_DIR OWNER_URL LABEL: keeps the admin, writer and reader keys named
# by VAULTMESH_{ADMIN,WRITER,READER}_KEY_ID (their tokens in VAULTMESH_*_KEY, as an env file
# the caller sourced left them) while all three are active; otherwise creates three new ones,
# labelled LABEL-admin, LABEL-writer and LABEL-reader, and sets those six variables.
# Succeeds only when it created them (for a caller that then records them).
vm_ensure_api_keys() {
    local role id token
    if vm_key_active "$1" "$2" "${VAULTMESH_ADMIN_KEY_ID:-}" \
        && vm_key_active "$1" "$2" "${VAULTMESH_WRITER_KEY_ID:-}" \
        && vm_key_active "$1" "$2" "${VAULTMESH_READER_KEY_ID:-}"; then
        return 1
    fi
    vm_log "$3: creating API keys"
    for role in admin writer reader; do
        read -r id token < <("$1/vaultmesh" keys create --database-url "$2" --role "$role" --label "$3-$role")
        printf -v "VAULTMESH_${role^^}_KEY_ID" '%s' "$id"
        printf -v "VAULTMESH_${role^^}_KEY" '%s' "$token"
    done
}

# Foreground stacks (ops/up.sh, ops/federation/up.sh): services started with
# `setsid … & VM_PIDS+=($!)` run in their own sessions, so only the script's SIGTERM stops
# them — in order, with a 15 s deadline, then SIGKILL — when it is interrupted or exits; a
# broken stdout pipe (`ops/up.sh | tee log`) must not kill the script half-way through.
vm_foreground() {
    trap '' PIPE
    VM_PIDS=()
    trap 'vm_stop_all; exit 0' INT TERM
    trap vm_stop_all EXIT
}
vm_stop_all() {
    trap - INT TERM EXIT
    if [ "${#VM_PIDS[@]}" -gt 0 ]; then
        kill -TERM "${VM_PIDS[@]}" 2>/dev/null || true
        for _ in $(seq 1 150); do
            kill -0 "${VM_PIDS[@]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${VM_PIDS[@]}" 2>/dev/null || true
        wait "${VM_PIDS[@]}" 2>/dev/null || true
    fi
    vm_log "stopped" || true
}

# Sets BIN: $VAULTMESH_BIN_DIR when given, else a release build made now (the stack scripts).
vm_bin() {
    if [ -n "${VAULTMESH_BIN_DIR:-}" ]; then
        BIN=$VAULTMESH_BIN_DIR
    else
        vm_log "building release binaries"
        cargo build --release --locked --bins --quiet
        BIN=target/release
    fi
}

# vm_cache_secret FILE: the secret that authenticates every Redis cache entry (it never
# enters Redis), 32 random bytes as hex, made once and kept (mode 600).
vm_cache_secret() {
    if [ ! -s "$1" ]; then
        (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$1.new" && mv "$1.new" "$1")
    fi
    chmod 600 "$1"
}

vm_ensure_stack() {
    vm_ensure_packages
    vm_ensure_postgres
    vm_ensure_redis
    vm_ensure_roles
}
