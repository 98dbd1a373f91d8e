package canal

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// A rowsPlan decodes the row images of a table whose columns are all of the common types
// (integers, FLOAT, DOUBLE, DECIMAL, CHAR, VARCHAR, TEXT, BLOB, ENUM, SET, DATE, DATETIME,
// TIMESTAMP) straight into the values a Stream hands on: int64 or uint64, float64, string
// (converted from its character set; MariaDB's UUID, INET4 and INET6 printed), []byte, decimal strings, labels, dates and RFC 3339 times.
// go-mysql's decoder boxes an intermediate value per column (a time.Time, an int8) that
// normalize then converts again; on the catch-up benchmark the two together were a fifth
// of the CPU. Anything the plan does not cover exactly (another column type, JSON, a
// compressed event, a datetime go-mysql would hand on as text) returns errFallback, and
// the event is decoded by go-mysql as before; so does a partial row image, which the
// reader then refuses (ErrPartialRowImage).
type rowsPlan []planColumn

// errFallback says a rows event needs go-mysql's decoder.
var errFallback = errors.New("rows event left to go-mysql's decoder")

type planOp uint8

const (
	opInt    planOp = iota + 1 // signed integer of width bytes
	opUint                     // unsigned integer of width bytes
	opString                   // CHAR, VARCHAR or TEXT: a length of width bytes, then the bytes
	opText                     // the same, converted by the column's columnText
	opBytes                    // the same, binary (BINARY, VARBINARY, BLOB)
	opDecimal
	opDateTime2
	opTimestamp2
	opDate   // three bytes: year, month and day in bits
	opFloat  // four bytes, widened as normalizeValue widens a FLOAT
	opDouble // eight bytes
	opEnum   // an ENUM's index of width bytes, handed on as its label
	opSet    // a SET's bits, width bytes, handed on as its labels
)

type planColumn struct {
	op    planOp
	width uint8 // bytes of a number, of a length, of an ENUM or a SET
	// precision and scale of a DECIMAL; fractional second digits of a time.
	precision, scale uint8
	labels           []string   // of an ENUM or a SET
	binaryLen        uint16     // n of a BINARY(n): its value is padded back to n bytes
	text             columnText // of an opText column
}

// rowPlansEnabled switches the plans on (tests compare both paths); plannedEvents counts
// the rows events a plan decoded.
var (
	rowPlansEnabled = true
	plannedEvents   atomic.Uint64
)

// planTypes reports whether every column of t has a type a plan can decode. It reads only
// the event's fields, so the parser goroutine may call it (the rowsDecoder decodes such
// tables' events with the plan the reader built, which knows the columns' kinds).
func planTypes(t *replication.TableMapEvent) bool {
	if !rowPlansEnabled || len(t.ColumnType) != int(t.ColumnCount) || len(t.ColumnMeta) != int(t.ColumnCount) {
		return false
	}
	var collations map[int]uint64
	for i, typ := range t.ColumnType {
		switch typ {
		case mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_LONGLONG,
			mysql.MYSQL_TYPE_FLOAT, mysql.MYSQL_TYPE_DOUBLE, mysql.MYSQL_TYPE_NEWDECIMAL,
			mysql.MYSQL_TYPE_STRING, mysql.MYSQL_TYPE_VARCHAR,
			mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_DATETIME2, mysql.MYSQL_TYPE_TIMESTAMP2:
		case mysql.MYSQL_TYPE_BLOB:
			// MariaDB's JSON is a LONGTEXT in utf8mb4_bin whose json_valid check is not in
			// the binlog: only the reader knows (from the server) and plans no such table.
			// Were it planned here, the parser goroutine would leave its events to the
			// reader to decode, so a LONGTEXT that may be JSON is not planned.
			if t.ColumnMeta[i] == 4 {
				if collations == nil {
					collations = t.CollationMap()
				}
				if c, ok := collations[i]; !ok || c == utf8mb4Bin {
					return false
				}
			}
		default:
			return false
		}
	}
	return true
}

// utf8mb4Bin is the collation of MariaDB's JSON columns.
const utf8mb4Bin = 46

