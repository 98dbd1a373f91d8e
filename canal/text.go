package canal

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/encoding/unicode/utf32"

	"github.com/stocksync/stocksync/internal/sqlconn"
)

// ErrUnsupportedCharset stops a stream at a matched table with a string column (or ENUM
// or SET labels) in a character set the stream cannot turn into UTF-8. The binlog holds
// such a column's bytes as stored, while a snapshot, a seed or a re-read gets them from the
// server converted: handing the bytes on would publish mangled text, and keys and groups
// that differ from the seeded ones. A restart does not mend it.
var ErrUnsupportedCharset = errors.New("a matched table has a column in a character set stocksync cannot decode")

// columnText turns the bytes a column holds, as the binlog has them (in a string), into the text SQL
// shows for them (what a snapshot reads): a character set's bytes into UTF-8, or MariaDB's
// UUID and INET values into their printed form. A nil columnText means the bytes are that
// text already (utf8mb4, utf8mb3, ascii), which keeps those columns' path as it was.
type columnText func(s string) string

// charsetDecoder decodes one character set into UTF-8 as the server converts it.
type charsetDecoder struct {
	// byteRunes is, for a single-byte set, each byte's character.
	byteRunes *[256]rune
	// enc decodes a multi-byte set; where the server's table differs from enc's (the
	// WHATWG mapping), codeLen splits the bytes into characters (how many bytes the one
	// starting with a lead byte has) and exception gives the server's character for a
	// code (a character's bytes, big-endian), if it differs.
	enc       encoding.Encoding
	codeLen   func(lead byte) int
	exception func(code uint32) (rune, bool)
	// ascii: bytes below 0x80 stand for themselves, alone or in a multi-byte character's
	// lead (so a value of them only is returned as it is); not so in UTF-16 or UTF-32.
	ascii bool
}

// charsetDecoders are the character sets whose text the stream converts to UTF-8, by the
// name MySQL and MariaDB give them. Each was compared with MariaDB's own conversion
// (TestCharsetDecodersConvertAsTheServerDoes): every byte of the single-byte sets, and every
// two- and three-byte code of the multi-byte ones. utf8mb4, utf8mb3 and ascii need no
// conversion and binary is not text; any other set (dec8, hp8, swe7, keybcs2, macce,
// armscii8, geostd8, tis620) has no decoder here, and a matched table with a column in it
// is refused (ErrUnsupportedCharset).
var charsetDecoders = map[string]charsetDecoder{
	// MySQL's latin1 is Windows-1252, with its five undefined bytes as the C1 controls.
	"latin1":   singleByte(charmap.Windows1252, ""),
	"latin2":   singleByte(charmap.ISO8859_2, ""),
	"latin5":   singleByte(charmap.ISO8859_9, ""),
	"latin7":   singleByte(charmap.ISO8859_13, ""),
	"greek":    singleByte(charmap.ISO8859_7, greekExceptions),
	"hebrew":   singleByte(charmap.ISO8859_8, hebrewExceptions),
	"cp1250":   singleByte(charmap.Windows1250, ""),
	"cp1251":   singleByte(charmap.Windows1251, ""),
	"cp1256":   singleByte(charmap.Windows1256, ""),
	"cp1257":   singleByte(charmap.Windows1257, ""),
	"cp850":    singleByte(charmap.CodePage850, ""),
	"cp852":    singleByte(charmap.CodePage852, ""),
	"cp866":    singleByte(charmap.CodePage866, cp866Exceptions),
	"koi8r":    singleByte(charmap.KOI8R, ""),
	"koi8u":    singleByte(charmap.KOI8U, koi8uExceptions),
	"macroman": singleByte(charmap.Macintosh, ""),
	// GBK's decoder reads GB2312 (EUC-CN), which GBK extends.
	"gbk":     {enc: simplifiedchinese.GBK, ascii: true},
	"gb2312":  multiByte(simplifiedchinese.GBK, doubleByte, gb2312Exceptions, nil),
	"gb18030": {enc: simplifiedchinese.GB18030, ascii: true},
	"big5":    multiByte(traditionalchinese.Big5, doubleByte, big5Exceptions, nil),
	"ujis":    multiByte(japanese.EUCJP, eucCodeLen, ujisExceptions, eucUserDefined),
	"eucjpms": multiByte(japanese.EUCJP, eucCodeLen, eucjpmsExceptions, eucUserDefined),
	"sjis":    multiByte(japanese.ShiftJIS, sjisCodeLen, sjisExceptions, nil),
	"cp932":   multiByte(japanese.ShiftJIS, sjisCodeLen, "", cp932UserDefined),
	"euckr":   {enc: korean.EUCKR, ascii: true},
	"ucs2":    {enc: unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM)},
	"utf16":   {enc: unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM)},
	"utf16le": {enc: unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM)},
	"utf32":   {enc: utf32.UTF32(utf32.BigEndian, utf32.IgnoreBOM)},
}

