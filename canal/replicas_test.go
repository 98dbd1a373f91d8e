package canal_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/zap/zaptest"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
)

// TestCheckServerIDRefusesAnIDSomeoneElseHas: source.server_id equal to the server's own
// @@server_id is refused; so is one that a replica the server lists has (a real replica,
// or a stocksync daemon of another checkpoint), naming its host. A registration of a
// stream of the same checkpoint (the daemon's own, listed for a while after a kill -9,
// or its standby's) is not someone else's, and a user not permitted SHOW SLAVE HOSTS skips
// that part.
func TestCheckServerIDRefusesAnIDSomeoneElseHas(t *testing.T) {
	s := newSource(t)
	ctx := t.Context()
	log := zaptest.NewLogger(t)
	var own uint32
	if err := s.db.QueryRow("SELECT @@server_id").Scan(&own); err != nil {
		t.Fatal(err)
	}
	cfg := s.cfg
	cfg.Checkpoint = "stocksync/" + s.name + ".checkpoint/default"
	if err := s.server.CheckServerID(ctx, cfg, log); err != nil {
		t.Fatalf("an id no one has: %v", err)
	}
	serversOwn := cfg
	serversOwn.ServerID = own
	if err := s.server.CheckServerID(ctx, serversOwn, log); !errors.Is(err, canal.ErrServerIDTaken) || !strings.Contains(err.Error(), "own @@server_id") {
		t.Errorf("source.server_id %d, the server's own: %v; want ErrServerIDTaken naming @@server_id", own, err)
	}

	// A stream of this checkpoint, as a daemon killed a moment ago left it registered.
	registered := func(host string) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, "the server to list replica "+host, func() bool {
			replicas, err := s.server.Replicas(ctx)
			return err == nil && slices.ContainsFunc(replicas, func(r canal.Replica) bool {
				return r.ServerID == cfg.ServerID && strings.HasPrefix(r.Host, host)
			})
		})
	}
	sctx, stop := context.WithCancel(ctx)
	streamed := make(chan error, 1)
	go func() {
		filter := &countingFilter{schema: s.name, tables: map[string]bool{}, asked: map[string]int{}}
		streamed <- canal.NewStream(cfg, s.server, filter, log).Run(sctx, s.position(), &recorder{})
	}()
	registered("") // whatever host it registered under
	if err := s.server.CheckServerID(ctx, cfg, log); err != nil {
		t.Errorf("with a stream of the same checkpoint registered under the id (a restart after kill -9): %v; want no refusal", err)
	}
	otherCheckpoint := cfg
	otherCheckpoint.Checkpoint += "-other"
	if err := s.server.CheckServerID(ctx, otherCheckpoint, log); !errors.Is(err, canal.ErrServerIDTaken) ||
		!strings.Contains(err.Error(), "a stocksync daemon streaming another checkpoint") {
		t.Errorf("a daemon of another checkpoint with the id of a registered stream: %v; want ErrServerIDTaken naming a stocksync daemon", err)
	}
	stop()
	<-streamed

	// A real replica with the id, which registers under a host name of its own.
	replica := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{ServerID: cfg.ServerID, Flavor: s.server.Flavor,
		Host: strings.Split(cfg.Addr, ":")[0], Port: port(t, cfg.Addr), User: cfg.User, Password: cfg.Password,
		Localhost: "replica-7.example", HeartbeatPeriod: time.Second, Logger: slog.New(slog.DiscardHandler)})
	defer replica.Close()
	now := s.position()
	if _, err := replica.StartSync(mysql.Position{Name: now.File, Pos: now.Pos}); err != nil {
		t.Fatal(err)
	}
	registered("replica-7.example")
	err := s.server.CheckServerID(ctx, cfg, log)
	if !errors.Is(err, canal.ErrServerIDTaken) || !strings.Contains(err.Error(), `host "replica-7.example"`) {
		t.Errorf("a replica registered with the id: %v; want ErrServerIDTaken naming its host", err)
	}
	// The same registration (a plain host name, as a stocksync before the checkpoint's hash
	// registers) while another connection, from the dump's host, holds the checkpoint's
	// lock: the old leader of an upgrade, whose new standby must start.
	lock, err := canal.TryLock(ctx, s.db, cfg.Checkpoint)
	if err != nil || lock == nil {
		t.Fatalf("taking the checkpoint's lock: %v", err)
	}
	if err := s.server.CheckServerID(ctx, cfg, log); err != nil {
		t.Errorf("a plain-host registration with the id while the checkpoint's lock is held (an older stocksync leading): %v; want no refusal", err)
	}
	lock.Release()

	// A user that may not list the replicas: that part is skipped.
	user := testutil.Name("norepl")
	testutil.Exec(t, s.db, "CREATE USER '"+user+"'@'%' IDENTIFIED BY 'pw'", "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '"+user+"'@'%'")
	t.Cleanup(func() { s.db.Exec("DROP USER '" + user + "'@'%'") })
	limited := cfg
	limited.User, limited.Password = user, "pw"
	server, err := canal.Connect(ctx, limited)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if _, err := server.Replicas(ctx); err == nil {
		t.Skip("this server lets a user without REPLICATION MASTER ADMIN list its replicas")
	}
	if err := server.CheckServerID(ctx, limited, log); err != nil {
		t.Errorf("a user not permitted SHOW SLAVE HOSTS: %v; want that part skipped", err)
	}
}

func port(t *testing.T, addr string) uint16 {
	t.Helper()
	p, err := strconv.ParseUint(addr[strings.LastIndexByte(addr, ':')+1:], 10, 16)
	if err != nil {
		t.Fatalf("the port of %s: %v", addr, err)
	}
	return uint16(p)
}
