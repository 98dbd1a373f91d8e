package canal

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// CountRowsBare is the baseline for the catch-up benchmark: go-mysql's own binlog loop
// that parses every event from `from` until `to` and only counts row images, with none of
// stocksync's work (no conversion, rules, encoding or delivery).
func CountRowsBare(ctx context.Context, cfg Config, flavor string, from, to Position) (rows int, err error) {
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return 0, fmt.Errorf("parsing source address %q: %w", cfg.Addr, err)
	}
	port, _ := strconv.ParseUint(portStr, 10, 16)
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID: cfg.ServerID, Flavor: flavor, Host: host, Port: uint16(port), User: cfg.User, Password: cfg.Password,
		TimestampStringLocation: time.UTC, EventCacheCount: 10240, Logger: quietSlog(),
	})
	defer syncer.Close()
	streamer, err := syncer.StartSync(mysql.Position{Name: from.File, Pos: from.Pos})
	if err != nil {
		return 0, fmt.Errorf("starting bare binlog stream at %s: %w", from, err)
	}
	file := from.File
	for {
		ev, err := streamer.GetEvent(ctx)
		if err != nil {
			return rows, fmt.Errorf("reading bare binlog stream: %w", err)
		}
		switch e := ev.Event.(type) {
		case *replication.RotateEvent:
			file = string(e.NextLogName)
		case *replication.RowsEvent:
			rows += len(e.Rows)
			if ev.Header.EventType == replication.UPDATE_ROWS_EVENTv1 || ev.Header.EventType == replication.UPDATE_ROWS_EVENTv2 {
				rows -= len(e.Rows) / 2
			}
		}
		if ev.Header.LogPos != 0 && (Position{File: file, Pos: ev.Header.LogPos}).Compare(to) >= 0 {
			return rows, nil
		}
	}
}
