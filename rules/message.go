package rules

import (
	"bytes"
	"context"
	"fmt"
	"strconv"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/rules/rulefmt"
	"github.com/stocksync/stocksync/sinks"
)

// rowMessage encodes one row rule's message for c in the rule's format, for topic.
func (e *Engine) rowMessage(rp *rulePlan, c *canal.RowChange, topic string) sinks.Message {
	r := rp.rule
	b := e.buf[:0]
	switch r.format {
	case FormatCanal:
		b = e.appendCanalRow(b, rp, c)
	case FormatMaxwell:
		b = e.appendMaxwellRow(b, rp, c)
	default:
		b = e.appendDebeziumRow(b, rp, c)
	}
	e.buf = b
	key := e.appendRowKey(e.tmp[:0], rp, c)
	e.tmp = key
	return e.finish(r, c, key, b, topic)
}

// movesRow reports whether update c moves its row, for row rule rp, to another message
// key or topic: a column of the key (or key template) or of the topic template holds
// another value after than before, and the key or the topic it makes differs. Such an
// update is published as its two halves (emitMove); any other as one u. The columns are
// compared first, so that an update that leaves them alone costs a few comparisons.
func (e *Engine) movesRow(rp *rulePlan, c *canal.RowChange) bool {
	if c.Op != canal.OpUpdate || c.Before == nil || c.After == nil {
		return false
	}
	moved := false
	for _, i := range rp.placeIdx {
		if !valuesEqual(c.Before[i], c.After[i]) {
			moved = true
			break
		}
	}
	if !moved {
		return false
	}
	before := beforeImage(c)
	if !bytes.Equal(e.appendRowKey(nil, rp, before), e.appendRowKey(nil, rp, c)) {
		return true
	}
	r := rp.rule
	return r.topic == "" && !bytes.Equal(appendTemplate(nil, r.topicParts, rp.topicIdx, before), appendTemplate(nil, r.topicParts, rp.topicIdx, c))
}

// beforeImage is update c as seen through its before image: what the key and topic of
// the row were.
func beforeImage(c *canal.RowChange) *canal.RowChange {
	b := *c
	b.After = nil
	return &b
}

// emitMove publishes update c, which moves its row to another key or topic (movesRow), as
// Debezium publishes a primary key's change: a delete of the before image under the old
// key and topic, then an insert of the after image under the new ones, each in the
// rule's format and with the change's source. A single u under the new key would leave
// the old key's last message, on a compacted topic for ever, a row that no longer exists
// there. Each half's topic is filled and checked as any message's ({op} is delete, then
// insert); a half whose topic fails is not published. Computed fields see the update as
// it is (op "update", changed()), each half its own image as row.
func (e *Engine) emitMove(ctx context.Context, rp *rulePlan, c *canal.RowChange, out Emitter) error {
	e.prepareEnv(c, rp.table) // from the update, before its halves could be taken for it
	gone, came := *c, *c
	gone.Op, gone.After = canal.OpDelete, nil
	came.Op, came.Before = canal.OpCreate, nil
	for _, half := range [...]*canal.RowChange{&gone, &came} {
		topic, ok := e.rowTopic(rp, half)
		if !ok {
			continue
		}
		if err := out.Emit(ctx, e.rowMessage(rp, half, topic)); err != nil {
			return err
		}
	}
	return nil
}

// finish copies key and value into one new allocation owned by the message.
func (e *Engine) finish(r *Rule, c *canal.RowChange, key, value []byte, topic string) sinks.Message {
	out := make([]byte, len(key)+len(value))
	copy(out, key)
	copy(out[len(key):], value)
	m := sinks.Message{Topic: topic, Value: out[len(key):]}
	if key != nil {
		m.Key = out[:len(key):len(key)]
	}
	m.Headers = e.headers(r, &c.Source)
	return m
}

// rowTopic is the topic of rule rp's message for c: its template filled in. A topic Kafka
// would refuse (a placeholder empty or holding a character not allowed in a topic name,
// or the whole too long) is a failure of the rule, counted and logged like an
// expression's: false, and no message.
func (e *Engine) rowTopic(rp *rulePlan, c *canal.RowChange) (string, bool) {
	return e.fillTopic(rp.rule, c.Table, "", func(b []byte, i int, p rulefmt.TemplatePart) []byte {
		return appendTemplatePart(b, p, rp.topicIdx[i], c)
	})
}

// fillTopic fills rule r's topic template in: literal text as it is (checked at load),
// each placeholder's value by value, checked with checkPlaceholder, and then the whole
// name's shape. A topic Kafka would refuse is a failure of the rule (evalFailed, naming
// table and, for an aggregate, the group's key): "", false.
func (e *Engine) fillTopic(r *Rule, table *canal.Table, groupKey string, value func(b []byte, i int, p rulefmt.TemplatePart) []byte) (string, bool) {
	if r.topic != "" {
		return r.topic, true
	}
	b := e.topicBuf[:0]
	var err error
	for i, p := range r.topicParts {
		if !p.Var {
			b = append(b, p.Text...)
			continue
		}
		start := len(b)
		b = value(b, i, p)
		if err = checkPlaceholder(p.Text, b[start:]); err != nil {
			break
		}
	}
	e.topicBuf = b
	var name string
	if err == nil {
		name = string(b)
		err = rulefmt.CheckTopicShape(name)
	}
	if err != nil {
		if groupKey != "" {
			err = fmt.Errorf("group %s: %w", groupKey, err)
		}
		e.evalFailed(r, table, "topic", err)
		return "", false
	}
	return name, true
}

