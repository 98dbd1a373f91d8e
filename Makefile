# stocksync: `make demo` shows it working, `make test` runs the whole suite.
SHELL := /bin/bash
GO ?= go
BIN := bin/stocksync
MARIADB := scripts/mariadb.sh

.PHONY: build test test-unit demo bench bench-inventory soak mariadb-start mariadb-stop lint clean

# The commit, for `stocksync --version` where the toolchain records none (-buildvcs=false,
# a linked worktree): +dirty when the tree has changes, as Go's own vcs.modified says.
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git status --porcelain 2>/dev/null | grep -q . && echo +dirty)

build:
	$(GO) build -ldflags "-X main.stampedRevision=$(REVISION)" -o $(BIN) ./cmd/stocksync

# The README's test command and what CI runs: starts the private MariaDB (installing
# mariadb-server from Debian's packages when missing), then runs every test.
test: mariadb-start
	eval "$$($(MARIADB) env)" && $(GO) vet ./... && $(GO) test -count=1 -timeout 14m -p 2 ./...

test-unit:
	$(GO) test -short -count=1 ./...

# The demo starts the private MariaDB itself when it is not running, so that Ctrl-C,
# which stops what the demo started, stops it too.
demo: build
	STOCKSYNC_DEMO_BIN=$(BIN) scripts/demo.sh

# Catch-up throughput: 1,000,000 row changes from the binlog to broker-acknowledged,
# against the private MariaDB; BENCH_ARGS adds flags (e.g. --exactly-once, --rules FILE, --reuse).
BENCH_SOURCE = eval "$$($(MARIADB) env)" && export STOCKSYNC_SOURCE_ADDR=$$STOCKSYNC_TEST_MYSQL_ADDR \
	STOCKSYNC_SOURCE_USER=$$STOCKSYNC_TEST_MYSQL_USER STOCKSYNC_SOURCE_PASSWORD=$$STOCKSYNC_TEST_MYSQL_PASSWORD
bench: build mariadb-start
	$(BENCH_SOURCE) && $(BIN) bench catchup $(BENCH_ARGS)

# Hot-SKU deductions on durable settings (innodb_flush_log_at_trx_commit=1, sync_binlog=1):
# restarts the private MariaDB durable, and afterwards (also on failure) back to the usual
# settings, since other packages' tests share it.
# FSYNC_DELAY_US=N makes each of the server's fsyncs N µs slower, as on a slower disk
# (scripts/fsync-delay.c); `make bench-inventory FSYNC_DELAY_US=250`.
bench-inventory: mariadb-stop
	STOCKSYNC_DURABLE=1 STOCKSYNC_MARIADB_FSYNC_DELAY_US=$(FSYNC_DELAY_US) $(MARIADB) start
	eval "$$($(MARIADB) env)" && $(GO) test -run '^$$' -bench BenchmarkHotSKU -benchtime 5s -count 3 -timeout 30m ./inventory/; \
		status=$$?; $(MARIADB) stop; $(MARIADB) start; exit $$status

# The consumer contract test, both delivery modes, with SOAK_KILLS more stops of the daemon
# (SIGKILL, every third a SIGTERM) at random moments of the orders: about 25 minutes with 300.
SOAK_KILLS ?= 300
soak: mariadb-start
	eval "$$($(MARIADB) env)" && STOCKSYNC_TEST_SOAK_KILLS=$(SOAK_KILLS) $(GO) test -count=1 -timeout 90m -v \
		-run 'TestConsumersOfTheShippedRulesEndEqualToTheDatabase' ./cmd/stocksync/

mariadb-start:
	$(MARIADB) start

mariadb-stop:
	$(MARIADB) stop

clean:
	rm -rf bin
