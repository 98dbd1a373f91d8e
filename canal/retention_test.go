package canal_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
)

// TestRetentionFollowsGTIDsNotFileNames: on a server whose older binlogs were purged, a
// position with a GTID set is held exactly when the server still has every transaction
// after it, in each replication domain, whatever the position's file is called (another
// server's, as after a failover, or one that exists but no longer holds those
// transactions); a position without GTIDs is still judged by its file.
func TestRetentionFollowsGTIDsNotFileNames(t *testing.T) {
	ps := newPurgeableSource(t, "retention")
	name, db, cfg, server, position := ps.name, ps.db, ps.cfg, ps.server, ps.position
	testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY)", "INSERT INTO t VALUES (1)")
	before := position()
	// After before: one transaction in domain 0, one in domain 7 (a domain before lacks).
	testutil.Exec(t, db, "INSERT INTO t VALUES (2)", "SET SESSION gtid_domain_id = 7; INSERT INTO t VALUES (3); SET SESSION gtid_domain_id = 0")
	beforePurge := position()
	left := testutil.PurgeBinlogs(t, db)
	now := position()
	testutil.Exec(t, db, "INSERT INTO t VALUES (4)")
	end := position()

	retention := func(p canal.Position) canal.BinlogRetention {
		t.Helper()
		r, err := server.Retention(t.Context(), p)
		if err != nil {
			t.Fatalf("Retention(%s): %v", p, err)
		}
		if len(r.Files) != 1 || r.Files[0] != left {
			t.Fatalf("Retention(%s) lists binlogs %v; want only %s, the one left after the purge", p, r.Files, left)
		}
		return r
	}
	domain0Only := func(set string) string {
		for _, g := range strings.Split(set, ",") {
			if strings.HasPrefix(g, "0-") {
				return g
			}
		}
		t.Fatalf("no domain 0 in %q", set)
		return ""
	}
	for _, tc := range []struct {
		name   string
		pos    canal.Position
		held   bool
		byGTID bool
	}{
		{"GTIDs purged, file purged", before, false, true},
		{"GTIDs purged, file of that name still listed", canal.Position{File: left, Pos: 4, GTIDSet: before.GTIDSet}, false, true},
		{"GTIDs held, file another server's", canal.Position{File: "promoted-bin.000042", Pos: 4, GTIDSet: beforePurge.GTIDSet}, true, true},
		{"GTIDs held, file purged", canal.Position{File: beforePurge.File, Pos: beforePurge.Pos, GTIDSet: beforePurge.GTIDSet}, true, true},
		{"current position", now, true, true},
		{"domain 0 held, domain 7 missing and purged", canal.Position{File: left, Pos: 4, GTIDSet: domain0Only(beforePurge.GTIDSet)}, false, true},
		{"no GTIDs, file listed", canal.Position{File: left, Pos: 4}, true, false},
		{"no GTIDs, file purged", canal.Position{File: beforePurge.File, Pos: beforePurge.Pos}, false, false},
	} {
		r := retention(tc.pos)
		if r.Held != tc.held || r.ByGTID != tc.byGTID {
			t.Errorf("%s: Retention(%s) = held %v, by GTID %v; want %v, %v (the oldest binlog begins after %q)",
				tc.name, tc.pos, r.Held, r.ByGTID, tc.held, tc.byGTID, r.Purged)
		}
		// One file left: a held position is in it, one not held in none of them.
		if wantOlder := map[bool]int{true: 0, false: -1}[tc.held]; r.Older != wantOlder {
			t.Errorf("%s: Retention(%s).Older = %d, want %d", tc.name, tc.pos, r.Older, wantOlder)
		}
		if tc.byGTID && !strings.Contains(r.Purged, "7-") {
			t.Errorf("%s: Purged = %q; want the GTID position the oldest binlog begins after, domain 7 included", tc.name, r.Purged)
		}
		// The server's own verdict: a stream from the position reads on, or is refused.
		_, err := runUntil(t.Context(), canal.NewStream(cfg, server, schemaFilter(name), zaptest.NewLogger(t)), tc.pos, end, &recorder{})
		if (err == nil) != tc.held {
			t.Errorf("%s: Retention says held %v, and a stream from %s ended with %v", tc.name, tc.held, tc.pos, err)
		}
	}
}