// checkPlaceholder reports a topic placeholder whose value cannot be part of a topic
// name: empty (NULL or the empty string), or holding a character Kafka refuses.
func checkPlaceholder(name string, value []byte) error {
	if len(value) == 0 {
		return fmt.Errorf("{%s} is empty (NULL or '')", name)
	}
	if err := rulefmt.CheckTopicText(string(value)); err != nil {
		return fmt.Errorf("{%s} is %q: %w", name, value, err)
	}
	return nil
}

// appendTemplate appends a key template filled from c: columns of the current image as
// plain text.
func appendTemplate(b []byte, parts []rulefmt.TemplatePart, idx []int, c *canal.RowChange) []byte {
	for i, p := range parts {
		b = appendTemplatePart(b, p, idx[i], c)
	}
	return b
}

// appendTemplatePart appends one part of a topic or key template, resolved to idx
// (templateIndexes).
func appendTemplatePart(b []byte, p rulefmt.TemplatePart, idx int, c *canal.RowChange) []byte {
	switch idx {
	case topicLiteral:
		return append(b, p.Text...)
	case topicSchema:
		return append(b, c.Table.Schema...)
	case topicTable:
		return append(b, c.Table.Name...)
	case topicOp:
		return append(b, c.Op.Name()...)
	}
	return appendRaw(b, c.Table.Columns[idx].Kind, c.Value(idx))
}

// appendRaw appends a value as plain text (for topics).
func appendRaw(b []byte, k canal.ColumnKind, v any) []byte {
	switch x := v.(type) {
	case nil:
		return b
	case string:
		return append(b, x...)
	case []byte:
		return append(b, x...)
	}
	return appendValue(b, k, v, styleTyped)
}

// appendRowKey appends the key of the current image: the key template filled in, or the
// key columns as a JSON object; nil for no key.
func (e *Engine) appendRowKey(b []byte, rp *rulePlan, c *canal.RowChange) []byte {
	if rp.rule.keyParts != nil {
		return appendTemplate(b, rp.rule.keyParts, rp.keyTemplateIdx, c)
	}
	if len(rp.keyIdx) == 0 {
		return nil
	}
	img := c.After
	if img == nil {
		img = c.Before
	}
	b = append(b, '{')
	for i, idx := range rp.keyIdx {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, rp.keyKeys[i]...)
		b = appendValue(b, c.Table.Columns[idx].Kind, img[idx], styleTyped)
	}
	return append(b, '}')
}

// appendImage appends one row image as a JSON object of the rule's fields (all columns
// by default), or null.
func (e *Engine) appendImage(b []byte, rp *rulePlan, c *canal.RowChange, img []any, style valueStyle) []byte {
	if img == nil {
		return append(b, "null"...)
	}
	t := c.Table
	b = append(b, '{')
	if rp.fieldIdx == nil {
		for i, col := range t.Columns {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, rp.table.colKeys[i]...)
			b = appendValue(b, col.Kind, img[i], style)
		}
		return append(b, '}')
	}
	for i, idx := range rp.fieldIdx {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, rp.fieldKeys[i]...)
		b = e.appendField(b, rp, i, idx, c, img, style)
	}
	return append(b, '}')
}

func (e *Engine) appendField(b []byte, rp *rulePlan, i, idx int, c *canal.RowChange, img []any, style valueStyle) []byte {
	if idx >= 0 {
		return appendValue(b, c.Table.Columns[idx].Kind, img[idx], style)
	}
	e.prepareEnv(c, rp.table)
	if sameSlice(img, c.Before) {
		e.env.Row = e.env.Before
	} else {
		e.env.Row = e.env.After
	}
	v, err := e.vm.Run(rp.rule.fields[i].prog, &e.env)
	if err != nil {
		e.evalFailed(rp.rule, c.Table, "fields."+rp.rule.fields[i].name, err)
		v = nil
	}
	if style == styleStrings {
		return appendAnyString(b, v)
	}
	return appendAny(b, v)
}

func sameSlice(a, b []any) bool {
	return len(a) > 0 && len(b) > 0 && &a[0] == &b[0]
}

