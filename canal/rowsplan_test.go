package canal_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
)

const plannedTable = `CREATE TABLE planned (
	id INT NOT NULL PRIMARY KEY,
	i8 TINYINT, u8 TINYINT UNSIGNED, i16 SMALLINT, u16 SMALLINT UNSIGNED, i24 MEDIUMINT, u24 MEDIUMINT UNSIGNED,
	i32 INT, u32 INT UNSIGNED, i64 BIGINT, u64 BIGINT UNSIGNED,
	v VARCHAR(20), vlong VARCHAR(400), vl1 VARCHAR(20) CHARACTER SET latin1, vb VARBINARY(10),
	d1 DECIMAL(1,0), d52 DECIMAL(5,2), d99 DECIMAL(9,9), d180 DECIMAL(18,0), d2410 DECIMAL(24,10), d6530 DECIMAL(65,30),
	dt0 DATETIME, dt1 DATETIME(1), dt3 DATETIME(3), dt4 DATETIME(4), dt6 DATETIME(6),
	ts0 TIMESTAMP NULL, ts2 TIMESTAMP(2) NULL, ts6 TIMESTAMP(6) NULL
)`

// TestRowPlansDecodeLikeGoMySQL writes random rows of every type a rows plan decodes
// (with NULLs, extremes, negative decimals, two-byte VARCHAR lengths, latin1, binary, and
// dates a plan leaves to go-mysql), updates and deletes them, and reads the range twice:
// with the plans and with go-mysql's decoder and normalize alone. Every row change must
// be the same; go-mysql's side is the one TestSnapshotValuesEqualStream checks against SQL.
// The planned read follows the writes: once the reader has seen the table, the rows
// written after are decoded by the parser goroutine with the reader's plan.
func TestRowPlansDecodeLikeGoMySQL(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, plannedTable)
	rng := rand.New(rand.NewPCG(7, 11))
	var rows []string
	for id := range 300 {
		rows = append(rows, "("+strings.Join(append([]string{fmt.Sprint(id)}, randomPlannedRow(rng, id)...), ", ")+")")
	}
	writes := []string{"INSERT INTO planned VALUES " + strings.Join(rows[1:], ", ")}
	for id := 0; id < 300; id += 3 {
		r := randomPlannedRow(rng, id+1)
		writes = append(writes, fmt.Sprintf("UPDATE planned SET i64 = %s, v = %s, d2410 = %s, dt6 = %s, ts6 = %s WHERE id = %d",
			r[8], r[10], r[17], r[23], r[26], id))
	}
	writes = append(writes, "UPDATE planned SET u64 = u64 DIV 2, d52 = -d52 WHERE id % 5 = 0", "DELETE FROM planned WHERE id % 7 = 0")
	planned, plain, used, ahead := readBothWays(t, s, "INSERT INTO planned VALUES "+rows[0], writes...)

	// With this seed about 90 of the ≈130 events hold no value a plan leaves to go-mysql
	// (in 1 of 40 dates); far fewer means plans fall back where they should decode.
	requirePlansDecoded(t, planned, plain, used, ahead, 80, "about 90")
}

// moreTypesTable holds the types plans decode beyond plannedTable's: CHAR and BINARY
// (CHAR(100) in utf8mb4 with a two-byte length), every TEXT and BLOB, DATE, FLOAT, DOUBLE,
// ENUM and SET (of two and of eight bytes).
var moreTypesTable = `CREATE TABLE planned_more (
	id INT NOT NULL PRIMARY KEY,
	c CHAR(10), c100 CHAR(100), cl1 CHAR(5) CHARACTER SET latin1, c0 CHAR(0), bin BINARY(4),
	tt TINYTEXT, t TEXT, mt MEDIUMTEXT, lt LONGTEXT, tl1 TEXT CHARACTER SET latin1,
	tb TINYBLOB, b BLOB, mb MEDIUMBLOB, lb LONGBLOB,
	d DATE, f FLOAT, fu FLOAT UNSIGNED, db DOUBLE,
	e ENUM('small', 'large', 'é✓'), e300 ENUM(` + labels("l", 300) + `),
	s SET('a', 'b', 'c'), s64 SET(` + labels("m", 64) + `)
)`

// labels returns n quoted labels: 'prefix0', 'prefix1', …
func labels(prefix string, n int) string {
	l := make([]string, n)
	for i := range l {
		l[i] = fmt.Sprintf("'%s%d'", prefix, i)
	}
	return strings.Join(l, ", ")
}