// newRowsPlan returns the plan for table t described by e and st, or nil when some
// column is outside what a plan decodes.
func newRowsPlan(e *replication.TableMapEvent, t *Table, st *tableState) rowsPlan {
	if !planTypes(e) || len(t.Columns) != int(e.ColumnCount) {
		return nil
	}
	plan := make(rowsPlan, len(t.Columns))
	for i, col := range t.Columns {
		typ, meta := e.ColumnType[i], e.ColumnMeta[i]
		p := &plan[i]
		intBytes := integerBits[typ] / 8
		textBytes := lengthBytes(typ, meta)
		var realType byte // of a MYSQL_TYPE_STRING: CHAR or BINARY, ENUM, SET
		var packBytes int // of an ENUM or a SET
		if typ == mysql.MYSQL_TYPE_STRING {
			realType, packBytes = stringMeta(meta)
		}
		switch {
		case intBytes != 0 && col.Kind == KindInt:
			p.op, p.width = opInt, intBytes
		case intBytes != 0 && col.Kind == KindUint:
			p.op, p.width = opUint, intBytes
		case textBytes != 0 && col.Kind == KindString:
			p.op, p.width = opString, textBytes
			if st.text[i] != nil {
				p.op, p.binaryLen, p.text = opText, st.binaryLen[i], st.text[i]
			}
		case textBytes != 0 && col.Kind == KindBytes:
			p.op, p.width, p.binaryLen = opBytes, textBytes, st.binaryLen[i]
		case realType == mysql.MYSQL_TYPE_ENUM && col.Kind == KindEnum && (packBytes == 1 || packBytes == 2):
			p.op, p.width, p.labels = opEnum, uint8(packBytes), st.enums[i]
		case realType == mysql.MYSQL_TYPE_SET && col.Kind == KindSet && packBytes >= 1 && packBytes <= 8:
			p.op, p.width, p.labels = opSet, uint8(packBytes), st.sets[i]
		case typ == mysql.MYSQL_TYPE_FLOAT && col.Kind == KindFloat && meta == 4:
			p.op, p.width = opFloat, 4
		case typ == mysql.MYSQL_TYPE_DOUBLE && col.Kind == KindFloat && meta == 8:
			p.op, p.width = opDouble, 8
		case typ == mysql.MYSQL_TYPE_DATE && col.Kind == KindDate:
			p.op, p.width = opDate, 3
		case typ == mysql.MYSQL_TYPE_NEWDECIMAL && col.Kind == KindDecimal && meta>>8 <= 65 && meta&0xFF <= 30 && meta&0xFF <= meta>>8:
			p.op, p.precision, p.scale = opDecimal, uint8(meta>>8), uint8(meta&0xFF)
		case typ == mysql.MYSQL_TYPE_DATETIME2 && col.Kind == KindDateTime && meta <= 6:
			p.op, p.scale = opDateTime2, uint8(meta)
		case typ == mysql.MYSQL_TYPE_TIMESTAMP2 && col.Kind == KindDateTime && meta <= 6:
			p.op, p.scale = opTimestamp2, uint8(meta)
		default:
			return nil // e.g. a TEXT or VARCHAR that is JSON (MariaDB's json_valid check)
		}
	}
	return plan
}

// lengthBytes is how many bytes the length before a value of a VARCHAR, a CHAR, a TEXT or
// a BLOB (or their binary kin) of binlog type typ takes, as go-mysql reads it; 0 for other
// columns.
func lengthBytes(typ byte, meta uint16) uint8 {
	var maxBytes int
	switch typ {
	case mysql.MYSQL_TYPE_VARCHAR:
		maxBytes = int(meta)
	case mysql.MYSQL_TYPE_STRING:
		var realType byte
		if realType, maxBytes = stringMeta(meta); realType != mysql.MYSQL_TYPE_STRING {
			return 0 // an ENUM or a SET
		}
	case mysql.MYSQL_TYPE_BLOB: // TINY, plain, MEDIUM and LONG: the length's own bytes
		if meta >= 1 && meta <= 4 {
			return uint8(meta)
		}
		return 0
	default:
		return 0
	}
	if maxBytes > 255 {
		return 2
	}
	return 1
}

