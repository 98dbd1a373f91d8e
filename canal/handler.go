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

// TableReseeder is a Handler that can seed its aggregate and transition rules again from
// their tables as they are now. DDL that moves or removes rows of a table such a rule reads
// without row events, where TableEmptier does not apply (a rule that reads other tables
// too, a rename, DROP DATABASE), is handed to ReseedAfter instead of stopping the stream
// (ErrStatefulTableEmptied).
type TableReseeder interface {
	// ReseedAfter is called once for such a statement, after the tables it emptied for
	// rules that read them alone (Emptied) and before its Commit.
	ReseedAfter(ctx context.Context, ddl RowlessChange) error
}

// RowlessChange is a DDL statement that moved or removed rows of tables that aggregate or
// transition rules read, without row events.
type RowlessChange struct {
	// What says what the statement did to which tables, for a log: "TRUNCATE of
	// shop.stock", "RENAME TABLE of shop.stock to shop.stock_old".
	What string
	// Tables are the tables whose rows went or arrived, as [schema, table]; Schemas the
	// databases dropped with every table in them.
	Tables  [][2]string
	Schemas []string
	// Src is the statement's source: its first event, GTID and time.
	Src Source
}
