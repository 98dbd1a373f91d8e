#!/usr/bin/env bash
# make demo: a private MariaDB, the inventory schema, `stocksync serve` on the embedded
# development broker, a short stream of stock changes through the inventory API, and what
# stocksync published, printed as it arrives. Ctrl-C stops everything it started (the
# private MariaDB too, unless it was running before) and exits 0.
#
# Ports: STOCKSYNC_MARIADB_PORT (default 33061, see scripts/mariadb.sh),
# STOCKSYNC_DEMO_HTTP_PORT (default 18080), STOCKSYNC_DEMO_BROKER_PORT (default 19092).
# Files: under STOCKSYNC_RUN_DIR (default .run), in demo/ and mariadb/.
# STOCKSYNC_DEMO_BIN: the stocksync binary (default bin/stocksync, which `make demo` builds).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
run=${STOCKSYNC_RUN_DIR:-$root/.run}/demo
bin=${STOCKSYNC_DEMO_BIN:-bin/stocksync}
http_port=${STOCKSYNC_DEMO_HTTP_PORT:-18080}
broker_port=${STOCKSYNC_DEMO_BROKER_PORT:-19092}
mkdir -p "$run"

# On a terminal, each command runs in a process group of its own that has the terminal
# (job control), so Ctrl-C reaches that command alone, not make: the demo then stops what
# it started and exits 0, and so does `make demo`.
[ -t 0 ] && set -m

pids=()
started_db=0
cleaned=0
cleanup() {
  status=$? # not local: after a Ctrl-C inside a function bash may no longer allow it
  set +e
  # 130: a command ended by Ctrl-C, which is how the demo is stopped.
  if [ $status = 130 ]; then status=0; fi
  [ $cleaned = 1 ] && exit $status
  cleaned=1
  echo; echo "demo: stopping"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  if [ $started_db = 1 ]; then scripts/mariadb.sh stop; fi
  exit $status
}
trap cleanup EXIT
trap 'exit 0' INT
trap 'exit 143' TERM

if ! scripts/mariadb.sh status; then
  started_db=1 # before start: a start cut short by Ctrl-C may have left it running
  scripts/mariadb.sh start
fi
eval "$(scripts/mariadb.sh env)"

cfg=$run/stocksync.yaml
cat >"$cfg" <<YAML
source:
  addr: $STOCKSYNC_TEST_MYSQL_ADDR
  user: $STOCKSYNC_TEST_MYSQL_USER
  password: $STOCKSYNC_TEST_MYSQL_PASSWORD
  server_id: 4201
kafka:
  brokers: []                       # the embedded development broker
  dev_broker_addr: 127.0.0.1:$broker_port
checkpoint:
  table: stocksync_demo.checkpoint
rules: $root/examples/rules.yaml
http:
  addr: 127.0.0.1:$http_port
inventory:
  database: inventory
log: {level: info, format: console}
YAML

# Each step is named after a pause, "sleep 1.5; step …": the pause stays out of the
# function, since bash mishandles a Ctrl-C that ends a command inside one under job control.
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# A fresh checkpoint each time: the demo starts at the server's current position instead
# of catching up on whatever the server did since the last demo.
mariadb --no-defaults -h127.0.0.1 -P"${STOCKSYNC_TEST_MYSQL_ADDR##*:}" -u"$STOCKSYNC_TEST_MYSQL_USER" \
  -p"$STOCKSYNC_TEST_MYSQL_PASSWORD" -e "DROP DATABASE IF EXISTS stocksync_demo"

sleep 1.5; step "creating the inventory schema (stocksync migrate up)"
$bin migrate up --config "$cfg"

sleep 1.5; step "starting stocksync serve (log: $run/serve.log)"
$bin serve --config "$cfg" >"$run/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:$http_port/readyz >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$run/serve.log"; exit 1; }
  sleep 0.2
done
curl -fsS http://127.0.0.1:$http_port/readyz

sleep 1.5; step "what stocksync publishes (stocksync tail), as it arrives:"
$bin tail --brokers 127.0.0.1:$broker_port --from-start=false product.stock search.availability inventory.deduction_log inventory.rollback_log &
pids+=($!)
sleep 1

api() {
  local out
  if ! out=$(curl -sS -w '\n%{http_code}' -X "$1" "http://127.0.0.1:$http_port$2" -H 'Content-Type: application/json' ${3:+-d "$3"}); then
    echo "demo: $1 $2 failed"; return
  fi
  case "${out##*$'\n'}" in 2*) ;; *) echo "demo: $1 $2 answered ${out##*$'\n'}: ${out%$'\n'*}" ;; esac
}
n=$(date +%s)
sleep 1.5; step "operators set stock: PHONE 10 over 4 shard rows, CASE 3 over 1"
api POST /v1/skus/PHONE/stock '{"sellable": 10, "shards": 4}'
api POST /v1/skus/CASE/stock '{"sellable": 3, "shards": 1}'
sleep 1.5; step "order A-$n deducts PHONE 2 and CASE 1 (one transaction: all or none)"
api POST /v1/deductions "{\"order_no\": \"A-$n\", \"items\": [{\"sku\": \"PHONE\", \"qty\": 2}, {\"sku\": \"CASE\", \"qty\": 1}]}"
sleep 1.5; step "order B-$n takes the last 2 CASE: CASE sells out, search gets one message"
api POST /v1/deductions "{\"order_no\": \"B-$n\", \"items\": [{\"sku\": \"CASE\", \"qty\": 2}]}"
sleep 1.5; step "order B-$n is refunded before shipment: CASE is back in stock"
api POST "/v1/orders/B-$n/cancel"
sleep 1.5; step "order A-$n is paid and shipped"
api PUT /v1/warehouses/SZ '{"name": "Shenzhen", "address": "Bao an", "type": "central"}'
api POST /v1/physical '[{"sku": "PHONE", "warehouse": "SZ", "qty": 50}, {"sku": "CASE", "warehouse": "SZ", "qty": 20}]'
api POST "/v1/orders/A-$n/confirm"
api POST "/v1/orders/A-$n/ship" '{"warehouse": "SZ"}'
sleep 1.5; step "the search team rebuilt its index: stocksync resync search-in-stock (every SKU's flag, as reads)"
$bin resync --config "$cfg" search-in-stock
sleep 2
sleep 1.5; step "done. Metrics: http://127.0.0.1:$http_port/metrics; inventory API: docs/api.md. Ctrl-C to stop."
# In the foreground, so that on a terminal Ctrl-C ends it alone and the demo goes on to
# stop; without a terminal, SIGINT or SIGTERM ends the wait.
if [ -t 0 ]; then sleep infinity; else sleep infinity & pids+=($!); wait $!; fi
