package canal

import (
	"testing"
	"time"
)

func TestFormatDateTime(t *testing.T) {
	tm := time.Date(2024, 2, 9, 3, 4, 5, 123456789, time.UTC)
	cases := map[uint8]string{0: "2024-02-09T03:04:05Z", 1: "2024-02-09T03:04:05.1Z", 3: "2024-02-09T03:04:05.123Z", 6: "2024-02-09T03:04:05.123456Z"}
	for d, want := range cases {
		if got := formatDateTime(tm, d); got != want {
			t.Errorf("decimals %d: %s, want %s", d, got, want)
		}
	}
	if got := formatDateTime(time.Date(999, 12, 31, 23, 59, 59, 0, time.FixedZone("x", 3600)), 0); got != "0999-12-31T22:59:59Z" {
		t.Errorf("got %s", got)
	}
}
