package canal

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"go.uber.org/zap"

	"github.com/stocksync/stocksync/internal/testutil"
)

// latin1Text converts latin1 (Windows-1252) to UTF-8.
var latin1Text = charsetDecoders["latin1"].decode

// FuzzRowsPlanRejectsGarbage: whatever the bytes, decoding a row image with a plan of every
// op returns a row or errFallback, never panics, and never claims more bytes than it had.
func FuzzRowsPlanRejectsGarbage(f *testing.F) {
	plan := rowsPlan{
		{op: opInt, width: 1}, {op: opUint, width: 3}, {op: opInt, width: 8},
		{op: opString, width: 1}, {op: opText, width: 2, text: latin1Text}, {op: opBytes, width: 1},
		{op: opDecimal, precision: 24, scale: 10}, {op: opDecimal, precision: 9, scale: 9},
		{op: opDateTime2, scale: 3}, {op: opTimestamp2, scale: 6},
		{op: opString, width: 4}, {op: opBytes, width: 3}, {op: opText, width: 1, text: latin1Text, binaryLen: 4},
		{op: opDate, width: 3}, {op: opFloat, width: 4}, {op: opDouble, width: 8},
		{op: opEnum, width: 2, labels: []string{"a", "b"}}, {op: opSet, width: 8, labels: []string{"a", "b"}},
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0x03})
	f.Add(make([]byte, 80))
	f.Add([]byte{0, 0, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 3, 'a', 'b', 'c', 2, 0, 'x', 'y', 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		row, n, err := plan.decodeImage(data)
		if err != nil {
			if err != errFallback {
				t.Fatalf("error %v, want errFallback", err)
			}
			return
		}
		if n > len(data) || len(row) != len(plan) {
			t.Fatalf("decoded %d values from %d of %d bytes", len(row), n, len(data))
		}
	})
}

// TestTakeUsesRowsDecodedAheadOnlyWithTheReadersPlan: rows the parser goroutine decoded
// with a plan the reader no longer holds (a reload or DDL came between) are decoded again
// with the reader's plan; with the same plan they are taken as they are.
func TestTakeUsesRowsDecodedAheadOnlyWithTheReadersPlan(t *testing.T) {
	d := newRowsDecoder(nil, nil)
	e := &replication.RowsEvent{ColumnCount: 1, ColumnBitmap1: []byte{1}}
	data := []byte{0x00, 0xff} // no NULLs, then one byte
	signed := rowsPlan{{op: opInt, width: 1}}
	unsigned := rowsPlan{{op: opUint, width: 1}}
	ahead, err := signed.decodeRows(false, e, data)
	if err != nil || ahead[0][0] != int64(-1) {
		t.Fatalf("decoding ahead: %v, %v", ahead, err)
	}

	d.deferred[e] = undecoded{data: data, rows: ahead, plan: signed}
	rows, err := d.take(e, replication.WRITE_ROWS_EVENTv2, true, unsigned)
	if err != nil || len(rows) != 1 || rows[0][0] != uint64(255) {
		t.Fatalf("with another plan than the one that decoded ahead: %v, %v; want the reader's plan's [[255]]", rows, err)
	}

	d.deferred[e] = undecoded{data: data, rows: ahead, plan: signed}
	rows, err = d.take(e, replication.WRITE_ROWS_EVENTv2, true, signed)
	if err != nil || len(rows) != 1 || &rows[0][0] != &ahead[0][0] {
		t.Fatalf("with the plan that decoded ahead: %v, %v; want the rows decoded ahead", rows, err)
	}
	if len(d.deferred) != 0 {
		t.Fatalf("take left %d events behind", len(d.deferred))
	}
}

// TestWidenFloat32IsTheShortestDecimal: a FLOAT widens to exactly the float64 of its
// oneTable is a TableFilter that matches one table and takes no rule to be stateful.
type oneTable TableName

func (f oneTable) Matches(schema, table string) bool       { return TableName(f) == TableName{schema, table} }
func (oneTable) StatefulTables(string, string) bool        { return false }
func (oneTable) StatefulSchema(string) bool                { return false }
func (oneTable) StatefulAlone(string, string) bool         { return false }
func (oneTable) PatternRule(string, string) (string, bool) { return "", false }