// singleByte is the decoder of a single-byte set: cm's characters, but the server's where
// exceptions (charsettables.go) name one, and a byte cm leaves undefined as the C1 control
// of its value, as the server gives it.
func singleByte(cm *charmap.Charmap, exceptions string) charsetDecoder {
	var table [256]rune
	for b := range table {
		if table[b] = cm.DecodeByte(byte(b)); table[b] == utf8.RuneError {
			table[b] = rune(b)
		}
	}
	for code, r := range parseExceptions(exceptions) {
		table[code] = r
	}
	return charsetDecoder{byteRunes: &table, ascii: true}
}

// multiByte is the decoder of a multi-byte set: enc's characters, but the server's where
// exceptions (charsettables.go) or userDefined (a range of codes the server maps to the
// Private Use Area) give one.
func multiByte(enc encoding.Encoding, codeLen func(byte) int, exceptions string, userDefined func(uint32) (rune, bool)) charsetDecoder {
	table := parseExceptions(exceptions)
	return charsetDecoder{enc: enc, codeLen: codeLen, ascii: true, exception: func(code uint32) (rune, bool) {
		if r, ok := table[code]; ok {
			return r, true
		}
		if userDefined != nil {
			return userDefined(code)
		}
		return 0, false
	}}
}

// parseExceptions reads "code:character" pairs, both in hex, separated by white space.
func parseExceptions(s string) map[uint32]rune {
	table := map[uint32]rune{}
	for _, pair := range strings.Fields(s) {
		code, r, ok := strings.Cut(pair, ":")
		c, err1 := strconv.ParseUint(code, 16, 32)
		u, err2 := strconv.ParseUint(r, 16, 32)
		if !ok || err1 != nil || err2 != nil {
			panic("canal: bad character set exception " + pair)
		}
		table[uint32(c)] = rune(u)
	}
	return table
}

// doubleByte is the length of a character of GBK, GB2312 and Big5 from its lead byte.
func doubleByte(lead byte) int {
	if lead < 0x81 || lead == 0xFF {
		return 1
	}
	return 2
}

// sjisCodeLen is the length of a Shift JIS (sjis, cp932) character from its lead byte:
// one for ASCII and the half-width katakana, else two.
func sjisCodeLen(lead byte) int {
	if lead >= 0x81 && lead <= 0x9F || lead >= 0xE0 && lead <= 0xFC {
		return 2
	}
	return 1
}

// eucCodeLen is the length of an EUC-JP (ujis, eucjpms) character from its lead byte:
// 0x8F starts a three-byte JIS X 0212 character, 0x8E a half-width katakana.
func eucCodeLen(lead byte) int {
	switch {
	case lead == 0x8F:
		return 3
	case lead == 0x8E || lead >= 0xA1 && lead <= 0xFE:
		return 2
	}
	return 1
}

// eucUserDefined maps EUC-JP's user-defined characters, rows 0xF5–0xFE of JIS X 0208 and
// of JIS X 0212, to the Private Use Area from U+E000 and from U+E3AC, as the server does.
func eucUserDefined(code uint32) (rune, bool) {
	lead, trail := code>>8&0xFF, code&0xFF
	if lead < 0xF5 || lead > 0xFE || trail < 0xA1 || trail > 0xFE {
		return 0, false
	}
	base := rune(0xE000)
	if code>>16 == 0x8F {
		base = 0xE3AC
	} else if code>>16 != 0 {
		return 0, false
	}
	return base + rune((lead-0xF5)*94+trail-0xA1), true
}

