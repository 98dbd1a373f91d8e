package canal

import (
	"bytes"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stocksync/stocksync/internal/testutil"
)

// TestCharsetDecodersConvertAsTheServerDoes compares each decoder with the server's own
// conversion to utf8mb4, which is what a snapshot reads: every byte of a single-byte
// character set, every two-byte code of a multi-byte one (and of UTF-16 and UCS-2), and
// a spread of UTF-32's. What the server cannot convert it shows as '?'; such codes are
// not compared, as SQL cannot store them in a column of the set.
func TestCharsetDecodersConvertAsTheServerDoes(t *testing.T) {
	db := testutil.MySQLServer(t).Open(t, "")
	for charset, d := range charsetDecoders {
		t.Run(charset, func(t *testing.T) {
			var newline string
			if err := db.QueryRowContext(t.Context(), "SELECT HEX(CONVERT('\n' USING "+charset+"))").Scan(&newline); err != nil {
				t.Skipf("%s: %v", charset, err) // not on this server (gb18030 on MariaDB)
			}
			sep, _ := hex.DecodeString(newline)
			var codes [][]byte
			switch {
			case charset == "utf32":
				for r := 0; r < 0x30000; r += 7 {
					if r == '\n' || r >= 0xD800 && r < 0xE000 {
						continue
					}
					codes = append(codes, []byte{0, byte(r >> 16), byte(r >> 8), byte(r)})
				}
			case !d.ascii:
				for c := range 0x10000 {
					if c == '\n' || c >= 0xD800 && c < 0xE000 { // surrogates: no character alone, nor in SQL's text
						continue
					}
					code := []byte{byte(c >> 8), byte(c)}
					if charset == "utf16le" {
						code[0], code[1] = code[1], code[0]
					}
					codes = append(codes, code)
				}
			default:
				for b := range 256 {
					if b != '\n' {
						codes = append(codes, []byte{byte(b)})
					}
				}
				if d.byteRunes == nil {
					for lead := 0x81; lead < 0x100; lead++ {
						for trail := 0x21; trail < 0x100; trail++ {
							codes = append(codes, []byte{byte(lead), byte(trail)})
						}
					}
					if charset == "ujis" || charset == "eucjpms" { // JIS X 0212, after 0x8F
						for lead := 0xA1; lead < 0xFF; lead++ {
							for trail := 0xA1; trail < 0xFF; trail++ {
								codes = append(codes, []byte{0x8F, byte(lead), byte(trail)})
							}
						}
					}
				}
			}
			compared, differ := 0, 0
			for chunk := range slices.Chunk(codes, 8000) {
				server := serverConversion(t, db, charset, chunk, sep)
				for i, code := range chunk {
					got := d.decode(string(code))
					if strings.Contains(server[i], "?") {
						continue
					}
					compared++
					if got != server[i] {
						if differ++; differ <= 10 {
							t.Errorf("%x: decoded %q %U, the server converts it to %q %U", code, got, []rune(got), server[i], []rune(server[i]))
						}
					}
				}
			}
			if differ > 0 || compared < len(codes)/4 {
				t.Errorf("%d of %d codes differ; %d could be compared", differ, len(codes), compared)
			}
		})
	}
}