// TestStreamHoldsOnlyTheTablesItReads: what the reader and its rows decoder keep by table
// id stays bounded over a long run. A staging table created, written and dropped (a new
// id each time) leaves nothing behind, where the decoder kept each one's TableMapEvent;
// a matched table the server opens again under a new id (FLUSH LOCAL TABLES, which is not
// binlogged; a full table_definition_cache) is held once, where the reader kept a
// description under each id until the next DDL statement.
func TestStreamHoldsOnlyTheTablesItReads(t *testing.T) {
	m := testutil.MySQLServer(t)
	name, db := m.FreshDatabase(t, "held")
	cfg := Config{Addr: m.Addr, User: m.User, Password: m.Password, ServerID: testutil.ServerID()}
	server, err := Connect(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	testutil.Exec(t, db, "CREATE TABLE stock (id INT PRIMARY KEY, qty INT)")
	from, err := server.CurrentPosition(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	const rounds = 20
	for i := range rounds {
		testutil.Exec(t, db, fmt.Sprintf("CREATE TABLE staging_%d (a INT, b VARCHAR(10))", i), fmt.Sprintf("INSERT INTO staging_%d VALUES (1, 'x')", i),
			fmt.Sprintf("INSERT INTO stock VALUES (%d, 1)", i), fmt.Sprintf("DROP TABLE staging_%d", i))
	}
	for i := range rounds {
		testutil.Exec(t, db, fmt.Sprintf("INSERT INTO stock VALUES (%d, 1)", rounds+i), "FLUSH LOCAL TABLES")
	}
	to, err := server.CurrentPosition(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	s := NewStream(cfg, server, oneTable{name, "stock"}, zap.NewNop())
	decoder := newRowsDecoder(&s.filter, &s.undecoded)
	syncer, err := s.newSyncer(decoder.decode)
	if err != nil {
		t.Fatal(err)
	}
	defer syncer.Close()
	streamer, err := s.startSync(syncer, from, false)
	if err != nil {
		t.Fatal(err)
	}
	h := &commitRecorder{}
	r := s.newReader(h, decoder, from)
	ids := map[uint64]bool{}
	for r.lastCommit().Compare(to) < 0 {
		ev, err := streamer.GetEvent(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := ev.Event.(*replication.TableMapEvent); ok && string(e.Table) == "stock" {
			ids[e.TableID] = true
		}
		if err := r.handle(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if len(ids) < 2 {
		t.Fatalf("stock was mapped under %d table ids; want a new one after each FLUSH LOCAL TABLES", len(ids))
	}
	syncer.Close() // the parser goroutine, which owns decoder.matches, is done
	// Other tests write to the same server: only this database's tables count.
	tables, names, matches := 0, 0, 0
	for _, st := range r.tables {
		if st.name.Schema == name {
			tables++
		}
	}
	for n := range r.ids {
		if n.Schema == name {
			names++
		}
	}
	for _, m := range decoder.matches {
		if string(m.table.Schema) == name {
			matches++
		}
	}
	if tables != 1 || names != 1 || len(decoder.plans) != 1 {
		t.Errorf("after %d staging tables and stock under %d ids, the reader holds %d tables (%d names) and its decoder %d plans; want stock's alone",
			rounds, len(ids), tables, names, len(decoder.plans))
	}
	if matches != 0 {
		t.Errorf("the decoder holds %d tables' matches past their statements; want none", matches)
	}
}

// shortest decimal spelling, for edge values and random bit patterns.
func TestWidenFloat32IsTheShortestDecimal(t *testing.T) {
	fs := []float32{0, float32(math.Copysign(0, -1)), 0.1, 0.3, -1.5, 16777217, math.MaxFloat32, -math.MaxFloat32,
		math.SmallestNonzeroFloat32, 1.17549435e-38, 3.4e-38, 123456.789, 1e10, 1e-10}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		if f := math.Float32frombits(rng.Uint32()); !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) {
			fs = append(fs, f)
		}
	}
	for _, f := range fs {
		want, err := strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
		if err != nil {
			t.Fatal(err)
		}
		if got := widenFloat32(f); math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("widenFloat32(%v) = %v, the shortest decimal gives %v", f, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { widenFloat32(0.1) }); n != 0 {
		t.Errorf("widenFloat32 allocates %v times", n)
	}
}

// TestLengthBytesOfTextColumns: the bytes before a text value, from the table map's
// metadata as MariaDB writes it.
func TestLengthBytesOfTextColumns(t *testing.T) {
	for _, c := range []struct {
		name string
		typ  byte
		meta uint16
		want uint8
	}{
		{"VARCHAR(20) utf8mb4", mysql.MYSQL_TYPE_VARCHAR, 80, 1},
		{"VARCHAR(400)", mysql.MYSQL_TYPE_VARCHAR, 400, 2},
		{"CHAR(10) utf8mb4", mysql.MYSQL_TYPE_STRING, 0xFE28, 1},
		{"CHAR(0)", mysql.MYSQL_TYPE_STRING, 0xFE00, 1},
		{"BINARY(255)", mysql.MYSQL_TYPE_STRING, 0xFEFF, 1},
		{"CHAR(100) utf8mb4, 400 bytes", mysql.MYSQL_TYPE_STRING, 0xEE90, 2},
		{"CHAR(255) utf8mb4, 1020 bytes", mysql.MYSQL_TYPE_STRING, 0xCEFC, 2},
		{"ENUM", mysql.MYSQL_TYPE_STRING, 0xF701, 0},
		{"SET", mysql.MYSQL_TYPE_STRING, 0xF808, 0},
		{"CHAR of the old format", mysql.MYSQL_TYPE_STRING, 10, 0},
		{"TINYTEXT", mysql.MYSQL_TYPE_BLOB, 1, 1},
		{"MEDIUMBLOB", mysql.MYSQL_TYPE_BLOB, 3, 3},
		{"LONGTEXT", mysql.MYSQL_TYPE_BLOB, 4, 4},
		{"BLOB of no known size", mysql.MYSQL_TYPE_BLOB, 5, 0},
		{"DATE", mysql.MYSQL_TYPE_DATE, 0, 0},
	} {
		if got := lengthBytes(c.typ, c.meta); got != c.want {
			t.Errorf("%s: %d length bytes, want %d", c.name, got, c.want)
		}
	}
	if realType, n := stringMeta(0xEE90); realType != mysql.MYSQL_TYPE_STRING || n != 400 {
		t.Errorf("CHAR(100) utf8mb4: real type %#x of %d bytes, want STRING of 400", realType, n)
	}
}

// TestJSONIsNotPlanned: MariaDB's JSON, a LONGTEXT in utf8mb4_bin, is neither planned by
// the reader (its kind) nor taken for planned by the parser goroutine (the binlog cannot
// tell it from a LONGTEXT), while a LONGTEXT of another collation is planned.
func TestJSONIsNotPlanned(t *testing.T) {
	table := func(collation uint64) *replication.TableMapEvent {
		return &replication.TableMapEvent{ColumnCount: 2, ColumnType: []byte{mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_BLOB},
			ColumnMeta: []uint16{0, 4}, DefaultCharset: []uint64{collation}}
	}
	st := &tableState{text: make([]columnText, 2), enums: make([][]string, 2), sets: make([][]string, 2)}
	for _, c := range []struct {
		name      string
		e         *replication.TableMapEvent
		kind      ColumnKind
		planned   bool
		typesOnly bool
	}{
		{"JSON", table(utf8mb4Bin), KindJSON, false, false},
		{"LONGTEXT utf8mb4_bin", table(utf8mb4Bin), KindString, false, false},
		{"LONGTEXT without charset metadata", &replication.TableMapEvent{ColumnCount: 2,
			ColumnType: []byte{mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_BLOB}, ColumnMeta: []uint16{0, 4}}, KindBytes, false, false},
		{"JSON of another collation", table(45), KindJSON, false, true},
		{"LONGTEXT utf8mb4_general_ci", table(45), KindString, true, true},
	} {
		tbl := &Table{Columns: []Column{{Name: "id", Kind: KindInt}, {Name: "v", Kind: c.kind}}}
		if got := planTypes(c.e); got != c.typesOnly {
			t.Errorf("%s: planTypes = %v, want %v", c.name, got, c.typesOnly)
		}
		if got := newRowsPlan(c.e, tbl, st) != nil; got != c.planned {
			t.Errorf("%s: planned = %v, want %v", c.name, got, c.planned)
		}
	}
}

// BenchmarkRowsPlan decodes a rows event of 60 rows (INT key, CHAR(20) utf8mb4, TEXT,
// DATE, DOUBLE) with a plan and with go-mysql's decoder and normalize, which must agree.
func BenchmarkRowsPlan(b *testing.B) {
	e, body, pos, st := benchmarkRowsEvent(b, 60)
	want, err := st.plan.decode(replication.WRITE_ROWS_EVENTv2, e, body[pos:])
	if err != nil {
		b.Fatal(err)
	}
	decodeGoMySQL := func() {
		if err := e.DecodeData(pos, body); err != nil {
			b.Fatal(err)
		}
		for _, row := range e.Rows {
			if err := st.normalize(row); err != nil {
				b.Fatal(err)
			}
		}
	}
	if decodeGoMySQL(); !reflect.DeepEqual(e.Rows, want) {
		b.Fatalf("the plan decodes %v, go-mysql %v", want, e.Rows)
	}
	b.Run("plan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := st.plan.decode(replication.WRITE_ROWS_EVENTv2, e, body[pos:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-mysql", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			decodeGoMySQL()
		}
	})
}

// benchmarkRowsEvent returns a write rows event of a table (id INT, c CHAR(20) utf8mb4,
// t TEXT, d DATE, x DOUBLE) holding rows rows, as go-mysql's parser hands it to a
// RowsEventDecodeFunc: the event with its body, where the rows start, and the table's
// state with its plan.
func benchmarkRowsEvent(b *testing.B, rows int) (*replication.RowsEvent, []byte, int, *tableState) {
	event := func(typ replication.EventType, body []byte) []byte {
		h := make([]byte, replication.EventHeaderSize)
		h[4] = byte(typ)
		binary.LittleEndian.PutUint32(h[9:], uint32(len(h)+len(body)))
		return append(h, body...)
	}
	// A format description of a server too old for checksums, with 6-byte table ids.
	fde := binary.LittleEndian.AppendUint16(nil, 4)
	fde = append(fde, "5.0.0"...)
	fde = append(fde, make([]byte, 50-len("5.0.0")+4)...)
	fde = append(fde, replication.EventHeaderSize)
	postHeaders := make([]byte, replication.WRITE_ROWS_EVENTv2)
	postHeaders[replication.TABLE_MAP_EVENT-1], postHeaders[replication.WRITE_ROWS_EVENTv2-1] = 8, 10
	fde = append(fde, postHeaders...)

	tableID := []byte{1, 0, 0, 0, 0, 0, 0, 0} // and no flags
	tm := append(append([]byte{}, tableID...), 2, 'd', 'b', 0, 1, 't', 0, 5,
		mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_STRING, mysql.MYSQL_TYPE_BLOB, mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_DOUBLE,
		4, mysql.MYSQL_TYPE_STRING, 80, 2, 8, // CHAR(20): real type and bytes; TEXT: length bytes; DOUBLE: size
		0x1e) // nullable columns
	rb := append(append([]byte{}, tableID...), 2, 0, 5, 0x1f) // no extra data; every column
	for i := range rows {
		rb = append(rb, 0) // no NULLs
		rb = binary.LittleEndian.AppendUint32(rb, uint32(i))
		c := fmt.Sprintf("item-%d", i)
		rb = append(append(rb, byte(len(c))), c...)
		text := strings.Repeat("stock note ", 1+i%10)
		rb = append(binary.LittleEndian.AppendUint16(rb, uint16(len(text))), text...)
		date := uint32(2024)<<9 | uint32(1+i%12)<<5 | uint32(1+i%28)
		rb = append(rb, byte(date), byte(date>>8), byte(date>>16))
		rb = binary.LittleEndian.AppendUint64(rb, math.Float64bits(float64(i)*1.25))
	}

	p := replication.NewBinlogParser()
	p.SetParseTime(true)
	var e *replication.RowsEvent
	var body []byte
	p.SetRowsEventDecodeFunc(func(re *replication.RowsEvent, data []byte) error {
		e, body = re, data
		return nil
	})
	for _, ev := range [][]byte{event(replication.FORMAT_DESCRIPTION_EVENT, fde), event(replication.TABLE_MAP_EVENT, tm),
		event(replication.WRITE_ROWS_EVENTv2, rb)} {
		if _, err := p.Parse(ev); err != nil {
			b.Fatal(err)
		}
	}
	pos, err := e.DecodeHeader(body)
	if err != nil {
		b.Fatal(err)
	}
	kinds := []ColumnKind{KindInt, KindString, KindString, KindDate, KindFloat}
	t := &Table{Schema: "db", Name: "t", Columns: make([]Column, len(kinds))}
	for i, k := range kinds {
		t.Columns[i] = Column{Name: fmt.Sprint("c", i), Kind: k}
	}
	n := len(kinds)
	st := &tableState{table: t, matched: true, enums: make([][]string, n), sets: make([][]string, n), text: make([]columnText, n),
		decimals: make([]uint8, n), uintBits: make([]uint8, n), binaryLen: make([]uint16, n), colCount: n}
	if st.plan = newRowsPlan(e.Table, t, st); st.plan == nil {
		b.Fatal("no plan for the table")
	}
	return e, body, pos, st
}
