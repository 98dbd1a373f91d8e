package inventory

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/stocksync/stocksync/internal/httpapi"
)

// apiError is the body of every error answer: {"code": "...", "message": "..."}, plus the
// items short on a 409 insufficient_stock.
type apiError struct {
	Code    string     `json:"code"`
	Message string     `json:"message"`
	Short   []Shortage `json:"short,omitempty"`
}

// retryAfter is the Retry-After of a 503 answered because the inventory database is
// unavailable: a second, then clients back off (docs/api.md, Retrying).
const retryAfter = "1"

// errorStatus maps an operation's error to its HTTP status and code. It is the only place
// errors are classified for HTTP. database names the inventory database in the message of
// a 503 answered because it is unavailable (its address; "" when not known).
func errorStatus(err error, database string) (int, apiError) {
	body := apiError{Message: err.Error()}
	var validation *ValidationError
	var shortage *ShortageError
	var tooLarge *http.MaxBytesError
	if reason := unavailableReason(err); reason != "" {
		// Before the context's errors: a connect that reached its deadline is an outage.
		return http.StatusServiceUnavailable, apiError{Code: "unavailable", Message: unavailableMessage(err, reason, database)}
	}
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, apiError{Code: "body_too_large", Message: fmt.Sprintf("request body over %d bytes", tooLarge.Limit)}
	case errors.As(err, &validation):
		body.Code = "invalid_request"
		return http.StatusBadRequest, body
	case errors.As(err, &shortage):
		body.Code, body.Short = "insufficient_stock", shortage.Items
		return http.StatusConflict, body
	case errors.Is(err, ErrNotFound):
		body.Code = "not_found"
		return http.StatusNotFound, body
	case errors.Is(err, ErrShipped):
		body.Code = "already_shipped"
		return http.StatusConflict, body
	case errors.Is(err, ErrCancelled):
		body.Code = "order_cancelled"
		return http.StatusConflict, body
	case errors.Is(err, ErrExpired):
		body.Code = "hold_expired"
		return http.StatusConflict, body
	case errors.Is(err, ErrNotHeld):
		body.Code = "order_not_held"
		return http.StatusConflict, body
	case errors.Is(err, ErrNotConfirmed):
		body.Code = "order_not_confirmed"
		return http.StatusConflict, body
	case errors.Is(err, ErrOrderConflict):
		body.Code = "order_conflict"
		return http.StatusConflict, body
	case errors.Is(err, ErrRequestConflict):
		body.Code = "request_conflict"
		return http.StatusConflict, body
	case errors.Is(err, ErrUnknownSKU):
		body.Code = "unknown_sku"
		return http.StatusUnprocessableEntity, body
	case errors.Is(err, ErrUnknownWarehouse):
		body.Code = "unknown_warehouse"
		return http.StatusUnprocessableEntity, body
	case errors.Is(err, ErrUnknownActivity):
		body.Code = "unknown_activity"
		return http.StatusUnprocessableEntity, body
	case errors.Is(err, ErrActivityInactive):
		body.Code = "activity_inactive"
		return http.StatusUnprocessableEntity, body
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, apiError{Code: "unavailable", Message: "request cancelled or timed out"}
	}
	return http.StatusInternalServerError, apiError{Code: "internal", Message: "internal error"}
}

// Handler serves the inventory API under /v1/ (see docs/api.md). When Options.Token is
// set every request needs "Authorization: Bearer <token>". A known path asked with a
// method it does not serve answers 405 method_not_allowed with an Allow header; any other
// path under /v1/ answers 404 not_found.
func (s *Store) Handler() http.Handler {
	routes := []httpapi.Route{
		{Method: "POST", Path: "/v1/skus/{sku}/stock", Handle: s.handleSetStock},
		{Method: "POST", Path: "/v1/skus/{sku}/adjust", Handle: s.handleAdjust},
		{Method: "POST", Path: "/v1/skus/{sku}/reshard", Handle: s.handleReshard},
		{Method: "GET", Path: "/v1/skus/{sku}", Handle: s.handleGet},
		{Method: "PUT", Path: "/v1/skus/{sku}/activities/{activity}", Handle: s.handlePutActivity},
		{Method: "POST", Path: "/v1/deductions", Handle: s.handleDeduct},
		{Method: "GET", Path: "/v1/orders", Handle: s.handleListOrders},
		{Method: "GET", Path: "/v1/orders/{order_no}", Handle: s.handleGetOrder},
		{Method: "POST", Path: "/v1/orders/{order_no}/confirm", Handle: s.handleConfirm},
		{Method: "POST", Path: "/v1/orders/{order_no}/cancel", Handle: s.handleCancel},
		{Method: "POST", Path: "/v1/orders/{order_no}/ship", Handle: s.handleShip},
		{Method: "POST", Path: "/v1/orders/{order_no}/extend", Handle: s.handleExtend},
		{Method: "GET", Path: "/v1/warehouses", Handle: s.handleListWarehouses},
		{Method: "GET", Path: "/v1/warehouses/{code}", Handle: s.handleGetWarehouse},
		{Method: "PUT", Path: "/v1/warehouses/{code}", Handle: s.handlePutWarehouse},
		{Method: "POST", Path: "/v1/physical", Handle: s.handleSyncPhysical},
		{Method: "POST", Path: "/v1/physical/{sku}", Handle: s.handleSyncPhysicalSKU},
	}
	for i, r := range routes {
		routes[i].Handle = s.instrument(r.Method+" "+r.Path, limitBody(s.maxBodyBytes(r.Path), r.Handle))
	}
	return httpapi.RequireToken(s.opts.Token, httpapi.Routes("/v1/", "an inventory API call", routes))
}