// TestRetentionCountsTheFilesOlderThanAPosition: Older is how many binlog files a purge
// may take before it takes the position's next change. A position with a GTID set is
// placed by its transactions (each file's Gtid_list), so a checkpoint of another
// server's file name is counted right after a failover; one without, by its file name.
func TestRetentionCountsTheFilesOlderThanAPosition(t *testing.T) {
	ps := newPurgeableSource(t, "older")
	db, server, position := ps.db, ps.server, ps.position
	testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY)")
	testutil.PurgeBinlogs(t, db)
	// Three files, each with a position after its first transaction and a second
	// transaction after that; the third is the one being written.
	var inFile []canal.Position
	for i := range 3 {
		if i > 0 {
			testutil.Exec(t, db, "FLUSH BINARY LOGS")
		}
		testutil.Exec(t, db, fmt.Sprintf("INSERT INTO t VALUES (%d)", 2*i))
		inFile = append(inFile, position())
		testutil.Exec(t, db, fmt.Sprintf("INSERT INTO t VALUES (%d)", 2*i+1))
	}
	files, err := server.BinlogFiles(t.Context())
	if err != nil || len(files) != 3 {
		t.Fatalf("binlogs %v (%v), want 3", files, err)
	}
	for i, p := range inFile {
		if p.File != files[i] || p.GTIDSet == "" {
			t.Fatalf("position %d is %s, want one with GTIDs in %s", i, p, files[i])
		}
	}
	for _, tc := range []struct {
		name  string
		pos   canal.Position
		older int
	}{
		{"in the oldest file", inFile[0], 0},
		{"in the middle file", inFile[1], 1},
		{"in the file being written", inFile[2], 2},
		{"in the middle file, by GTID, under another server's file name", canal.Position{File: "promoted-bin.000042", Pos: 4, GTIDSet: inFile[1].GTIDSet}, 1},
		{"in the file being written, by GTID, under the name of another server's first file", canal.Position{File: "promoted-bin.000001", Pos: 4, GTIDSet: inFile[2].GTIDSet}, 2},
		{"no GTIDs, the middle file", canal.Position{File: files[1], Pos: inFile[1].Pos}, 1},
		{"no GTIDs, a file not listed", canal.Position{File: "promoted-bin.000042", Pos: 4}, -1},
	} {
		r, err := server.Retention(t.Context(), tc.pos)
		if err != nil {
			t.Fatalf("%s: Retention(%s): %v", tc.name, tc.pos, err)
		}
		if r.Older != tc.older {
			t.Errorf("%s: Retention(%s).Older = %d, want %d (binlogs %v)", tc.name, tc.pos, r.Older, tc.older, r.Files)
		}
	}
}

// newPurgeableSource is a source on a MariaDB of the test's own, whose binlogs it may
// purge.
func newPurgeableSource(t *testing.T, prefix string) *source {
	t.Helper()
	return newSourceOn(t, testutil.StartPrivateMariaDB(t, "").MySQL, prefix)
}