// cp932UserDefined maps cp932's user-defined characters, lead bytes 0xF0–0xF9, to the
// Private Use Area from U+E000, as the server does.
func cp932UserDefined(code uint32) (rune, bool) {
	lead, trail := code>>8, code&0xFF
	if lead < 0xF0 || lead > 0xF9 || trail < 0x40 || trail > 0xFC || trail == 0x7F {
		return 0, false
	}
	index := trail - 0x40
	if trail > 0x7F {
		index--
	}
	return 0xE000 + rune((lead-0xF0)*188+index), true
}

// charsetText is how values of character set charset become UTF-8: nil for a set that
// needs nothing (or binary, whose columns are bytes), ok false for one without a decoder.
func charsetText(charset string) (text columnText, ok bool) {
	charset = strings.ToLower(charset)
	if textCharsets[charset] || charset == "binary" || charset == "" {
		return nil, true
	}
	d, ok := charsetDecoders[charset]
	if !ok {
		return nil, false
	}
	return d.decode, true
}

// DecodesCharset reports whether the stream turns text in character set charset (as
// information_schema names it) into UTF-8; a matched table with a column in another stops
// the stream at its first row (ErrUnsupportedCharset).
func DecodesCharset(charset string) bool {
	_, ok := charsetText(charset)
	return ok
}

// textCharsets are the character sets whose bytes are UTF-8 text already.
var textCharsets = map[string]bool{"utf8mb4": true, "utf8mb3": true, "utf8": true, "ascii": true}

// decode converts b to UTF-8: b itself when it has nothing to convert (no allocation). It
// is safe for concurrent use (the parser goroutine and the reader both decode rows): a
// multi-byte set's call takes an x/text decoder of its own, and only when b has a byte
// to convert.
func (d charsetDecoder) decode(b string) string {
	if d.ascii && isASCII(b) {
		return b
	}
	if d.byteRunes != nil {
		var out strings.Builder
		out.Grow(2 * len(b))
		for i := 0; i < len(b); i++ {
			out.WriteRune(d.byteRunes[b[i]])
		}
		return out.String()
	}
	if d.exception == nil {
		return d.convert(b)
	}
	// Characters the server maps otherwise than enc are written as the server does; the
	// runs of bytes between them go to enc whole.
	out := make([]byte, 0, 2*len(b))
	run := 0 // where the bytes not yet written start
	for i := 0; i < len(b); {
		n := min(d.codeLen(b[i]), len(b)-i)
		if n > 1 {
			var code uint32
			for j := i; j < i+n; j++ {
				code = code<<8 | uint32(b[j])
			}
			if r, ok := d.exception(code); ok {
				out = utf8.AppendRune(append(out, d.convert(b[run:i])...), r)
				run = i + n
			}
		}
		i += n
	}
	return string(append(out, d.convert(b[run:])...))
}

// convert is b decoded by d.enc.
func (d charsetDecoder) convert(b string) string {
	if b == "" {
		return ""
	}
	decoded, err := d.enc.NewDecoder().String(b)
	if err != nil { // not met: the decoders write U+FFFD for what they cannot read
		return strings.ToValidUTF8(b, "\uFFFD")
	}
	return decoded
}

