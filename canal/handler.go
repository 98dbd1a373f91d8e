package canal

import "context"

// Handler receives a stream's committed transactions, one call at a time, in binlog order.
// A change and its values stay valid after the call returns. An error stops the stream.
type Handler interface {
	// Row is called for each row change of the current transaction.
	Row(ctx context.Context, c *RowChange) error
	// Commit ends the current transaction; pos is the position just after it, the
	// only kind of position a checkpoint may hold. Transactions without row changes
	// (DDL, other tables) are committed too, so the position keeps moving.
	Commit(ctx context.Context, pos Position) error
	// Idle is called between transactions when the server says it has nothing new (a
	// heartbeat, about every second of silence): a chance to finish work that waits for
	// the next transaction boundary.
	Idle(ctx context.Context) error
}

// TransactionBeginner is a Handler told when a transaction starts (its GTID event, or
// its BEGIN without one, or a DDL statement's), before any of its events is matched by
// the table filter: the boundary at which to change what the transaction is read with
// (Stream.SetFilter).
type TransactionBeginner interface {
	Begin(ctx context.Context) error
}

// TableEmptier is a Handler that takes tables emptied by DDL. For one, DDL that empties
// a table (TRUNCATE, DROP TABLE) for which TableFilter.StatefulAlone holds does not stop
// the stream (ErrStatefulTableEmptied): Emptied is called instead.
type TableEmptier interface {
	// Emptied is called for each such table of the statement, before the statement's
	// Commit. src is the statement's: its first event, GTID, time, and row 0.
	Emptied(ctx context.Context, schema, table string, src Source) error
}