// TestRetentionRefusesAPositionOfARewoundHistory: after RESET MASTER (as after a restored
// backup or a rebuilt primary) a checkpoint of the old history is refused with
// ErrNotInHistory, naming it, why and what to do: while its file is newer
// than the newest the server has, with fewer transactions than its GTID (where a stream
// from it fails with the server's ERROR 1236, which names it too) and with more (where a
// resume by GTID would follow the new history's transactions of the same numbers and skip
// the rest), and once the file of its name is back, at other GTIDs. A position of the new
// history, another server's file name, and the old checkpoint with its file cleared (a
// failover to a promoted replica of the same binlog names) are held.
func TestRetentionRefusesAPositionOfARewoundHistory(t *testing.T) {
	ps := newPurgeableSource(t, "rewound")
	db, server := ps.db, ps.server
	testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY, n INT)", "INSERT INTO t VALUES (1, 0)")
	for range 3 {
		testutil.Exec(t, db, "FLUSH BINARY LOGS", "UPDATE t SET n = n + 1")
	}
	checkpoint := ps.position()
	var seq int
	if _, err := fmt.Sscanf(checkpoint.GTIDSet, "0-1-%d", &seq); err != nil || strings.Contains(checkpoint.GTIDSet, ",") {
		t.Fatalf("checkpoint %s: want one GTID of domain 0 (%v)", checkpoint, err)
	}
	if r, err := server.Retention(t.Context(), checkpoint); err != nil || !r.Held {
		t.Fatalf("Retention(%s) before the reset = held %v, %v; want held", checkpoint, r.Held, err)
	}
	update := func(times int) {
		t.Helper()
		for range times {
			testutil.Exec(t, db, "UPDATE t SET n = n + 1")
		}
	}
	// Each check on a connection of its own, as each start has: one remembers the files in
	// which it found a position of the history (server: the checkpoint's, before the reset).
	retention := func(pos canal.Position) (canal.BinlogRetention, error) {
		t.Helper()
		fresh, err := canal.Connect(t.Context(), ps.cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer fresh.Close()
		return fresh.Retention(t.Context(), pos)
	}
	refused := func(what string, pos canal.Position, want ...string) {
		t.Helper()
		_, err := retention(pos)
		if !errors.Is(err, canal.ErrNotInHistory) {
			t.Fatalf("%s: Retention(%s) = %v; want ErrNotInHistory", what, pos, err)
		}
		for _, w := range append(want, pos.String(), "RESET MASTER", "stocksync checkpoint set --current", "docs/operations.md, The checkpoint: History rewound") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: the error lacks %q: %v", what, w, err)
			}
		}
	}

	testutil.Exec(t, db, "RESET MASTER")
	update(1)
	refused("fewer transactions than the checkpoint's GTID", checkpoint, "its file "+checkpoint.File+" is newer than the server's newest binlog, binlog.000001")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err := canal.NewStream(ps.cfg, server, schemaFilter(ps.name), zaptest.NewLogger(t)).Run(ctx, checkpoint, &recorder{})
	for _, w := range []string{"reading binlog after " + checkpoint.String() + ":", "1236", "the server's binlogs do not hold what follows " + checkpoint.String(),
		"RESET MASTER", "source.addr now names another server"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("a stream from %s after RESET MASTER ended with %v; want it to say %q", checkpoint, err, w)
		}
	}

	update(seq + 5)
	refused("more transactions than the checkpoint's GTID", checkpoint, "is newer than the server's newest binlog")
	for range 3 {
		testutil.Exec(t, db, "FLUSH BINARY LOGS", "UPDATE t SET n = n + 1")
	}
	now := ps.position()
	if now.File != checkpoint.File {
		t.Fatalf("the new history is in %s; want it back at the checkpoint's file name %s", now.File, checkpoint.File)
	}
	// A position between two events of the new file (the checkpoint's own, here: the same
	// statements wrote the same bytes), after other transactions.
	atOtherGTIDs := canal.Position{File: checkpoint.File, Pos: now.Pos, GTIDSet: checkpoint.GTIDSet}
	refused("the file of its name back, at other GTIDs", atOtherGTIDs,
		fmt.Sprintf("the server's binlog %s at %d follows GTID %s, not %s", checkpoint.File, now.Pos, now.GTIDSet, checkpoint.GTIDSet))
	inAnEvent := canal.Position{File: checkpoint.File, Pos: checkpoint.Pos + 1, GTIDSet: checkpoint.GTIDSet}
	refused("the file of its name back, no event ending at the position", inAnEvent,
		fmt.Sprintf("the server's binlog %s has no event that ends at %d", checkpoint.File, inAnEvent.Pos))
	// Without GTIDs (as a server without them keeps a checkpoint), by the file alone.
	pastItsEnd := canal.Position{File: checkpoint.File, Pos: now.Pos + 100000}
	refused("no GTIDs, the file of its name back, shorter than the position", pastItsEnd,
		fmt.Sprintf("the server's binlog %s ends at ", checkpoint.File), "before its position")
	refused("no GTIDs, the file of its name back, no event beginning at the position", canal.Position{File: checkpoint.File, Pos: 5}, // inside its Format_desc
		fmt.Sprintf("no event of the server's binlog %s begins at 5", checkpoint.File))
	if d, err := server.Behind(t.Context(), pastItsEnd, now, nil); err != nil || d.Bytes != -1 || d.Files != -1 {
		t.Errorf("Behind(%s, %s) = %+v, %v; want no distance in bytes or files (-1), not 0", pastItsEnd, now, d, err)
	}

	cleared := canal.Position{GTIDSet: checkpoint.GTIDSet} // as operations.md has a DBA clear it after a failover
	for _, pos := range []canal.Position{now, {File: "promoted-bin.000042", Pos: 4, GTIDSet: checkpoint.GTIDSet}, cleared} {
		if r, err := retention(pos); err != nil || !r.Held {
			t.Errorf("Retention(%s) = held %v, %v; want held", pos, r.Held, err)
		}
	}
	update(1)
	if _, err := runUntil(t.Context(), canal.NewStream(ps.cfg, server, schemaFilter(ps.name), zaptest.NewLogger(t)), cleared, ps.position(), &recorder{}); err != nil {
		t.Errorf("a stream from the checkpoint with its file cleared: %v", err)
	}
}