// stringMeta reads the metadata of a MYSQL_TYPE_STRING column as go-mysql does: the real
// type (STRING for CHAR and BINARY, ENUM, SET) and its length, in bytes, of a CHAR's value
// or of an ENUM's or a SET's. A CHAR longer than 255 bytes (a CHAR(100) in utf8mb4) keeps
// the length's two high bits, inverted, in the real type's byte. The old format, of less
// than 256, gives realType 0.
func stringMeta(meta uint16) (realType byte, length int) {
	if meta < 256 {
		return 0, 0
	}
	b0, b1 := byte(meta>>8), int(meta&0xFF)
	if b0&0x30 != 0x30 {
		return b0 | 0x30, b1 | int((b0&0x30)^0x30)<<4
	}
	return b0, b1
}

// decode decodes the rows of event e, of type typ, from data (the event's body after its
// header). Updates give two images per row, before then after, as go-mysql's Rows do.
func (p rowsPlan) decode(typ replication.EventType, e *replication.RowsEvent, data []byte) ([][]any, error) {
	update, ok := planDecodes(typ)
	if !ok {
		return nil, errFallback
	}
	return p.decodeRows(update, e, data)
}

// planDecodes reports whether a plan decodes events of type typ (uncompressed v1 and v2
// rows events), and whether they are updates.
func planDecodes(typ replication.EventType) (update, ok bool) {
	switch typ {
	case replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2, replication.DELETE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv2:
		return false, true
	case replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2:
		return true, true
	}
	return false, false
}

// decodeRows is decode for an event known to be of a type planDecodes accepts; update
// says whether it is an update.
func (p rowsPlan) decodeRows(update bool, e *replication.RowsEvent, data []byte) ([][]any, error) {
	if int(e.ColumnCount) != len(p) || partialImage(e, update) {
		return nil, errFallback // a partial image: the reader refuses it (ErrPartialRowImage)
	}
	var rows [][]any
	for pos := 0; pos < len(data); {
		row, n, err := p.decodeImage(data[pos:])
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
		pos += n
	}
	return rows, nil
}

// partialImage reports whether rows event e (an update when update is set) leaves out
// columns of its row images: binlog_row_image MINIMAL or NOBLOB in the session that wrote
// it. Its column bitmaps (the before image's, then an update's after image's) have a bit
// per column of the table; a FULL image, generated columns included, sets them all.
func partialImage(e *replication.RowsEvent, update bool) bool {
	n := int(e.ColumnCount)
	return !allSet(e.ColumnBitmap1, n) || update && !allSet(e.ColumnBitmap2, n)
}

// missingColumns lists the columns, of the first n, whose bits bitmap leaves unset: the
// columns a row image lacks.
func missingColumns(bitmap []byte, n int) []int {
	var missing []int
	for i := range n {
		if i/8 >= len(bitmap) || bitmap[i/8]&(1<<(i%8)) == 0 {
			missing = append(missing, i)
		}
	}
	return missing
}

// allSet reports whether the first n bits of bitmap are set: a full row image.
func allSet(bitmap []byte, n int) bool {
	if len(bitmap) < (n+7)/8 {
		return false
	}
	for i := range n {
		if bitmap[i/8]&(1<<(i%8)) == 0 {
			return false
		}
	}
	return true
}

// decodeImage decodes one full row image: a null bitmap, then each non-null value.
func (p rowsPlan) decodeImage(data []byte) ([]any, int, error) {
	nulls := (len(p) + 7) / 8
	if len(data) < nulls {
		return nil, 0, errFallback
	}
	row := make([]any, len(p))
	pos := nulls
	for i := range p {
		if data[i/8]&(1<<(i%8)) != 0 {
			continue
		}
		v, n, err := p[i].decode(data[pos:])
		if err != nil {
			return nil, 0, err
		}
		row[i] = v
		pos += n
	}
	return row, pos, nil
}

