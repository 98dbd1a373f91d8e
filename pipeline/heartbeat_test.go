package pipeline_test

import (
	"database/sql"
	"encoding/json"
	"testing"
	"time"

	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/pipeline"
)

// TestHeartbeatsGoOnWhileNoRuleMatches: with a heartbeat topic, a quiet source still
// sends a heartbeat every interval, keyed by the checkpoint's name, naming a position at
// or past the last transaction; exactly-once, each one
// is committed although nothing else is (a read_committed consumer sees them); at least
// once, heartbeats do not make the daemon save the checkpoint, a write to the source,
// at each one.
func TestHeartbeatsGoOnWhileNoRuleMatches(t *testing.T) {
	inBothDeliveryModes(t, func(t *testing.T, e *env) {
		exactlyOnce := e.exactlyOnce
		e.exec("CREATE TABLE stock_h (sku_id INT PRIMARY KEY, qty INT)")
		hbTopic := e.topic + ".heartbeat"
		e.start(e.rules(stockRules), testutil.ServerID(), func(o *pipeline.Options) {
			o.Heartbeat = pipeline.Heartbeat{Topic: hbTopic, Interval: time.Second}
		})
		e.exec("INSERT INTO stock_h VALUES (1, 1), (2, 2)")
		e.consume(2, 20*time.Second)
		db := e.mysql.Open(t, e.db)
		afterInsert := binlogEnd(t, db)

		heartbeats := func(n int) []heartbeat {
			t.Helper()
			var got []heartbeat
			for _, r := range testutil.Consume(t, e.broker, []string{hbTopic}, n, 30*time.Second, testutil.ConsumeOptions{ReadCommitted: exactlyOnce}) {
				var hb heartbeat
				if err := json.Unmarshal([]byte(r.Value), &hb); err != nil || r.Key != "test" {
					t.Fatalf("heartbeat key %q value %s: %v; want key test and a JSON object", r.Key, r.Value, err)
				}
				got = append(got, hb)
			}
			return got
		}
		// The first heartbeat at or past the inserts, and the binlog's end then.
		var first int
		testutil.Eventually(t, 20*time.Second, "a heartbeat past the inserts", func() bool {
			got := heartbeats(first + 1)
			last := got[len(got)-1]
			if last.File == afterInsert.file && last.Pos >= afterInsert.pos || last.File > afterInsert.file {
				return true
			}
			first = len(got)
			return false
		})
		saved := func() (p binlogPos) {
			t.Helper()
			if err := db.QueryRow("SELECT file, pos FROM checkpoint WHERE name = 'test'").Scan(&p.file, &p.pos); err != nil && !exactlyOnce {
				t.Fatalf("reading the checkpoint: %v", err)
			}
			return p
		}
		quietFrom := saved()
		got := heartbeats(first + 4)
		for i := first + 1; i < len(got); i++ {
			if gap := got[i].TsMs - got[i-1].TsMs; gap < 900 || gap > 5000 {
				t.Errorf("heartbeats %d and %d are %d ms apart, want about the 1 s interval", i-1, i, gap)
			}
			if got[i].Name != "test" || got[i].File == "" || got[i].Pos == 0 {
				t.Errorf("heartbeat %d is %+v, want the checkpoint's name and a position", i, got[i])
			}
		}
		// (Other tests share the server: a binlog rotation of theirs is saved at once.)
		if end := saved(); !exactlyOnce && end.file == quietFrom.file && end != quietFrom {
			t.Errorf("the checkpoint went from %v to %v over three heartbeats of a quiet source: heartbeats made it save", quietFrom, end)
		}
	})
}

// heartbeat is what a heartbeat's value holds, as docs/topics.md describes it.
type heartbeat struct {
	Name  string `json:"name"`
	File  string `json:"file"`
	Pos   uint32 `json:"pos"`
	GTID  string `json:"gtid"`
	TsMs  int64  `json:"ts_ms"`
	LagMs int64  `json:"lag_ms"`
}

type binlogPos struct {
	file string
	pos  uint32
}

// binlogEnd is where the server's binlog ends now.
func binlogEnd(t *testing.T, db *sql.DB) binlogPos {
	t.Helper()
	var p binlogPos
	var doDB, ignoreDB sql.NullString
	if err := db.QueryRow("SHOW MASTER STATUS").Scan(&p.file, &p.pos, &doDB, &ignoreDB); err != nil {
		t.Fatalf("SHOW MASTER STATUS: %v", err)
	}
	return p
}
