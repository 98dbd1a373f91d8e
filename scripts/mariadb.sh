#!/usr/bin/env bash
# A private MariaDB for stocksync's demo and tests: its own data dir, port, socket and pid
# under .run/mariadb, a row-based binlog with full row metadata, never the system instance.
#
#   scripts/mariadb.sh start    install mariadb-server if missing, initialise, start, create users
#   scripts/mariadb.sh stop     stop the instance started here, by its own pid
#   scripts/mariadb.sh status   exit 0 when it answers
#   scripts/mariadb.sh env      print the variables tests read (eval "$(scripts/mariadb.sh env)")
#
# Settings: STOCKSYNC_MARIADB_PORT (default 33061), STOCKSYNC_RUN_DIR (default .run),
# STOCKSYNC_DURABLE=1 for innodb_flush_log_at_trx_commit=1 and sync_binlog=1 (benchmarks),
# STOCKSYNC_MARIADB_ARGS for extra server options (tests start a misconfigured one with it),
# STOCKSYNC_MARIADB_FSYNC_DELAY_US=N to make each of the server's fsyncs N µs slower, as on a slower
# disk (benchmarks only: scripts/fsync-delay.c, built with gcc, preloaded into mariadbd).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
run=${STOCKSYNC_RUN_DIR:-$root/.run}
dir=$run/mariadb
port=${STOCKSYNC_MARIADB_PORT:-33061}
sock=$dir/mysqld.sock
pidfile=$dir/mysqld.pid
user=stocksync
pass=stocksync

log() { printf 'mariadb.sh: %s\n' "$*" >&2; }

install_server() {
  command -v mariadbd >/dev/null 2>&1 && command -v mariadb-install-db >/dev/null 2>&1 && return
  if [ "$(id -u)" != 0 ]; then
    log "mariadb-server is not installed and this is not root: run 'apt-get install mariadb-server' as root"
    exit 1
  fi
  log "installing mariadb-server from the distribution's packages"
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p "$run"
  local aptlog=$run/apt.log
  # policy-rc.d keeps the package from starting the system instance.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy; chmod +x $policy; created=1; fi
  if ! { apt-get update -qq && apt-get install -y -qq mariadb-server mariadb-client; } >"$aptlog" 2>&1; then
    [ $created = 1 ] && rm -f $policy
    tail -20 "$aptlog" >&2
    log "installing mariadb-server failed (full log: $aptlog)"
    exit 1
  fi
  [ $created = 1 ] && rm -f $policy
  return 0
}

# fsync_delay_preload builds scripts/fsync-delay.c into $dir and prints the LD_PRELOAD
# setting that loads it, or nothing when STOCKSYNC_MARIADB_FSYNC_DELAY_US is unset or 0.
fsync_delay_preload() {
  local us=${STOCKSYNC_MARIADB_FSYNC_DELAY_US:-0}
  [ "$us" = 0 ] && return
  case $us in *[!0-9]*) log "STOCKSYNC_MARIADB_FSYNC_DELAY_US must be a whole number of microseconds, not '$us'"; exit 1 ;; esac
  if ! command -v gcc >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { log "STOCKSYNC_MARIADB_FSYNC_DELAY_US needs gcc: run 'apt-get install gcc' as root"; exit 1; }
    log "installing gcc from the distribution's packages (for STOCKSYNC_MARIADB_FSYNC_DELAY_US)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev; } >"$run/apt-gcc.log" 2>&1 \
      || { tail -20 "$run/apt-gcc.log" >&2; log "installing gcc failed"; exit 1; }
  fi
  gcc -shared -fPIC -O2 -o "$dir/fsync-delay.so" "$root/scripts/fsync-delay.c" -ldl \
    || { log "building scripts/fsync-delay.c failed"; exit 1; }
  printf 'LD_PRELOAD=%s' "$dir/fsync-delay.so"
}

answers() { mariadb-admin --no-defaults --socket="$sock" -uroot ping >/dev/null 2>&1; }