// TestRowPlansDecodeMoreTypesLikeGoMySQL is TestRowPlansDecodeLikeGoMySQL for
// moreTypesTable: CHARs with trailing spaces, multi-byte and latin1 text, binary with zero
// bytes, TEXT and BLOB values past 255 and 65535 bytes, zero and edge dates, float edges,
// ENUM and SET values. None is left to go-mysql, so plans decode every rows event.
func TestRowPlansDecodeMoreTypesLikeGoMySQL(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, moreTypesTable)
	rng := rand.New(rand.NewPCG(3, 5))
	row := func(id int) string {
		return "(" + strings.Join(append([]string{fmt.Sprint(id)}, randomMoreTypesRow(rng)...), ", ") + ")"
	}
	var writes []string
	for first := 1; first < 300; first += 50 {
		var rows []string
		for id := first; id < first+50; id++ {
			rows = append(rows, row(id))
		}
		writes = append(writes, "INSERT INTO planned_more VALUES "+strings.Join(rows, ", "))
	}
	for id := 0; id < 300; id += 3 {
		r := randomMoreTypesRow(rng)
		writes = append(writes, fmt.Sprintf("UPDATE planned_more SET c = %s, c100 = %s, bin = %s, t = %s, mb = %s, d = %s, f = %s, db = %s, e300 = %s, s64 = %s WHERE id = %d",
			r[0], r[1], r[4], r[6], r[12], r[14], r[15], r[17], r[19], r[21], id))
	}
	writes = append(writes, "UPDATE planned_more SET f = -f, db = db / 3, c = CONCAT(c, '  ') WHERE id % 5 = 0",
		"DELETE FROM planned_more WHERE id % 7 = 0")
	planned, plain, used, ahead := readBothWays(t, s, "INSERT INTO planned_more VALUES "+row(0), writes...)

	// With this seed there are about 295 events (large values split the inserts), and a
	// plan decodes every one: far fewer means plans fall back where they should decode.
	requirePlansDecoded(t, planned, plain, used, ahead, 270, "every one, about 295")
}

// TestRowPlansLeaveJSONToGoMySQL: MariaDB's JSON is a LONGTEXT to the binlog; a table
// with one is not planned, and reads as go-mysql and normalize read it.
func TestRowPlansLeaveJSONToGoMySQL(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE with_json (id INT NOT NULL PRIMARY KEY, j JSON, t TEXT)")
	planned, plain, used, _ := readBothWays(t, s, `INSERT INTO with_json VALUES (1, '{"a": [1, 2]}', 'x')`,
		`INSERT INTO with_json VALUES (2, NULL, NULL), (3, '"é✓"', ''), (4, '[]', 'y')`, `UPDATE with_json SET j = '{}' WHERE id = 2`)
	if used != 0 {
		t.Errorf("%d rows events of a table with JSON were decoded by a plan", used)
	}
	if len(plain) != 5 {
		t.Fatalf("%d row changes, want 5", len(plain))
	}
	requireSameChanges(t, planned, plain)
}

// readBothWays runs first, then writes (each with the time zone UTC and no SQL mode), and
// reads the binlog range they wrote twice: with the plans, following the writes so that
// the rows written once the reader has seen the table (after first) are decoded by the
// parser goroutine with the reader's plan; then with go-mysql's decoder and normalize
// alone. used and ahead count the rows events plans decoded, and of those the ones decoded
// ahead of the reader.
func readBothWays(t *testing.T, s *source, first string, writes ...string) (planned, plain []*canal.RowChange, used, ahead uint64) {
	t.Helper()
	const session = "SET time_zone = '+00:00', sql_mode = ''; "
	from := s.position()
	planned0, ahead0 := canal.SetRowPlans(true)
	live := s.follow(from)
	testutil.Exec(t, s.db, session+first)
	live.reach(s.position())
	for _, w := range writes {
		testutil.Exec(t, s.db, session+w)
	}
	to := s.position()
	planned = live.until(to)
	used, ahead = canal.SetRowPlans(false)
	used, ahead = used-planned0, ahead-ahead0
	plain = s.stream(from, to)
	canal.SetRowPlans(true)
	return planned, plain, used, ahead
}

// requirePlansDecoded fails unless at least least rows events were decoded by a plan
// (about says how many the seed gives), half of them ahead of the reader, over more than
// 400 row changes that are the same both ways. Only the first transaction's events need
// the reader; half leaves room for the server to give the table a new id meanwhile, which
// the reader must see first again.
func requirePlansDecoded(t *testing.T, planned, plain []*canal.RowChange, used, ahead uint64, least uint64, about string) {
	t.Helper()
	if used < least {
		t.Fatalf("only %d rows events were decoded by a plan, want %s", used, about)
	}
	if ahead < used/2 {
		t.Fatalf("only %d of the %d planned rows events were decoded ahead of the reader", ahead, used)
	}
	if len(plain) < 400 {
		t.Fatalf("%d row changes, want more than 400", len(plain))
	}
	requireSameChanges(t, planned, plain)
	t.Logf("%d row changes, %d rows events decoded by plans, %d of them ahead of the reader", len(plain), used, ahead)
}

