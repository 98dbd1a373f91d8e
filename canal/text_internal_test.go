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
					got := d.decode(code)
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
		if got := formatInet6(b); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
	if got := formatUUID([]byte{0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x55, 0x44, 0, 0}); got != "123e4567-e89b-12d3-a456-426655440000" {
		t.Errorf("UUID %q", got)
	}
	if got := formatInet4([]byte{192, 0, 2, 255}); got != "192.0.2.255" {
		t.Errorf("INET4 %q", got)
	}
}

// TestCharsetDecodersDecodeTextAsEachCharacterAlone: a value mixing ASCII, characters
// the server maps otherwise than x/text (and user-defined ones) and ordinary characters
// decodes as its characters would one by one, which is what
// TestCharsetDecodersConvertAsTheServerDoes checks against the server.
func TestCharsetDecodersDecodeTextAsEachCharacterAlone(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for charset, codes := range map[string][]string{
		"big5":    {"41", "a145", "c6a1", "c7fc", "a4a4", "ae77", "a440"},
		"gb2312":  {"20", "a1a4", "a1aa", "bfe2", "b4e6"},
		"sjis":    {"5c", "815f", "8160", "b1", "8aa4", "8dc9"},
		"cp932":   {"7e", "f040", "f9fc", "b1", "8aa4", "ed40"},
		"ujis":    {"61", "a1c1", "f5a1", "8ff5a1", "8fa2b7", "8eb1", "bad8", "b8cb"},
		"eucjpms": {"61", "8ff3f3", "fefe", "8ffefe", "8fa2c3", "8eb1", "bad8"},
		"koi8u":   {"41", "95", "ae", "c1"},
		"latin1":  {"41", "81", "e9", "80"},
	} {
		d := charsetDecoders[charset]
		var value []byte
		var want strings.Builder
		for range 200 {
			code, _ := hex.DecodeString(codes[rng.IntN(len(codes))])
			value = append(value, code...)
			want.WriteString(d.decode(code))
		}
		if got := d.decode(value); got != want.String() {
			t.Errorf("%s: %x decodes to %q, its characters one by one to %q", charset, value, got, want.String())
		}
	}
}
