// Package httpapi holds what the daemon's JSON endpoints (the inventory API under /v1 and
// the admin calls under /admin) share: the bearer token check and writing a JSON answer.
package httpapi
