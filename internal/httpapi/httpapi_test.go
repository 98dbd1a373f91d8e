package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
		{`{"items": [{"sku": "a", "qty": "1"}]}`, `field "items[0].qty" must be an integer, not string`},
		{`{"items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}, {"sku": "c", "qty": "1"}]}`, `field "items[2].qty" must be an integer, not string`},
		{`{"items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 1.5}]}`, `field "items[1].qty" must be an integer, not number 1.5`},
		{`{"items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": {"n": 1}}]}`, `field "items[1].qty" must be an integer, not object`},
		{`{"items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": [1]}]}`, `field "items[1].qty" must be an integer, not array`},
		{`{"items": [{"sku": "a", "qty": 1}, 5]}`, `field "items[1]" must be an object, not number`},
		{`{"items": [{"sku": "a", "qty": 1}, {"sku": "b", "QTY": 1}, {"sku": "c", "qty": "1"}]}`, `unknown field "items[1].QTY"`},
		{`{"items": [{"sku": "a", "qty": "1"}], "colour": "red"}`, `field "items[0].qty" must be an integer`},
		{`{"Extra": {"a": 1, "b": "2"}}`, `field "Extra.b" must be an integer, not string`},
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
		{` null `, `the body must be an object, not null`},
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

// A body of null is refused, optional or not and into an array as into an object:
// encoding/json would leave the value as it was, as if an empty request had been sent.
func TestDecodeJSONRefusesANullBody(t *testing.T) {
	var levels []struct {
		Qty *int64 `json:"qty"`
	}
	if err := DecodeJSON(strings.NewReader("null"), &levels, false); err == nil || !strings.Contains(err.Error(), "the body must be an array, not null") {
		t.Errorf("DecodeJSON(null) into an array = %v; want it refused as not an array", err)
	}
	var empty struct{}
	if err := DecodeJSON(strings.NewReader("\nnull\n"), &empty, true); err == nil || !strings.Contains(err.Error(), "the body must be an object, not null") {
		t.Errorf("DecodeJSON(null) as an optional body = %v; want it refused", err)
	}
	if err := DecodeJSON(strings.NewReader("[]"), &levels, false); err != nil || levels == nil || len(levels) != 0 {
		t.Errorf("DecodeJSON([]) = %v, %v; want an empty array accepted", err, levels)
	}
}

// A \uXXXX escape of half a surrogate pair is refused where it is, naming the field: read
// as U+FFFD by encoding/json, "sur-\ud800" and "sur-\udbff" would be one order number.
func TestDecodeJSONRefusesHalfASurrogatePair(t *testing.T) {
	type item struct {
		SKU string `json:"sku"`
	}
	type request struct {
		OrderNo string            `json:"order_no"`
		Items   []item            `json:"items"`
		Extra   map[string]string `json:"extra"`
	}
	for _, tc := range []struct{ body, want string }{
		{`{"order_no": "sur-\ud800"}`, `field "order_no" has \ud800, half of a UTF-16 surrogate pair`},
		{`{"order_no": "sur-\udbff"}`, `field "order_no" has \udbff`},
		{`{"order_no": "sur-\uDC00"}`, `field "order_no" has \uDC00`},
		{`{"order_no": "\ud83d\u0041"}`, `field "order_no" has \ud83d`},
		{`{"order_no": "\ud83d\ud83d\ude00"}`, `field "order_no" has \ud83d`},
		{`{"order_no": "\ude00\ud83d"}`, `field "order_no" has \ude00`},
		{`{"order_no": "tail\ud83d"}`, `field "order_no" has \ud83d`},
		{`{"items": [{"sku": "a"}, {"sku": "b\udfff"}]}`, `field "items[1].sku" has \udfff`},
		{`{"extra": {"k\ud800": "v"}}`, `a field name in field "extra" has \ud800`},
	} {
		var v request
		if err := DecodeJSON(strings.NewReader(tc.body), &v, false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeJSON(%s) = %v; want an error saying %q", tc.body, err, tc.want)
		}
	}
	var body string
	if err := DecodeJSON(strings.NewReader(`"\ud800"`), &body, false); err == nil || !strings.Contains(err.Error(), `the body has \ud800`) {
		t.Errorf(`DecodeJSON("\ud800") = %v; want an error saying the body has \ud800`, err)
	}
	// Whole pairs, other escapes and a U+FFFD sent as such are characters like any other.
	for body, want := range map[string]string{
		`{"order_no": "\ud83d\ude00"}`:           "\U0001F600",
		`{"order_no": "\uD83D\uDE00x"}`:          "\U0001F600x",
		`{"order_no": "\ufffd"}`:                 "\uFFFD",
		`{"order_no": "\\ud800"}`:                `\ud800`,
		`{"order_no": "\"\\\u00e9\n"}`:           "\"\\\u00e9\n",
		`{"order_no": "a\/b\u0041\ud7ff\ue000"}`: "a/bA\ud7ff\ue000",
	} {
		var v request
		if err := DecodeJSON(strings.NewReader(body), &v, false); err != nil || v.OrderNo != want {
			t.Errorf("DecodeJSON(%s) = %q, %v; want %q", body, v.OrderNo, err, want)
		}
	}
}

