#!/usr/bin/env bash
# make demo: a private MariaDB, the inventory schema, `stocksync serve` on the embedded
# development broker, a short stream of stock changes through the inventory API, and what
# stocksync published, printed as it arrives. Ctrl-C stops everything it started.
#
# Ports: STOCKSYNC_MARIADB_PORT (default 33061, see scripts/mariadb.sh),
# STOCKSYNC_DEMO_HTTP_PORT (default 18080), STOCKSYNC_DEMO_BROKER_PORT (default 19092).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
run=.run/demo
bin=bin/stocksync
http_port=${STOCKSYNC_DEMO_HTTP_PORT:-18080}
broker_port=${STOCKSYNC_DEMO_BROKER_PORT:-19092}
mkdir -p "$run"

started_db=0
if ! scripts/mariadb.sh status; then scripts/mariadb.sh start; started_db=1; fi
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
rules: ../../examples/rules.yaml
http:
  addr: 127.0.0.1:$http_port
inventory:
  database: inventory
log: {level: info, format: console}
YAML

pids=()
cleaned=0
cleanup() {
  [ $cleaned = 1 ] && return
  cleaned=1
  echo; echo "demo: stopping"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $started_db = 1 ]; then scripts/mariadb.sh stop; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { sleep 1.5; printf '\n\033[1m== %s\033[0m\n' "$*"; }

# A fresh checkpoint each time: the demo starts at the server's current position instead
# of catching up on whatever the server did since the last demo.
mariadb --no-defaults -h127.0.0.1 -P"${STOCKSYNC_TEST_MYSQL_ADDR##*:}" -u"$STOCKSYNC_TEST_MYSQL_USER" \
  -p"$STOCKSYNC_TEST_MYSQL_PASSWORD" -e "DROP DATABASE IF EXISTS stocksync_demo"

step "creating the inventory schema (stocksync migrate up)"
$bin migrate up --config "$cfg"

step "starting stocksync serve (log: $run/serve.log)"
$bin serve --config "$cfg" >"$run/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:$http_port/readyz >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$run/serve.log"; exit 1; }
  sleep 0.2
done
curl -fsS http://127.0.0.1:$http_port/readyz

step "what stocksync publishes (stocksync tail), as it arrives:"
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
step "operators set stock: PHONE 10 over 4 shard rows, CASE 3 over 1"
api POST /v1/skus/PHONE/stock '{"sellable": 10, "shards": 4}'
api POST /v1/skus/CASE/stock '{"sellable": 3, "shards": 1}'
step "order A-$n deducts PHONE 2 and CASE 1 (one transaction: all or none)"
api POST /v1/deductions "{\"order_no\": \"A-$n\", \"items\": [{\"sku\": \"PHONE\", \"qty\": 2}, {\"sku\": \"CASE\", \"qty\": 1}]}"
step "order B-$n takes the last 2 CASE: CASE sells out, search gets one message"
api POST /v1/deductions "{\"order_no\": \"B-$n\", \"items\": [{\"sku\": \"CASE\", \"qty\": 2}]}"
step "order B-$n is refunded before shipment: CASE is back in stock"
api POST "/v1/orders/B-$n/cancel"
step "order A-$n is paid and shipped"
api PUT /v1/warehouses/SZ '{"name": "Shenzhen", "address": "Bao an", "type": "central"}'
api POST /v1/physical '[{"sku": "PHONE", "warehouse": "SZ", "qty": 50}, {"sku": "CASE", "warehouse": "SZ", "qty": 20}]'
api POST "/v1/orders/A-$n/confirm"
api POST "/v1/orders/A-$n/ship" '{"warehouse": "SZ"}'
step "the search team rebuilt its index: stocksync resync search-in-stock (every SKU's flag, as reads)"
$bin resync --config "$cfg" search-in-stock
sleep 2
step "done. Metrics: http://127.0.0.1:$http_port/metrics; inventory API: docs/api.md. Ctrl-C to stop."
wait