// maxBodyBytes is the body limit of the route on path: the physical syncs' is larger.
func (s *Store) maxBodyBytes(path string) int64 {
	if path == "/v1/physical" || strings.HasPrefix(path, "/v1/physical/") {
		return s.opts.MaxSyncBodyBytes
	}
	return s.opts.MaxBodyBytes
}

// limitBody lets handle read at most maxBytes of a request's body (413 body_too_large past
// them).
func limitBody(maxBytes int64, handle http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBytes)
		handle(w, r)
	}
}

func (s *Store) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, body := errorStatus(err, s.opts.DatabaseAddr)
	callerGone := r.Context().Err() != nil
	if callerGone {
		// The caller hung up or timed out. Whatever that made the operation return (a
		// cancelled query, or database/sql's "transaction has already been committed or
		// rolled back" once it rolled the transaction back), it is no fault of the server.
		status, body = errorStatus(r.Context().Err(), "")
	}
	if status == http.StatusServiceUnavailable && !callerGone {
		w.Header().Set("Retry-After", retryAfter)
	}
	if status >= 500 && !callerGone {
		s.log.Error("inventory request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
	} else {
		s.log.Debug("inventory request refused", zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.Int("status", status), zap.Error(err))
	}
	if rec, ok := w.(*statusRecorder); ok {
		rec.code = body.Code
	}
	httpapi.WriteJSON(w, status, body)
}

