// Package canal reads a MySQL or MariaDB binlog as a replica and turns it into whole
// committed transactions of row changes in stocksync's own types, and reads tables as of
// a binlog position: whole (Snapshot) or a chunk at a time (ChunkReader). It also keeps the
// checkpoint (the position after the last transaction the broker acknowledged), the
// leader lock and its lease for a standby, and checks that the server's binlog settings
// can be read at all and that source.user may read the tables rules match (at start, and
// in the stream for a glob that is a pattern), and lists the foreign keys whose cascades
// change a table without a row in the binlog. It is the only package that
// imports go-mysql.
package canal
