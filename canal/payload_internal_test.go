package canal

import (
	"context"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/zap"
)

type commitRecorder struct{ commits []Position }

func (c *commitRecorder) Row(context.Context, *RowChange) error { return nil }
func (c *commitRecorder) Idle(context.Context) error            { return nil }
func (c *commitRecorder) Commit(_ context.Context, p Position) error {
	c.commits = append(c.commits, p)
	return nil
}

// TestCompressedTransactionIsRead: MySQL 8.0.20+ with binlog_transaction_compression=ON
// writes each transaction as its GTID event and one TRANSACTION_PAYLOAD_EVENT, whose
// events (table maps, rows, the Xid) go-mysql decompresses into Events, without positions
// of their own. They are read as the transaction's, and it ends where the payload ends.
func TestCompressedTransactionIsRead(t *testing.T) {
	h := &commitRecorder{}
	r := &reader{s: &Stream{log: zap.NewNop()}, h: h, file: "binlog.000001", pos: 4, tables: map[uint64]*tableState{}, rowsOf: map[uint64]int{}}
	gtid := &replication.BinlogEvent{Header: &replication.EventHeader{LogPos: 200, EventSize: 79, ServerID: 1},
		Event: &replication.GTIDEvent{SID: make([]byte, 16), GNO: 7}}
	if err := r.handle(t.Context(), gtid); err != nil {
		t.Fatal(err)
	}
	xid := &replication.BinlogEvent{Header: &replication.EventHeader{EventSize: 31, ServerID: 1}, Event: &replication.XIDEvent{XID: 9}}
	payload := &replication.BinlogEvent{Header: &replication.EventHeader{LogPos: 400, EventSize: 200, ServerID: 1},
		Event: &replication.TransactionPayloadEvent{Events: []*replication.BinlogEvent{xid}}}
	if err := r.handle(t.Context(), payload); err != nil {
		t.Fatal(err)
	}
	if len(h.commits) != 1 || h.commits[0].File != "binlog.000001" || h.commits[0].Pos != 400 {
		t.Fatalf("commits %+v; want one, at binlog.000001:400 where the payload ends", h.commits)
	}
}