// TestCurrentPositionIsOneInstant: the position a first start saves is read while other
// sessions commit; its GTID set is the one at its file and position (BINLOG_GTID_POS), so
// that the check of a checkpoint against the server's history holds for it, and a resume
// by GTID skips no transaction committed between reading the one and the other.
func TestCurrentPositionIsOneInstant(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE busy (id INT AUTO_INCREMENT PRIMARY KEY)")
	ctx, stop := context.WithCancel(t.Context())
	writing := make(chan error, 1)
	go func() {
		defer close(writing)
		for ctx.Err() == nil {
			if _, err := s.db.ExecContext(ctx, "INSERT INTO busy VALUES ()"); err != nil && ctx.Err() == nil {
				writing <- err
				return
			}
		}
	}()
	defer func() {
		stop()
		if err := <-writing; err != nil {
			t.Errorf("writing meanwhile: %v", err)
		}
	}()
	for i := range 50 {
		p := s.position()
		var at string
		if err := s.db.QueryRow("SELECT BINLOG_GTID_POS(?, ?)", p.File, p.Pos).Scan(&at); err != nil {
			t.Fatalf("BINLOG_GTID_POS of %s: %v", p, err)
		}
		if at != p.GTIDSet {
			t.Fatalf("read %d: CurrentPosition = %s, but the server's binlog at %s:%d follows GTID %s", i, p, p.File, p.Pos, at)
		}
	}
}

// TestRetentionTakesAnotherServersPositionByGTID: a checkpoint whose transactions another
// server wrote (the primary before a failover to this one, whose binlogs had the same
// names) is placed by its GTIDs alone: its file name and offset, which in this server's
// file of that name follow other GTIDs, do not make it "not in the history". The same
// position with this server's own GTIDs is refused.
func TestRetentionTakesAnotherServersPositionByGTID(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE t (id INT PRIMARY KEY)", "INSERT INTO t VALUES (1)")
	at := s.position()
	var own, other []string
	for _, g := range strings.Split(at.GTIDSet, ",") { // domain-server-sequence
		var domain, server, seq uint64
		if _, err := fmt.Sscanf(g, "%d-%d-%d", &domain, &server, &seq); err != nil {
			t.Fatalf("the server's position %s: %v", at, err)
		}
		own = append(own, fmt.Sprintf("%d-%d-%d", domain, server, seq-1))
		other = append(other, fmt.Sprintf("%d-%d-%d", domain, server+1000, seq))
	}
	failover := canal.Position{File: at.File, Pos: at.Pos, GTIDSet: strings.Join(other, ",")}
	if _, err := s.server.Retention(t.Context(), failover); err != nil {
		t.Errorf("another server's transactions under this server's file name: %v; want them placed by GTID", err)
	}
	rewound := canal.Position{File: at.File, Pos: at.Pos, GTIDSet: strings.Join(own, ",")}
	if _, err := s.server.Retention(t.Context(), rewound); !errors.Is(err, canal.ErrNotInHistory) {
		t.Errorf("this server's own GTIDs at a position that follows others: %v; want ErrNotInHistory", err)
	}
}