func (c *planColumn) decode(data []byte) (any, int, error) {
	w := int(c.width)
	switch c.op {
	case opInt, opUint:
		u, ok := littleEndian(data, w)
		if !ok {
			return nil, 0, errFallback
		}
		if c.op == opUint {
			return u, w, nil
		}
		shift := 64 - 8*w
		return int64(u<<shift) >> shift, w, nil // sign-extended
	case opString, opText, opBytes:
		length, ok := littleEndian(data, w)
		if !ok || length > uint64(len(data)-w) {
			return nil, 0, errFallback
		}
		n := w + int(length)
		b := data[w:n]
		switch c.op {
		case opBytes:
			if len(b) < int(c.binaryLen) {
				return padBinary(b, c.binaryLen), n, nil
			}
			return append([]byte{}, b...), n, nil
		case opText:
			return c.text(string(padBinary(b, c.binaryLen))), n, nil
		}
		return string(b), n, nil
	case opEnum, opSet:
		u, ok := littleEndian(data, w)
		if !ok {
			return nil, 0, errFallback
		}
		if c.op == opEnum {
			return normalizeValue(int64(u), KindEnum, c.labels, nil), w, nil
		}
		return normalizeValue(int64(u), KindSet, nil, c.labels), w, nil
	case opFloat:
		u, ok := littleEndian(data, w)
		if !ok {
			return nil, 0, errFallback
		}
		return widenFloat32(math.Float32frombits(uint32(u))), w, nil
	case opDouble:
		u, ok := littleEndian(data, w)
		if !ok {
			return nil, 0, errFallback
		}
		return math.Float64frombits(u), w, nil
	case opDate:
		return decodeDate(data)
	case opDecimal:
		return decodeDecimal(data, int(c.precision), int(c.scale))
	case opDateTime2:
		return decodeDateTime2(data, c.scale)
	case opTimestamp2:
		n := 4 + int(c.scale+1)/2
		if len(data) < n {
			return nil, 0, errFallback
		}
		sec := int64(binary.BigEndian.Uint32(data))
		if sec == 0 {
			return nil, 0, errFallback // the zero timestamp: go-mysql's text
		}
		return formatDateTime(time.Unix(sec, fracMicros(data[4:], c.scale)*1000), c.scale), n, nil
	}
	return nil, 0, errFallback
}

// littleEndian reads the first w bytes of data (at most 8) as a little-endian unsigned
// integer; ok is false when data is shorter.
func littleEndian(data []byte, w int) (v uint64, ok bool) {
	if len(data) < w {
		return 0, false
	}
	for i := w - 1; i >= 0; i-- {
		v = v<<8 | uint64(data[i])
	}
	return v, true
}

// widenFloat32 turns a FLOAT into the float64 of its shortest decimal (what the server
// shows: 0.1, not 0.10000000149011612), without allocating; the stream, the plans and the
// snapshot all widen a FLOAT so.
func widenFloat32(f float32) float64 {
	var buf [32]byte
	g, _ := strconv.ParseFloat(string(strconv.AppendFloat(buf[:0], float64(f), 'g', -1, 32)), 64)
	return g
}

// decodeDate decodes a DATE (year, month and day in the bits of three little-endian
// bytes) into go-mysql's text, "2024-02-29", or "2024-00-00" for a zero month and day,
// and the zero date into nil, as normalizeValue does. Years past 9999 are go-mysql's.
func decodeDate(data []byte) (any, int, error) {
	v, ok := littleEndian(data, 3)
	if !ok || v>>9 > 9999 {
		return nil, 0, errFallback
	}
	if v == 0 {
		return nil, 3, nil
	}
	return formatCivil(int(v>>9), int(v>>5&15), int(v&31), 0, 0, 0, 0, 0)[:10], 3, nil // the date part
}

// fracMicros reads the fractional seconds stored after a DATETIME2 or TIMESTAMP2 with
// dec digits, in microseconds.
func fracMicros(data []byte, dec uint8) int64 {
	switch dec {
	case 1, 2:
		return int64(data[0]) * 10000
	case 3, 4:
		return int64(binary.BigEndian.Uint16(data)) * 100
	case 5, 6:
		return int64(data[0])<<16 | int64(data[1])<<8 | int64(data[2])
	}
	return 0
}