// A path a ServeMux would redirect (an empty, "." or ".." segment, or the prefix without
// its slash) answers a JSON 404 where it is, never a redirect with an HTML body.
func TestRoutesAnswerOddPathsWithJSON404(t *testing.T) {
	served := func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"sku": r.PathValue("sku"), "order_no": r.PathValue("order_no")})
	}
	handler := Routes("/v1/", "an API call", []Route{
		{Method: "POST", Path: "/v1/skus/{sku}/stock", Handle: served},
		{Method: "GET", Path: "/v1/skus/{sku}", Handle: served},
		{Method: "POST", Path: "/v1/orders/{order_no}/cancel", Handle: served},
	})
	for _, tc := range []struct{ method, path, wantMessage string }{
		{"GET", "/v1", "GET /v1 is not an API call"},
		{"POST", "/v1/skus//stock", "POST /v1/skus//stock is not an API call: it has an empty segment"},
		{"POST", "/v1/orders//cancel", "it has an empty segment"},
		{"GET", "/v1//skus/a", "it has an empty segment"},
		{"GET", "/v1/skus/./a", `it has a "." segment`},
		{"GET", "/v1/skus/b/../a", `it has a ".." segment`},
		{"GET", "/v1/skus/a/.", `it has a "." segment`},
	} {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		var body Error
		err := json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != http.StatusNotFound || rec.Header().Get("Location") != "" || rec.Header().Get("Content-Type") != "application/json" ||
			err != nil || body.Code != "not_found" || !strings.Contains(body.Message, tc.wantMessage) {
			t.Errorf("%s %s = %d (Location %q) %q; want a JSON 404 not_found saying %q", tc.method, tc.path, rec.Code,
				rec.Header().Get("Location"), rec.Body, tc.wantMessage)
		}
	}
	// Escaped slashes are part of a segment, and a trailing slash is no empty segment.
	for _, tc := range []struct {
		method, path string
		wantStatus   int
		wantBody     string
	}{
		{"GET", "/v1/skus/a%2F%2Fb", http.StatusOK, `"sku":"a//b"`},
		{"POST", "/v1/orders/a%2F..%2Fb/cancel", http.StatusOK, `"order_no":"a/../b"`},
		{"GET", "/v1/skus/a/", http.StatusNotFound, `is not an API call"`},
	} {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.wantStatus || !strings.Contains(rec.Body.String(), tc.wantBody) {
			t.Errorf("%s %s = %d %q; want %d with %s", tc.method, tc.path, rec.Code, rec.Body, tc.wantStatus, tc.wantBody)
		}
	}
}
