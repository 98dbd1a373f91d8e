package canal

import (
	"sync"
	"sync/atomic"

	"github.com/go-mysql-org/go-mysql/replication"
)

// rowsDecoder decodes rows events in go-mysql's parser goroutine, except those of tables
// the stream's filter does not match: decoding values is most of the cost of reading a
// binlog, and on a shared server most rows belong to tables no rule reads. Such an event
// keeps what is needed to decode it later, for the reader may see a newer filter (a
// reload) that matches the table after all; the reader then decodes it (take). Events of
// matched tables whose column types a rowsPlan covers are left to the reader as well,
// which decodes them with the plan.
type rowsDecoder struct {
	filter *atomic.Pointer[filterBox]
	// matches caches the filter's answer per table id, for the parser goroutine only.
	matches      map[uint64]tableMatch
	cachedFilter *filterBox

	mu       sync.Mutex
	deferred map[*replication.RowsEvent]undecoded
	skipped  *atomic.Uint64 // rows events left undecoded
}

type tableMatch struct {
	table   *replication.TableMapEvent
	matched bool
	// planned: the reader decodes this table's events with a rowsPlan.
	planned bool
	// decodeAs is table without its signedness metadata: go-mysql builds a map from it
	// for every row image it decodes, so rows are decoded as if every integer were signed
	// and the reader reinterprets the unsigned ones (tableState.uintBits).
	decodeAs *replication.TableMapEvent
}

type undecoded struct {
	pos  int
	data []byte
}

func newRowsDecoder(filter *atomic.Pointer[filterBox], skipped *atomic.Uint64) *rowsDecoder {
	return &rowsDecoder{filter: filter, skipped: skipped, matches: map[uint64]tableMatch{}, deferred: map[*replication.RowsEvent]undecoded{}}
}

// decode is go-mysql's RowsEventDecodeFunc.
func (d *rowsDecoder) decode(e *replication.RowsEvent, data []byte) error {
	pos, err := e.DecodeHeader(data)
	if err != nil {
		return err
	}
	if e.Table == nil {
		return e.DecodeData(pos, data)
	}
	m := d.match(e.TableID, e.Table)
	if m.matched && !m.planned {
		e.Table = m.decodeAs
		return e.DecodeData(pos, data)
	}
	d.mu.Lock()
	d.deferred[e] = undecoded{pos: pos, data: data}
	d.mu.Unlock()
	if !m.matched {
		d.skipped.Add(1)
	}
	return nil
}

func (d *rowsDecoder) match(id uint64, t *replication.TableMapEvent) tableMatch {
	f := d.filter.Load()
	if f != d.cachedFilter {
		clear(d.matches)
		d.cachedFilter = f
	}
	if m, ok := d.matches[id]; ok && m.table == t {
		return m
	}
	m := tableMatch{table: t, matched: f.Matches(string(t.Schema), string(t.Table)), decodeAs: t}
	m.planned = m.matched && planTypes(t)
	if len(t.SignednessBitmap) > 0 {
		// Only what decoding rows reads, copied field by field: the reader fills lazy
		// caches of t (column names, labels) in its own goroutine meanwhile.
		m.decodeAs = &replication.TableMapEvent{TableID: t.TableID, Flags: t.Flags, Schema: t.Schema, Table: t.Table,
			ColumnCount: t.ColumnCount, ColumnType: t.ColumnType, ColumnMeta: t.ColumnMeta, NullBitmap: t.NullBitmap}
	}
	d.matches[id] = m
	return m
}

// take settles a rows event that decode left undecoded: when want is set it decodes it
// now, with plan when that can (the rows are then returned, already in the types a Stream
// hands on), else with go-mysql's decoder into e.Rows. It forgets the event either way.
// Events decode decoded are not its business.
func (d *rowsDecoder) take(e *replication.RowsEvent, typ replication.EventType, want bool, plan rowsPlan) ([][]any, error) {
	d.mu.Lock()
	u, ok := d.deferred[e]
	delete(d.deferred, e)
	d.mu.Unlock()
	if !ok || !want {
		return nil, nil
	}
	if plan != nil {
		if rows, err := plan.decode(typ, e, u.data[u.pos:]); err == nil {
			plannedEvents.Add(1)
			return rows, nil
		}
	}
	return nil, e.DecodeData(u.pos, u.data)
}