// requireSameChanges fails the test unless the row changes read with plans are those read
// without, value for value and type for type.
func requireSameChanges(t *testing.T, planned, plain []*canal.RowChange) {
	t.Helper()
	if len(planned) != len(plain) {
		t.Fatalf("%d row changes with plans, %d without", len(planned), len(plain))
	}
	for i := range plain {
		p, g := planned[i], plain[i]
		if p.Op != g.Op {
			t.Fatalf("change %d: op %s with plans, %s without", i, p.Op, g.Op)
		}
		for _, image := range []struct {
			name        string
			with, with0 []any
		}{{"before", p.Before, g.Before}, {"after", p.After, g.After}} {
			if len(image.with) != len(image.with0) {
				t.Fatalf("change %d %s: %d values with plans, %d without", i, image.name, len(image.with), len(image.with0))
			}
			for c := range image.with {
				if !reflect.DeepEqual(image.with[c], image.with0[c]) {
					t.Errorf("change %d (%s) %s column %s: plan %T %#v, go-mysql %T %#v", i, p.Op, image.name,
						g.Table.Columns[c].Name, image.with[c], image.with[c], image.with0[c], image.with0[c])
				}
			}
		}
	}
}

// randomPlannedRow returns SQL literals for the columns of plannedTable after id.
func randomPlannedRow(rng *rand.Rand, id int) []string {
	null := func(v string) string {
		if rng.IntN(10) == 0 {
			return "NULL"
		}
		return v
	}
	pick := func(vs ...string) string { return vs[rng.IntN(len(vs))] }
	integer := func(bits uint, unsigned bool) string {
		if unsigned {
			return pick("0", fmt.Sprint(uint64(1)<<bits-1), fmt.Sprint(rng.Uint64()>>(64-bits)))
		}
		lim := int64(1) << (bits - 1)
		return pick(fmt.Sprint(-lim), fmt.Sprint(lim-1), "0", "-1", fmt.Sprint(rng.Int64()>>(64-bits)))
	}
	decimal := func(precision, scale int) string {
		var b strings.Builder
		if rng.IntN(2) == 0 {
			b.WriteByte('-')
		}
		for range precision - scale {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		if precision == scale {
			b.WriteByte('0')
		}
		if scale > 0 {
			b.WriteByte('.')
			for range scale {
				b.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		return "'" + pick(b.String(), "0", "1") + "'"
	}
	datetime := func(dec int) string {
		frac := ""
		if dec > 0 {
			frac = "." + fmt.Sprintf("%06d", rng.IntN(1000000))[:dec]
		}
		y := 1970 + rng.IntN(8000)
		if rng.IntN(40) != 0 { // the rest are dates a plan leaves to go-mysql, for its whole event
			return fmt.Sprintf("'%04d-%02d-%02d %02d:%02d:%02d%s'", y, 1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), frac)
		}
		return "'" + pick(
			fmt.Sprintf("%04d-%02d-%02d %02d:%02d:%02d%s", y, 1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), frac),
			fmt.Sprintf("2024-02-29 23:59:59%s", frac), "1969-12-31 23:59:59", "0000-00-00 00:00:00", "2024-00-00 00:00:00",
			fmt.Sprintf("9999-12-31 23:59:59%s", frac)) + "'"
	}
	timestamp := func(dec int) string {
		frac := ""
		if dec > 0 {
			frac = "." + fmt.Sprintf("%06d", rng.IntN(1000000))[:dec]
		}
		if rng.IntN(40) == 0 {
			return "'0000-00-00 00:00:00'"
		}
		return "'" + pick(fmt.Sprintf("%04d-%02d-%02d %02d:%02d:%02d%s", 1971+rng.IntN(60), 1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), frac),
			"1970-01-01 00:00:01", "2038-01-19 03:14:07") + "'"
	}
	text := func(n int) string { return randomText(rng, n) }
	latin1 := pick("'café'", "'ÿ'", "''", "'plain'")
	_ = id
	return []string{
		null(integer(8, false)), null(integer(8, true)), null(integer(16, false)), null(integer(16, true)),
		null(integer(24, false)), null(integer(24, true)), null(integer(32, false)), null(integer(32, true)),
		null(integer(64, false)), null(integer(64, true)),
		null(text(20)), null(text(400)), null(latin1), null(pick("x'00ff10'", "''", "x'deadbeef'")),
		null(decimal(1, 0)), null(decimal(5, 2)), null(decimal(9, 9)), null(decimal(18, 0)), null(decimal(24, 10)), null(decimal(65, 30)),
		null(datetime(0)), null(datetime(1)), null(datetime(3)), null(datetime(4)), null(datetime(6)),
		null(timestamp(0)), null(timestamp(2)), null(timestamp(6)),
	}
}

