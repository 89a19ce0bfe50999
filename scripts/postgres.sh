#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback, for the store's tests.
#   scripts/postgres.sh start DIR   # prints the server's URL; the cluster lives in DIR
#   scripts/postgres.sh stop DIR
# Installs Debian's postgresql package if no server binaries are found (as root,
# with apt). Exits non-zero, saying why, if no server can be started.
set -euo pipefail
action=${1:?start or stop}
dir=${2:?a directory for the cluster}

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
as_owner() {
    # PostgreSQL refuses to run as root: use the package's `postgres` user.
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
start)
    bin=$(find_bin)
    if [ -z "$bin" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
            echo "installing Debian's postgresql for the store tests" >&2
            export DEBIAN_FRONTEND=noninteractive
            apt-get install -y -q postgresql > "$dir/apt.log" 2>&1 \
                || { apt-get update -q >> "$dir/apt.log" 2>&1 && apt-get install -y -q postgresql >> "$dir/apt.log" 2>&1; } \
                || { echo "apt-get install postgresql failed (see $dir/apt.log)" >&2; exit 1; }
            bin=$(find_bin)
        fi
        [ -n "$bin" ] || { echo "no PostgreSQL server binaries, and no root apt to install them" >&2; exit 1; }
    fi
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -A trust -U augur > "$dir/initdb.log" 2>&1 \
        || { echo "initdb failed: $(tail -3 "$dir/initdb.log")" >&2; exit 1; }
    for port in 55432 55433 55434 55435 55436; do
        if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start > /dev/null 2>&1; then
            echo "postgres://augur@127.0.0.1:$port/postgres"
            exit 0
        fi
    done
    echo "the PostgreSQL server did not start: $(tail -3 "$dir/server.log" 2>/dev/null)" >&2
    exit 1
    ;;
stop)
    bin=$(find_bin)
    [ -n "$bin" ] && [ -d "$dir/data" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop > /dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
*)
    echo "usage: scripts/postgres.sh start|stop DIR" >&2
    exit 2
    ;;
esac
