// Package sqlconn opens database/sql handles on the source server the one way stocksync
// connects to it: TCP or a Unix socket (an address starting with /), TLS when configured,
// times parsed in UTC, a 5 s connect timeout and the caller's session statements run on
// every new connection.
package sqlconn
