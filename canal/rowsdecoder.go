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
// reload) that matches the table after all; the reader then decodes it (take).
//
// Events of matched tables whose column types a rowsPlan covers are decoded here with the
// plan the reader last published for their table id (setPlan), so that decoding stays off
// the reader, which also runs the rules. The plan is the reader's: the reader uses these
// rows only when the plan it holds for the event is that same plan, and decodes the event
// itself otherwise (a table it has not described yet, a reload, DDL in between).
type rowsDecoder struct {
	filter *atomic.Pointer[filterBox]
	// matches caches the filter's answer per table id, for the parser goroutine only,
	// for the rows events of one statement: go-mysql hands on a new TableMapEvent for each
	// (it forgets its own at the statement's end), so it is cleared there too. Kept past
	// it, an entry and its TableMapEvent stayed for every table id of the run (each
	// staging table a shop's indexer creates).
	matches      map[uint64]tableMatch
	cachedFilter *filterBox

	mu       sync.Mutex
	deferred map[*replication.RowsEvent]undecoded
	plans    map[uint64]rowsPlan // the reader's plan per table id
	skipped  *atomic.Uint64      // rows events left undecoded
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

// undecoded is a rows event decode left to the reader: its body, and the rows a plan
// decoded from it, if one did.
type undecoded struct {
	pos  int
	data []byte
	rows [][]any
	plan rowsPlan // the plan that decoded rows
}

// decodedAhead counts the rows events whose plan-decoded rows the reader took from the
// parser goroutine.
var decodedAhead atomic.Uint64

func newRowsDecoder(filter *atomic.Pointer[filterBox], skipped *atomic.Uint64) *rowsDecoder {
	return &rowsDecoder{filter: filter, skipped: skipped, matches: map[uint64]tableMatch{}, deferred: map[*replication.RowsEvent]undecoded{}, plans: map[uint64]rowsPlan{}}
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
	if e.Flags&replication.RowsEventStmtEndFlag != 0 {
		defer clear(d.matches)
	}
	m := d.match(e.TableID, e.Table)
	if m.matched && !m.planned {
		e.Table = m.decodeAs
		return e.DecodeData(pos, data)
	}
	u := undecoded{pos: pos, data: data}
	if m.matched {
		d.mu.Lock()
		plan := d.plans[e.TableID]
		d.mu.Unlock()
		// The event's exact type is not at hand here (take checks it); Type folds the
		// compressed and v0 events in, whose rows take then decodes itself.
		if t := e.Type(); plan != nil && t != replication.EnumRowsEventTypeUnknown {
			if rows, err := plan.decodeRows(t == replication.EnumRowsEventTypeUpdate, e, data[pos:]); err == nil {
				u.rows, u.plan = rows, plan
			}
		}
	} else {
		d.skipped.Add(1)
	}
	d.mu.Lock()
	d.deferred[e] = u
	d.mu.Unlock()
	return nil
}

// setPlan publishes the reader's plan for table id (nil: none), for decode to use.
func (d *rowsDecoder) setPlan(id uint64, plan rowsPlan) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if plan == nil {
		delete(d.plans, id)
		return
	}
	d.plans[id] = plan
}

// forgetPlans withdraws every published plan (the reader forgot every table: DDL it
// could not read).
func (d *rowsDecoder) forgetPlans() {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.plans)
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

// take settles a rows event that decode left undecoded. When want is set it returns the
// rows decode got with plan, or decodes the event now: with plan when that can (the rows
// are returned, already in the types a Stream hands on), else with go-mysql's decoder
// into e.Rows. It forgets the event either way. Events decode decoded are not its business.
func (d *rowsDecoder) take(e *replication.RowsEvent, typ replication.EventType, want bool, plan rowsPlan) ([][]any, error) {
	d.mu.Lock()
	u, ok := d.deferred[e]
	delete(d.deferred, e)
	d.mu.Unlock()
	if !ok || !want {
		return nil, nil
	}
	if _, ok := planDecodes(typ); ok && u.rows != nil && samePlan(u.plan, plan) {
		plannedEvents.Add(1)
		decodedAhead.Add(1)
		return u.rows, nil
	}
	if plan != nil {
		if rows, err := plan.decode(typ, e, u.data[u.pos:]); err == nil {
			plannedEvents.Add(1)
			return rows, nil
		}
	}
	return nil, e.DecodeData(u.pos, u.data)
}

// samePlan reports whether a and b are one plan (not merely equal ones).
func samePlan(a, b rowsPlan) bool {
	return len(a) > 0 && len(a) == len(b) && &a[0] == &b[0]
}