func (s *Store) handleSetStock(w http.ResponseWriter, r *http.Request) {
	sellable, shards, err := readSetStock(r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.SetStock(r.Context(), r.PathValue("sku"), sellable, shards)
	s.answer(w, r, http.StatusOK, out, err)
}

func (s *Store) handleAdjust(w http.ResponseWriter, r *http.Request) {
	req, err := readAdjust(r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req.SKU = r.PathValue("sku")
	out, err := s.Adjust(r.Context(), req)
	s.answer(w, r, http.StatusOK, out, err)
}

func (s *Store) handleReshard(w http.ResponseWriter, r *http.Request) {
	shards, err := readReshard(r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.Reshard(r.Context(), r.PathValue("sku"), shards)
	s.answer(w, r, http.StatusOK, out, err)
}

func (s *Store) handleGet(w http.ResponseWriter, r *http.Request) {
	out, err := s.Get(r.Context(), r.PathValue("sku"))
	s.answer(w, r, http.StatusOK, out, err)
}

func (s *Store) handlePutActivity(w http.ResponseWriter, r *http.Request) {
	qty, startsAt, endsAt, err := readActivity(r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.PutActivity(r.Context(), Activity{SKU: r.PathValue("sku"), Activity: r.PathValue("activity"),
		Qty: qty, StartsAt: startsAt, EndsAt: endsAt})
	s.answer(w, r, http.StatusOK, out, err)
}

func (s *Store) handleDeduct(w http.ResponseWriter, r *http.Request) {
	req, err := readDeduction(r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.Deduct(r.Context(), req)
	status := http.StatusCreated
	if out.Replayed {
		status = http.StatusOK
	}
	s.answer(w, r, status, out, err)
}

func (s *Store) handleGetOrder(w http.ResponseWriter, r *http.Request) {
	out, err := s.GetOrder(r.Context(), r.PathValue("order_no"))
	s.answer(w, r, http.StatusOK, out, err)
}

func (s *Store) handleListOrders(w http.ResponseWriter, r *http.Request) {
	q, err := readOrderQuery(r.URL.RawQuery)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.ListOrders(r.Context(), q)
	s.answer(w, r, http.StatusOK, out, err)
}

func (s *Store) handleConfirm(w http.ResponseWriter, r *http.Request) {
	var body struct{}
	if err := decode(r.Body, &body, true); err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.Confirm(r.Context(), r.PathValue("order_no"))
	s.answer(w, r, http.StatusOK, out, err)
}

func (s *Store) handleCancel(w http.ResponseWriter, r *http.Request) {
	var body struct{}
	if err := decode(r.Body, &body, true); err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.Cancel(r.Context(), r.PathValue("order_no"))
	s.answer(w, r, http.StatusOK, out, err)
}

func (s *Store) handleShip(w http.ResponseWriter, r *http.Request) {
	warehouse, err := readShip(r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.Ship(r.Context(), r.PathValue("order_no"), warehouse)
	s.answer(w, r, http.StatusOK, out, err)
}

func (s *Store) handleExtend(w http.ResponseWriter, r *http.Request) {
	ttl, err := readExtend(r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.Extend(r.Context(), r.PathValue("order_no"), ttl)
	s.answer(w, r, http.StatusOK, out, err)
}

func (s *Store) handleListWarehouses(w http.ResponseWriter, r *http.Request) {
	out, err := s.ListWarehouses(r.Context())
	s.answer(w, r, http.StatusOK, out, err)
}

func (s *Store) handleGetWarehouse(w http.ResponseWriter, r *http.Request) {
	out, err := s.GetWarehouse(r.Context(), r.PathValue("code"))
	s.answer(w, r, http.StatusOK, out, err)
}

func (s *Store) handlePutWarehouse(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name    string `json:"name"`
		Address string `json:"address"`
		Type    string `json:"type"`
	}
	if err := decode(r.Body, &body, false); err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.PutWarehouse(r.Context(), Warehouse{Code: r.PathValue("code"), Name: body.Name, Address: body.Address, Type: body.Type})
	s.answer(w, r, http.StatusOK, out, err)
}

type syncAnswer struct {
	Written int `json:"written"`
}

func (s *Store) handleSyncPhysical(w http.ResponseWriter, r *http.Request) {
	levels, err := readLevels(r.Body, false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	n, err := s.SyncPhysical(r.Context(), levels)
	s.answer(w, r, http.StatusOK, syncAnswer{Written: n}, err)
}

func (s *Store) handleSyncPhysicalSKU(w http.ResponseWriter, r *http.Request) {
	levels, err := readLevels(r.Body, true)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	n, err := s.SyncPhysicalSKU(r.Context(), r.PathValue("sku"), levels)
	s.answer(w, r, http.StatusOK, syncAnswer{Written: n}, err)
}

func (s *Store) answer(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, status, v)
}

// readOrderQuery reads GET /v1/orders' query string: status, sku, limit and after, each
// at most once and not empty; any other is refused, naming it, as is a query string that
// does not parse.
func readOrderQuery(rawQuery string) (OrderQuery, error) {
	values, err := parseQuery(rawQuery)
	if err != nil {
		return OrderQuery{}, err
	}
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	sort.Strings(names)
	var q OrderQuery
	for _, name := range names {
		vs := values[name]
		if len(vs) > 1 {
			return q, invalid(name, "appears %d times; give it once", len(vs))
		}
		v := vs[0]
		switch name {
		case "status":
			q.Status = OrderStatus(v)
			if v == "" {
				return q, invalid(name, "must be held, confirmed, shipped, cancelled or expired, got \"\" (leave it out for every status)")
			}
		case "sku":
			if v == "" {
				return q, invalid(name, "must not be empty (leave it out for every SKU)")
			}
			q.SKU = v
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return q, invalid(name, "must be an integer between 1 and %d, got %q", maxListLimit, v)
			}
			q.Limit = n
		case "after":
			if v == "" {
				return q, invalid(name, "must not be empty (leave it out for the first page)")
			}
			q.After = v
		default:
			return q, invalid(name, "is not a parameter of GET /v1/orders (status, sku, limit, after)")
		}
	}
	_, _, err = checkOrderQuery(q) // here too, so that a 400 names the parameter first
	return q, err
}

// parseQuery parses a request's raw query string, refusing one that does not parse
// whole. url.URL.Query drops the pairs it cannot read (an invalid %-escape, a ';'), and a
// filter dropped so would list what the caller did not ask for. The error names the
// first pair that does not parse, by its name as sent.
func parseQuery(rawQuery string) (url.Values, error) {
	values, err := url.ParseQuery(rawQuery)
	if err == nil {
		return values, nil
	}
	for pair := range strings.SplitSeq(rawQuery, "&") {
		if _, pairErr := url.ParseQuery(pair); pairErr != nil {
			name, _, _ := strings.Cut(pair, "=")
			return nil, invalid(name, "cannot be read from the query string (%v): escape %%, ; and & in names and values", pairErr)
		}
	}
	return nil, invalid("query string", "does not parse (%v)", err)
}