// randomText is a SQL string literal of up to n characters, quotes, accents and
// multi-byte ones among them.
func randomText(rng *rand.Rand, n int) string {
	const alphabet = "abcxyz019 'é✓€"
	r := []rune(alphabet)
	var b strings.Builder
	for range rng.IntN(n + 1) {
		b.WriteRune(r[rng.IntN(len(r))])
	}
	return "'" + strings.ReplaceAll(b.String(), "'", "''") + "'"
}

// randomMoreTypesRow returns SQL literals for the columns of moreTypesTable after id.
func randomMoreTypesRow(rng *rand.Rand) []string {
	null := func(v string) string {
		if rng.IntN(10) == 0 {
			return "NULL"
		}
		return v
	}
	pick := func(vs ...string) string { return vs[rng.IntN(len(vs))] }
	text := func(n int) string { return randomText(rng, n) }
	// long is n bytes of text, some of the time: past a TEXT's 65535 bytes, say.
	long := func(short string, n int) string {
		if rng.IntN(20) != 0 {
			return short
		}
		return "'" + strings.Repeat("long text ", n/10) + "'"
	}
	bytes := func(n int) string {
		b := make([]byte, rng.IntN(n+1))
		for i := range b {
			if rng.IntN(4) != 0 { // the rest are zero bytes
				b[i] = byte(rng.Uint32())
			}
		}
		return fmt.Sprintf("x'%x'", b)
	}
	date := func() string {
		if rng.IntN(5) != 0 {
			return fmt.Sprintf("'%04d-%02d-%02d'", 1000+rng.IntN(9000), 1+rng.IntN(12), 1+rng.IntN(28))
		}
		return pick("'0000-00-00'", "'2024-00-00'", "'2024-02-00'", "'0000-01-01'", "'0001-01-01'", "'9999-12-31'",
			"'1969-12-31'", "'2024-02-29'", "'1970-01-01'")
	}
	float := func(bits int, unsigned bool) string {
		var f float64
		if bits == 32 {
			f = float64(math.Float32frombits(rng.Uint32()))
		} else {
			f = math.Float64frombits(rng.Uint64())
		}
		if math.IsNaN(f) || math.IsInf(f, 0) || rng.IntN(3) == 0 { // and a third are ordinary
			f = float64(rng.IntN(2000000)-1000000) / 1000
		}
		if unsigned {
			f = math.Abs(f)
		}
		random := strconv.FormatFloat(f, 'g', -1, bits)
		if bits == 32 {
			return pick(random, random, "0", "-1.5", "0.1", "0.3", "16777217", "123456.789", "3.4028234e38", "-3.4028234e38",
				"1.17549435e-38", "1.4e-45", "1e-40", "9.999999e37")
		}
		return pick(random, random, "0", "-0.0", "0.1", "-2.5", "1.7976931348623157e308", "-1.7976931348623157e308",
			"2.2250738585072014e-308", "5e-324", "123456789.123456789", "9007199254740993")
	}
	set64 := func() string {
		var l []string
		for i := range 64 {
			if rng.IntN(3) == 0 {
				l = append(l, fmt.Sprint("m", i))
			}
		}
		return "'" + strings.Join(l, ",") + "'"
	}
	latin1 := func(n int) string {
		return pick("'café'", "'ÿ  '", "''", "' x'", "'€'", "'"+strings.Repeat("café ", n)+"'")
	}
	return []string{
		null(pick(text(10), "'ab  '", "'  '", "' a b '", "'é✓  '")), null(pick(text(100), "''", "'x    '", "'"+strings.Repeat("€", 100)+"'")),
		null(latin1(1)), null(pick("''", "NULL")), null(pick(bytes(4), "x'00'", "x'ab00'", "x'00ab'", "''", "x'20'", "x'00000000'")),
		null(text(60)), null(text(1000)), null(long(text(300), 70000)), null(long(text(300), 70000)), null(latin1(100)),
		null(bytes(255)), null(bytes(1000)), null(long(bytes(300), 70000)), null(bytes(300)),
		null(date()), null(float(32, false)), null(float(32, true)), null(float(64, false)),
		null(pick("'small'", "'large'", "'é✓'", "''", "2")), null(fmt.Sprintf("'l%d'", rng.IntN(300))),
		null(pick("''", "'a'", "'a,c'", "'c,b,a'", "7")), null(set64()),
	}
}