// appendChanged appends the before values of the fields whose value differs between
// before and after, as an object: {} when none does (an update of columns the rule does
// not write; Maxwell's and Canal's readers, Flink's among them, need the object).
func (e *Engine) appendChanged(b []byte, rp *rulePlan, c *canal.RowChange, style valueStyle) []byte {
	b = append(b, '{')
	n := 0
	var bv, av []byte
	add := func(key []byte) {
		if bytes.Equal(bv, av) {
			return
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, key...)
		b = append(b, bv...)
	}
	if rp.fieldIdx == nil {
		for i, col := range c.Table.Columns {
			if valuesEqual(c.Before[i], c.After[i]) {
				continue
			}
			bv = appendValue(bv[:0], col.Kind, c.Before[i], style)
			av = appendValue(av[:0], col.Kind, c.After[i], style)
			add(rp.table.colKeys[i])
		}
	} else {
		for i, idx := range rp.fieldIdx {
			bv = e.appendField(bv[:0], rp, i, idx, c, c.Before, style)
			av = e.appendField(av[:0], rp, i, idx, c, c.After, style)
			add(rp.fieldKeys[i])
		}
	}
	return append(b, '}')
}

func (e *Engine) appendDebeziumSource(b []byte, s *canal.Source, ti *tableInfo) []byte {
	b = append(b, `"source":{"server_id":`...)
	id := s.ServerID
	if id == 0 {
		id = e.serverID
	}
	b = strconv.AppendUint(b, uint64(id), 10)
	b = append(b, `,"gtid":`...)
	if s.GTID == "" {
		b = append(b, "null"...)
	} else {
		b = appendString(b, s.GTID)
	}
	b = append(b, `,"file":`...)
	b = appendString(b, s.File)
	b = append(b, `,"pos":`...)
	b = strconv.AppendUint(b, uint64(s.Pos), 10)
	b = append(b, ti.dbTable...)
	b = append(b, `,"ts_ms":`...)
	b = strconv.AppendInt(b, s.TsMs, 10)
	b = append(b, `,"row":`...)
	b = strconv.AppendInt(b, int64(s.Row), 10)
	if s.Snapshot {
		b = append(b, `,"snapshot":true`...)
	}
	return append(b, '}')
}

// appendDebeziumRow: {"op":"u","before":{…},"after":{…},"source":{…},"ts_ms":N}.
func (e *Engine) appendDebeziumRow(b []byte, rp *rulePlan, c *canal.RowChange) []byte {
	b = append(b, `{"op":"`...)
	b = append(b, byte(c.Op))
	b = append(b, `","before":`...)
	b = e.appendImage(b, rp, c, c.Before, styleTyped)
	b = append(b, `,"after":`...)
	b = e.appendImage(b, rp, c, c.After, styleTyped)
	b = append(b, ',')
	b = e.appendDebeziumSource(b, &c.Source, rp.table)
	b = append(b, `,"ts_ms":`...)
	b = strconv.AppendInt(b, e.txnTime(), 10)
	return append(b, '}')
}

func canalType(op canal.Op) string {
	switch op {
	case canal.OpUpdate:
		return "UPDATE"
	case canal.OpDelete:
		return "DELETE"
	}
	return "INSERT"
}

func maxwellType(op canal.Op) string {
	switch op {
	case canal.OpUpdate:
		return "update"
	case canal.OpDelete:
		return "delete"
	}
	return "insert"
}

// appendCanalRow: Canal's flat message, every value a string.
func (e *Engine) appendCanalRow(b []byte, rp *rulePlan, c *canal.RowChange) []byte {
	b = append(b, `{"data":[`...)
	img := c.After
	if img == nil {
		img = c.Before
	}
	b = e.appendImage(b, rp, c, img, styleStrings)
	b = append(b, `],"database":`...)
	b = append(b, rp.table.schemaJSON...)
	b = append(b, `,"table":`...)
	b = append(b, rp.table.nameJSON...)
	b = append(b, `,"type":"`...)
	b = append(b, canalType(c.Op)...)
	b = append(b, `","old":`...)
	if c.Op == canal.OpUpdate {
		b = append(e.appendChanged(append(b, '['), rp, c, styleStrings), ']')
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"es":`...)
	b = strconv.AppendInt(b, c.Source.TsMs, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, e.txnTime(), 10)
	b = append(b, `,"isDdl":false,"pkNames":`...)
	b = append(b, rp.pkNames...)
	return append(b, '}')
}

// appendMaxwellRow: Maxwell's JSON; ts is the commit time in seconds, xid the
// transaction's binlog position (stocksync has no XID at hand; it is unique per file).
func (e *Engine) appendMaxwellRow(b []byte, rp *rulePlan, c *canal.RowChange) []byte {
	b = append(b, `{"database":`...)
	b = append(b, rp.table.schemaJSON...)
	b = append(b, `,"table":`...)
	b = append(b, rp.table.nameJSON...)
	b = append(b, `,"type":"`...)
	b = append(b, maxwellType(c.Op)...)
	b = append(b, `","ts":`...)
	b = strconv.AppendInt(b, c.Source.TsMs/1000, 10)
	b = append(b, `,"xid":`...)
	b = strconv.AppendUint(b, uint64(c.Source.Pos), 10)
	b = append(b, `,"data":`...)
	img := c.After
	if img == nil {
		img = c.Before
	}
	b = e.appendImage(b, rp, c, img, styleMaxwell)
	if c.Op == canal.OpUpdate {
		b = e.appendChanged(append(b, `,"old":`...), rp, c, styleMaxwell)
	}
	return append(b, '}')
}