func isASCII(b string) bool {
	for i := 0; i < len(b); i++ {
		if b[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// decodeLabels converts ENUM or SET labels, as the binlog carries them in their column's
// character set, with text.
func decodeLabels(labels []string, text columnText) []string {
	if labels == nil || text == nil {
		return labels
	}
	out := make([]string, len(labels))
	for i, l := range labels {
		out[i] = text(l)
	}
	return out
}

// mariadbTypeText is, for MariaDB's UUID, INET4 and INET6 types (information_schema's
// DATA_TYPE), the length the binlog stores their values in (a BINARY(n) to it) and how the
// server prints them.
var mariadbTypeText = map[string]struct {
	size int
	text columnText
}{
	"uuid":  {16, formatUUID},
	"inet4": {4, formatInet4},
	"inet6": {16, formatInet6},
}

// formatUUID prints a UUID as MariaDB does: "123e4567-e89b-12d3-a456-426655440000". The
// binlog holds its 16 bytes in the printed order, whatever the version and variant, though
// MariaDB reorders some of them for its indexes (TestMariaDBUUIDAndInetStreamAsTheServerPrintsThem
// compares them with SELECT's output).
func formatUUID(b string) string {
	const hex = "0123456789abcdef"
	var out [36]byte
	n := 0
	for i := range 16 {
		c := b[i]
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[n] = '-'
			n++
		}
		out[n], out[n+1] = hex[c>>4], hex[c&15]
		n += 2
	}
	return string(out[:])
}

// formatInet4 prints an INET4 as dotted decimal, "192.0.2.1".
func formatInet4(b string) string {
	out := make([]byte, 0, 15)
	for i := range 4 {
		if i > 0 {
			out = append(out, '.')
		}
		out = strconv.AppendUint(out, uint64(b[i]), 10)
	}
	return string(out)
}

// formatInet6 prints an INET6 as MariaDB's Inet6::to_string does, which is not quite
// RFC 5952 (nor Go's netip): the first longest run of zero groups is written "::" even
// when it is a single group, and an address whose first six groups are zero ("::1.2.3.4",
// IPv4-compatible) or whose first five are zero and sixth ffff ("::ffff:1.2.3.4",
// IPv4-mapped) ends in dotted decimal, except when the run of zeros is longer ("::1").
func formatInet6(b string) string {
	var words [8]uint16
	for i := range words {
		words[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
	}
	gapPos, gapLen := -1, 0
	for i := 0; i < len(words); {
		if words[i] != 0 {
			i++
			continue
		}
		j := i
		for j < len(words) && words[j] == 0 {
			j++
		}
		if j-i > gapLen {
			gapPos, gapLen = i, j-i
		}
		i = j
	}
	out := make([]byte, 0, 39)
	for i := 0; i < len(words); i++ {
		switch {
		case i == gapPos:
			if i == 0 {
				out = append(out, ':')
			}
			out = append(out, ':')
			i += gapLen - 1
		case i == 6 && gapPos == 0 && (gapLen == 6 || gapLen == 5 && words[5] == 0xffff):
			return string(out) + formatInet4(b[12:16])
		default:
			out = strconv.AppendUint(out, uint64(words[i]), 16)
			if i != len(words)-1 {
				out = append(out, ':')
			}
		}
	}
	return string(out)
}

// collationCharset names the character set of collation id, as the binlog's table maps
// give collations: read from the server's information_schema once, then kept (MariaDB's
// ids past 2047, such as utf8mb4_uca1400_ai_ci, are only in
// COLLATION_CHARACTER_SET_APPLICABILITY). ok is false for an id the server does not list.
func (s *Server) collationCharset(ctx context.Context, id uint64) (charset string, ok bool, err error) {
	s.collationsMu.Lock()
	defer s.collationsMu.Unlock()
	if s.collations == nil {
		charsets := map[uint64]string{}
		read := func(query string) error {
			rows, err := s.DB.QueryContext(ctx, query)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id uint64
				var charset string
				if err := rows.Scan(&id, &charset); err != nil {
					return err
				}
				charsets[id] = charset
			}
			return rows.Err()
		}
		if err := read("SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL AND CHARACTER_SET_NAME IS NOT NULL"); err != nil {
			return "", false, fmt.Errorf("reading the server's collations: %w", err)
		}
		if s.Flavor == "mariadb" {
			err := read("SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATION_CHARACTER_SET_APPLICABILITY")
			if err != nil && sqlconn.ErrorNumber(err) != 1054 { // no ID column before 10.10
				return "", false, fmt.Errorf("reading the server's collations: %w", err)
			}
		}
		s.collations = charsets
	}
	charset, ok = s.collations[id]
	return charset, ok, nil
}
