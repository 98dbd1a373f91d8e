package httpapi

import (
	"strings"
	"testing"
	"time"
)

// DecodeJSON's refusals say what is wrong in the API's words: the field, what it must
// be, and never a Go type.
func TestDecodeJSONSaysWhatIsWrong(t *testing.T) {
	type item struct {
		SKU string `json:"sku"`
		Qty int64  `json:"qty"`
	}
	type request struct {
		OrderNo  string     `json:"order_no"`
		Items    []item     `json:"items"`
		StartsAt *time.Time `json:"starts_at"`
		Extra    map[string]int
	}
	for _, tc := range []struct{ body, want string }{
		{`{"order_no": 5}`, `field "order_no" must be a string, not number`},
		{`{"items": [{"sku": "a", "qty": "1"}]}`, `field "items.qty" must be an integer, not string`},
		{`[1]`, `the body must be an object, not array`},
		{`{"ORDER_NO": "o1"}`, `unknown field "ORDER_NO" (did you mean "order_no"? names are case-sensitive)`},
		{`{"items": [{"sku": "a", "QTY": 1}]}`, `unknown field "items[0].QTY" (did you mean "items[0].qty"?`},
		{`{"order_no": "o1", "order_no": "o2"}`, `field "order_no" appears twice`},
		{`{"Extra": {"a": 1, "a": 2}}`, `field "Extra.a" appears twice`},
		{`{"colour": "red"}`, `unknown field "colour"`},
		{"{\"order_no\": \"o\xff\"}", `is not valid UTF-8 (byte 15)`},
		{`{"order_no": `, `it ends before the value does`},
		{`{} {}`, `must hold a single JSON value`},
		{`  `, `is empty`},
	} {
		var v request
		err := DecodeJSON(strings.NewReader(tc.body), &v, false)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "Go ") {
			t.Errorf("DecodeJSON(%q) = %v; want an error saying %q, without Go's words", tc.body, err, tc.want)
		}
	}
	var v request
	if err := DecodeJSON(strings.NewReader(`{"order_no": "o1", "items": [{"sku": "a", "qty": 1}], "starts_at": "2030-01-01T00:00:00Z", "Extra": {"a": 1}}`), &v, false); err != nil {
		t.Errorf("a right body was refused: %v", err)
	}
	if err := DecodeJSON(strings.NewReader(""), &v, true); err != nil {
		t.Errorf("an empty optional body was refused: %v", err)
	}
}