// datetimeIntOffset is what MySQL adds to a DATETIME2's packed integer part.
const datetimeIntOffset = 0x8000000000

// epochPacked is 1970-01-01 00:00:00 packed: go-mysql hands earlier times on as text.
const epochPacked = 107420450816

// decodeDateTime2 decodes a DATETIME2 with dec fractional digits into RFC 3339, UTC, as
// formatDateTime writes it (formatCivil). Zero dates, zero months or days, dates before
// 1970 and values time.Date would normalise are go-mysql's to decode.
func decodeDateTime2(data []byte, dec uint8) (any, int, error) {
	n := 5 + int(dec+1)/2
	if len(data) < n {
		return nil, 0, errFallback
	}
	packed := int64(data[0])<<32 | int64(binary.BigEndian.Uint32(data[1:5])) - datetimeIntOffset
	if packed < epochPacked {
		return nil, 0, errFallback
	}
	ymd, hms := packed>>17, packed%(1<<17)
	year, month, day := int(ymd>>5/13), int(ymd>>5%13), int(ymd%(1<<5))
	hour, minute, second := int(hms>>12), int(hms>>6%(1<<6)), int(hms%(1<<6))
	if month == 0 || day == 0 || day > daysIn(month, year) || year > 9999 || hour > 23 || minute > 59 || second > 59 {
		return nil, 0, errFallback
	}
	return formatCivil(year, month, day, hour, minute, second, int(fracMicros(data[5:], dec)), dec), n, nil
}

func daysIn(month, year int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// decimalBytes is how many bytes MySQL stores for a group of 0–9 decimal digits.
var decimalBytes = [10]int{0, 1, 1, 2, 2, 3, 3, 4, 4, 4}

// decodeDecimal decodes MySQL's packed DECIMAL(precision, scale): groups of nine digits
// in four big-endian bytes, the leftover digits of each part in fewer, the sign in the
// first bit, and every byte inverted when negative. The text is go-mysql's: no leading
// zeros ("0" when the integer part is zero), exactly scale fractional digits.
func decodeDecimal(data []byte, precision, scale int) (any, int, error) {
	intg, frac := precision-scale, scale
	intg0, intgx := intg/9, intg%9
	frac0, fracx := frac/9, frac%9
	size := intg0*4 + decimalBytes[intgx] + frac0*4 + decimalBytes[fracx]
	if size == 0 || len(data) < size {
		return nil, 0, errFallback
	}
	var buf [32]byte
	d := buf[:size]
	copy(d, data[:size])
	negative := d[0]&0x80 == 0
	d[0] ^= 0x80
	if negative {
		for i := range d {
			d[i] ^= 0xFF
		}
	}
	// At most 65 digits, a sign and a point.
	var text [72]byte
	out := text[:0]
	if negative {
		out = append(out, '-')
	}
	pos, leading := 0, true
	for g := -1; g < intg0; g++ { // the leftover digits' group first, then the full ones
		bytes, digits := 4, 9
		if g < 0 {
			bytes, digits = decimalBytes[intgx], intgx
		}
		v := bigEndian(d[pos : pos+bytes])
		pos += bytes
		switch {
		case !leading:
			out = appendPadded(out, v, digits)
		case v != 0:
			out = strconv.AppendUint(out, v, 10)
			leading = false
		}
	}
	if leading {
		out = append(out, '0')
	}
	if frac > 0 {
		out = append(out, '.')
		for range frac0 {
			out = appendPadded(out, bigEndian(d[pos:pos+4]), 9)
			pos += 4
		}
		if fracx > 0 {
			out = appendPadded(out, bigEndian(d[pos:pos+decimalBytes[fracx]]), fracx)
		}
	}
	return string(out), size, nil
}

// bigEndian reads up to 8 bytes as a big-endian unsigned integer.
func bigEndian(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// appendPadded appends v in decimal, left-padded with zeros to digits.
func appendPadded(out []byte, v uint64, digits int) []byte {
	var tmp [20]byte
	s := strconv.AppendUint(tmp[:0], v, 10)
	for range digits - len(s) {
		out = append(out, '0')
	}
	return append(out, s...)
}