// serverConversion has the server convert codes, bytes of charset, to utf8mb4, one line
// each (sep is a newline in charset).
func serverConversion(t *testing.T, db *sql.DB, charset string, codes [][]byte, sep []byte) []string {
	t.Helper()
	var out string
	q := fmt.Sprintf("SELECT CONVERT(CAST(X'%s' AS CHAR CHARACTER SET %s) USING utf8mb4)", hex.EncodeToString(bytes.Join(codes, sep)), charset)
	if err := db.QueryRowContext(t.Context(), q).Scan(&out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	if len(lines) != len(codes) {
		t.Fatalf("the server converted %d codes of %s into %d lines", len(codes), charset, len(lines))
	}
	return lines
}

// TestFormatInet6PrintsAsMariaDB: INET6 values print as MariaDB prints them (these
// outputs are the server's): the first longest run of zero groups, even a single one, is
// "::", and the IPv4-compatible and IPv4-mapped forms end in dotted decimal.
func TestFormatInet6PrintsAsMariaDB(t *testing.T) {
	for in, want := range map[string]string{
		"00000000000000000000000000000000": "::",
		"00000000000000000000000000000001": "::1",
		"00000000000000000000000001020304": "::1.2.3.4",
		"00000000000000000000ffff01020304": "::ffff:1.2.3.4",
		"00010000000000000000000000000000": "1::",
		"20010db8000000000001000000000001": "2001:db8::1:0:0:1",
		"20010db8000000010001000100010001": "2001:db8::1:1:1:1:1",
		"00000000000000000000000001020000": "::1.2.0.0",
		"00000000000000000000ffff00000000": "::ffff:0.0.0.0",
		"0000000000000000000000000000ffff": "::ffff",
		"00000000000000000001ffff01020304": "::1:ffff:102:304",
		"fe800000000000000202b3fffe1e8329": "fe80::202:b3ff:fe1e:8329",
	} {
		b, _ := hex.DecodeString(in)
		if got := formatInet6(string(b)); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
	if got := formatUUID(string([]byte{0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x55, 0x44, 0, 0})); got != "123e4567-e89b-12d3-a456-426655440000" {
		t.Errorf("UUID %q", got)
	}
	if got := formatInet4(string([]byte{192, 0, 2, 255})); got != "192.0.2.255" {
		t.Errorf("INET4 %q", got)
	}
}

// TestCharsetDecodersDecodeTextAsEachCharacterAlone: a value mixing ASCII, characters
// the server maps otherwise than x/text (and user-defined ones) and ordinary characters
// decodes to the characters the server gives each code (SELECT CONVERT(CONVERT(UNHEX(code)
// USING charset) USING utf8mb4) on MariaDB 10.11, written out here, so that the exception
// tables are checked without a database too).
func TestCharsetDecodersDecodeTextAsEachCharacterAlone(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for charset, codes := range map[string][][2]string{ // code in hex, the server's text
		"big5":    {{"41", "A"}, {"a145", "\u2022"}, {"c6a1", "\u30fe"}, {"c7fc", "\u247d"}, {"a4a4", "\u4e2d"}, {"ae77", "\u5eab"}, {"a440", "\u4e00"}},
		"gb2312":  {{"20", " "}, {"a1a4", "\u30fb"}, {"a1aa", "\u2015"}, {"bfe2", "\u5e93"}, {"b4e6", "\u5b58"}},
		"sjis":    {{"5c", "\\"}, {"815f", "\\"}, {"8160", "\u301c"}, {"b1", "\uff71"}, {"8aa4", "\u4f83"}, {"8dc9", "\u5bb0"}},
		"cp932":   {{"7e", "~"}, {"f040", "\ue000"}, {"f9fc", "\ue757"}, {"b1", "\uff71"}, {"8aa4", "\u4f83"}, {"ed40", "\u7e8a"}},
		"ujis":    {{"61", "a"}, {"a1c1", "\u301c"}, {"f5a1", "\ue000"}, {"8ff5a1", "\ue3ac"}, {"8fa2b7", "~"}, {"8eb1", "\uff71"}, {"bad8", "\u658e"}, {"b8cb", "\u5eab"}},
		"eucjpms": {{"61", "a"}, {"8ff3f3", "\u2170"}, {"fefe", "\ue3ab"}, {"8ffefe", "\ue757"}, {"8fa2c3", "\uffe4"}, {"8eb1", "\uff71"}, {"bad8", "\u658e"}},
	} {
		d := charsetDecoders[charset]
		var value []byte
		var want strings.Builder
		for range 200 {
			c := codes[rng.IntN(len(codes))]
			code, _ := hex.DecodeString(c[0])
			value = append(value, code...)
			want.WriteString(c[1])
		}
		if got := d.decode(string(value)); got != want.String() {
			t.Errorf("%s: %x decodes to %q; the server gives %q", charset, value, got, want.String())
		}
	}
}
