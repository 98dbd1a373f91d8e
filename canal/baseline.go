package canal

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	gocanal "github.com/go-mysql-org/go-mysql/canal"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// CountRowsBare is the baseline of the catch-up benchmark: go-mysql's own canal loop,
// parsing every event from `from` until `to` with a handler that only counts the row
// changes of table ("schema.table"), with none of stocksync's work (no conversion, rules,
// encoding or delivery). Other tables' events are skipped, as a rule set that matches
// only table would skip them, so tables dropped since do not stop the loop.
func CountRowsBare(ctx context.Context, cfg Config, flavor, table string, from, to Position) (rows int, err error) {
	c := gocanal.NewDefaultConfig()
	c.Addr, c.User, c.Password, c.Flavor, c.ServerID = cfg.Addr, cfg.User, cfg.Password, flavor, cfg.ServerID
	c.Dump.ExecutionPath = "" // no mysqldump: stream only
	c.TimestampStringLocation = time.UTC
	c.Logger = quietSlog()
	c.IncludeTableRegex = []string{"^" + regexp.QuoteMeta(table) + "$"}
	cn, err := gocanal.NewCanal(c)
	if err != nil {
		return 0, fmt.Errorf("creating the baseline go-mysql canal: %w", err)
	}
	defer cn.Close()
	h := &countingHandler{to: to, file: from.File}
	cn.SetEventHandler(h)
	done := make(chan error, 1)
	go func() { done <- cn.RunFrom(mysql.Position{Name: from.File, Pos: from.Pos}) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		cn.Close()
		<-done
		return h.rows, ctx.Err()
	}
	if errors.Is(err, errReachedEnd) || (err != nil && h.reached) {
		return h.rows, nil
	}
	if err == nil {
		err = errors.New("stopped before the end position")
	}
	return h.rows, fmt.Errorf("running the baseline go-mysql canal: %w", err)
}

var errReachedEnd = errors.New("reached the end position")

type countingHandler struct {
	gocanal.DummyEventHandler
	to      Position
	file    string
	rows    int
	reached bool
}

func (h *countingHandler) OnRotate(_ *replication.EventHeader, e *replication.RotateEvent) error {
	h.file = string(e.NextLogName)
	return nil
}

func (h *countingHandler) OnRow(e *gocanal.RowsEvent) error {
	if e.Action == gocanal.UpdateAction {
		h.rows += len(e.Rows) / 2
	} else {
		h.rows += len(e.Rows)
	}
	return nil
}

func (h *countingHandler) OnXID(_ *replication.EventHeader, next mysql.Position) error {
	if (Position{File: next.Name, Pos: next.Pos}).Compare(h.to) >= 0 {
		h.reached = true
		return errReachedEnd
	}
	return nil
}
