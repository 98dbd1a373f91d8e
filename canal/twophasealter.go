package canal

import "github.com/go-mysql-org/go-mysql/replication"

// alterPhase is the part of an ALTER TABLE a MariaDB GTID event announces when the server
// binlogs ALTERs in two phases (binlog_alter_two_phase=ON, MariaDB 10.8+): the statement is
// written once as it starts and again, in a group of its own, once it committed or was
// rolled back. Only the second of a committed one changed the table.
type alterPhase byte

const (
	alterWhole alterPhase = iota // an ordinary group
	alterStarted
	alterCommitted
	alterRolledBack
)

// The MariaDB GTID event's flags (flags2) and extra flags (flags_extra) that locate and
// name an ALTER's phase (sql/log_event.h).
const (
	mariadbGroupCommitID = 0x02
	mariadbCompletedXA   = 0x80
	mariadbStartAlter    = 0x02
	mariadbCommitAlter   = 0x04
	mariadbRollbackAlter = 0x08
)

// mariadbAlterPhase reads the alter phase of the MariaDB GTID event ev from its raw bytes
// (go-mysql does not decode flags_extra); checksummed says the event ends in a CRC32.
// Its body is seq_no (8), domain_id (4), flags2 (1), then the commit id when flagged, an
// XA transaction's XID when flagged, and flags_extra when the body goes on that far.
func mariadbAlterPhase(ev *replication.BinlogEvent, flags2 byte, checksummed bool) alterPhase {
	body := ev.RawData[min(replication.EventHeaderSize, len(ev.RawData)):]
	if checksummed {
		body = body[:max(0, len(body)-replication.BinlogChecksumLength)]
	}
	at := 13
	if flags2&mariadbGroupCommitID != 0 {
		at += 8
	}
	if flags2&(mariadbPreparedXA|mariadbCompletedXA) != 0 {
		if at+6 > len(body) {
			return alterWhole
		}
		at += 6 + int(body[at+4]) + int(body[at+5]) // formatID, gtrid and bqual lengths, data
	}
	if at >= len(body) {
		return alterWhole
	}
	switch extra := body[at]; {
	case extra&mariadbStartAlter != 0:
		return alterStarted
	case extra&mariadbCommitAlter != 0:
		return alterCommitted
	case extra&mariadbRollbackAlter != 0:
		return alterRolledBack
	}
	return alterWhole
}