// TestPastPurgedSaveSkipsOnlyTheCheckpointsOwnSave: a checkpoint is followed in the
// binlog by the save that wrote it. When a rotation and purge took that save alone, the
// stream resumes where the oldest binlog begins (the server refuses the checkpoint's own
// GTIDs, ERROR 1236), and reads on from there. Not when a change of another table was
// purged too, nor when the one purged is another table's change and the save is still in
// the binlogs (the binlog rotated between the two): that change would be lost.
func TestPastPurgedSaveSkipsOnlyTheCheckpointsOwnSave(t *testing.T) {
	ps := newPurgeableSource(t, "pastsave")
	db, server, position := ps.db, ps.server, ps.position
	ctx := t.Context()
	store, err := canal.NewCheckpointStore(ctx, db, ps.name+".checkpoint", "default")
	if err != nil {
		t.Fatal(err)
	}
	testutil.Exec(t, db, "CREATE TABLE t (id INT PRIMARY KEY)")
	saveAt := func() canal.Position {
		t.Helper()
		p := position()
		if err := store.Save(ctx, p, []canal.StateRow{{Scope: "r", Key: "k", Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	purgeUpTo := func(file string) { // the binlogs before file, as a DBA's PURGE BINARY LOGS TO
		t.Helper()
		testutil.Eventually(t, 30*time.Second, "PURGE BINARY LOGS TO "+file, func() bool {
			testutil.Exec(t, db, "PURGE BINARY LOGS TO '"+file+"'")
			files, err := server.BinlogFiles(ctx)
			return err == nil && len(files) > 0 && files[0] == file
		})
	}
	pastPurgedSave := func(p canal.Position) (canal.Position, bool) {
		t.Helper()
		r, err := server.Retention(ctx, p)
		if err != nil {
			t.Fatalf("Retention(%s): %v", p, err)
		}
		next, ok, err := server.PastPurgedSave(ctx, p, r, store.Tables())
		if err != nil {
			t.Fatalf("PastPurgedSave(%s): %v", p, err)
		}
		return next, ok
	}

	testutil.Exec(t, db, "INSERT INTO t VALUES (1)")
	alone := saveAt()
	left := testutil.PurgeBinlogs(t, db)
	next, ok := pastPurgedSave(alone)
	if now := position(); !ok || next.File != left || next.GTIDSet != now.GTIDSet {
		t.Fatalf("only the save after %s purged: PastPurgedSave = %s, %v; want the start of %s, at GTID %s", alone, next, ok, left, now.GTIDSet)
	}
	if r, err := server.Retention(ctx, next); err != nil || !r.Held {
		t.Fatalf("Retention(%s) = %+v, %v: want held", next, r, err)
	}
	testutil.Exec(t, db, "INSERT INTO t VALUES (2)")
	end := position()
	got, err := runUntil(ctx, canal.NewStream(ps.cfg, server, schemaFilter(ps.name), zaptest.NewLogger(t)), next, end, &recorder{})
	if err != nil || len(got) != 1 {
		t.Fatalf("a stream from %s: %d changes, %v; want the one insert after it", next, len(got), err)
	}

	withAChange := saveAt()
	testutil.Exec(t, db, "INSERT INTO t VALUES (3)")
	testutil.PurgeBinlogs(t, db)
	if next, ok := pastPurgedSave(withAChange); ok {
		t.Errorf("a change of t purged with the save: PastPurgedSave = %s, want not held", next)
	}

	beforeChange := position()
	testutil.Exec(t, db, "INSERT INTO t VALUES (4)", "FLUSH BINARY LOGS")
	if err := store.Save(ctx, beforeChange, nil); err != nil { // after the rotation, in the file kept
		t.Fatal(err)
	}
	purgeUpTo(position().File)
	if next, ok := pastPurgedSave(beforeChange); ok {
		t.Errorf("a change of t purged, the save kept: PastPurgedSave = %s, want not held", next)
	}
}
