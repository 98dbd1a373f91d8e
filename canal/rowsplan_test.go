package canal_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
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
	from := s.position()
	rng := rand.New(rand.NewPCG(7, 11))
	var rows []string
	for id := range 300 {
		rows = append(rows, "("+strings.Join(append([]string{fmt.Sprint(id)}, randomPlannedRow(rng, id)...), ", ")+")")
	}
	planned0, ahead0 := canal.SetRowPlans(true)
	live := s.follow(from)
	testutil.Exec(t, s.db, "SET time_zone = '+00:00', sql_mode = ''; INSERT INTO planned VALUES "+rows[0])
	live.reach(s.position())
	testutil.Exec(t, s.db, "SET time_zone = '+00:00', sql_mode = ''; INSERT INTO planned VALUES "+strings.Join(rows[1:], ", "))
	for id := 0; id < 300; id += 3 {
		r := randomPlannedRow(rng, id+1)
		testutil.Exec(t, s.db, fmt.Sprintf("SET time_zone = '+00:00', sql_mode = ''; UPDATE planned SET i64 = %s, v = %s, d2410 = %s, dt6 = %s, ts6 = %s WHERE id = %d",
			r[8], r[10], r[17], r[23], r[26], id))
	}
	testutil.Exec(t, s.db, "UPDATE planned SET u64 = u64 DIV 2, d52 = -d52 WHERE id % 5 = 0", "DELETE FROM planned WHERE id % 7 = 0")
	to := s.position()
	planned := live.until(to)
	used, ahead := canal.SetRowPlans(false)
	used, ahead = used-planned0, ahead-ahead0
	plain := s.stream(from, to)
	canal.SetRowPlans(true)

	// With this seed about 90 of the ≈130 events hold no value a plan leaves to go-mysql
	// (in 1 of 40 dates); far fewer means plans fall back where they should decode.
	if used < 80 {
		t.Fatalf("only %d rows events were decoded by a plan, want about 90", used)
	}
	// Only the first transaction's events need the reader (all but one here); half leaves
	// room for the server to give the table a new id meanwhile, which the reader must see
	// first again.
	if ahead < used/2 {
		t.Fatalf("only %d of the %d planned rows events were decoded ahead of the reader", ahead, used)
	}
	if len(planned) != len(plain) || len(plain) < 400 {
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
	t.Logf("%d row changes, %d rows events decoded by plans, %d of them ahead of the reader", len(plain), used, ahead)
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
	text := func(n int) string {
		const alphabet = "abcxyz019 'é✓€"
		r := []rune(alphabet)
		var b strings.Builder
		for range rng.IntN(n + 1) {
			b.WriteRune(r[rng.IntN(len(r))])
		}
		return "'" + strings.ReplaceAll(b.String(), "'", "''") + "'"
	}
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