start() {
  install_server
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && answers; then
    log "already running (pid $(cat "$pidfile"), port $port)"
    return
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "port $port is taken by another process (not the instance under $dir): set STOCKSYNC_MARIADB_PORT to a free port"
    exit 1
  fi
  mkdir -p "$dir" "$dir/tmp" "$dir/files" # its own temporary files: a shared /tmp may be swept under it
  chmod 700 "$dir/files"
  local preload; preload=$(fsync_delay_preload)
  if [ ! -d "$dir/data/mysql" ]; then
    log "initialising $dir/data"
    mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
      --skip-test-db --user="$(id -un)" >"$dir/install.log" 2>&1 || { cat "$dir/install.log" >&2; exit 1; }
  fi
  local flush=2 sync=0
  if [ "${STOCKSYNC_DURABLE:-0}" = 1 ]; then flush=1; sync=1; fi
  # The server runs as whoever starts it (root under make test), and its user's password is
  # no secret: --secure-file-priv keeps SELECT … INTO OUTFILE, LOAD DATA INFILE and
  # LOAD_FILE() to "$dir/files", so another local account cannot write or read a file
  # anywhere else as that user through it.
  log "starting on 127.0.0.1:$port (durable=${STOCKSYNC_DURABLE:-0}${preload:+, each fsync ${STOCKSYNC_MARIADB_FSYNC_DELAY_US} µs slower})"
  # Only this start's errors count: a failed earlier start's [ERROR] lines would otherwise
  # make the loop below give up before this server wrote its pid file, leaving it running.
  [ -f "$dir/error.log" ] && mv "$dir/error.log" "$dir/error.log.prev"
  env $preload STOCKSYNC_MARIADB_FSYNC_DELAY_US="${STOCKSYNC_MARIADB_FSYNC_DELAY_US:-0}" \
  mariadbd --no-defaults --user="$(id -un)" --datadir="$dir/data" --tmpdir="$dir/tmp" --socket="$sock" --pid-file="$pidfile" \
    --port="$port" --bind-address=127.0.0.1 --skip-name-resolve --secure-file-priv="$dir/files" \
    --server-id=1 --log-bin="$dir/data/binlog" --binlog-format=ROW --binlog-row-image=FULL \
    --binlog-row-metadata=FULL --gtid-strict-mode=ON --expire-logs-days=2 \
    --innodb-buffer-pool-size=512M --innodb-log-file-size=256M \
    --innodb-flush-log-at-trx-commit=$flush --sync-binlog=$sync \
    --max-connections=500 --max-allowed-packet=256M --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --log-error="$dir/error.log" ${STOCKSYNC_MARIADB_ARGS:-} >/dev/null 2>&1 &
  for _ in $(seq 1 300); do
    answers && break
    if [ -f "$dir/error.log" ] && grep -q '\[ERROR\]' "$dir/error.log" && ! pgrep -F "$pidfile" >/dev/null 2>&1; then
      tail -20 "$dir/error.log" >&2; exit 1
    fi
    sleep 0.1
  done
  answers || { log "did not answer within 30 s"; tail -20 "$dir/error.log" >&2; exit 1; }
  mariadb --no-defaults --socket="$sock" -uroot <<SQL
CREATE USER IF NOT EXISTS '$user'@'%' IDENTIFIED BY '$pass';
GRANT ALL PRIVILEGES ON *.* TO '$user'@'%' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
  log "ready: $user:$pass@127.0.0.1:$port (pid $(cat "$pidfile"))"
}

stop() {
  [ -f "$pidfile" ] || { log "not running"; return; }
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "pid $pid still running after 30 s, killing"; kill -9 "$pid"; }
  fi
  rm -f "$pidfile"
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  env)
    echo "export STOCKSYNC_TEST_MYSQL_ADDR=127.0.0.1:$port"
    echo "export STOCKSYNC_TEST_MYSQL_USER=$user"
    echo "export STOCKSYNC_TEST_MYSQL_PASSWORD=$pass"
    echo "export STOCKSYNC_TEST_MYSQL_SOCKET=$sock"
    ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
