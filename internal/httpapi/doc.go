// Package httpapi holds what the daemon's JSON endpoints (the inventory API under /v1 and
// the admin calls under /admin) share: routes with their 404 and 405 answers, the bearer
// token check, reading a JSON body and writing a JSON answer.
package httpapi
