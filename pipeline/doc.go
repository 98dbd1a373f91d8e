// Package pipeline joins the parts: it reads committed transactions from canal, runs each
// row change through the rules engine, emits the messages to a sink and, every
// checkpoint interval, waits for the sink to acknowledge everything emitted and then saves
// the position of the last whole transaction with the rule state as of that position.
// Between transactions it serves resyncs: the state of aggregate and transition rules,
// and re-reads of row rules' tables in chunks, whose progress the checkpoint keeps so that
// the next run goes on with them. Under a standby's lease it emits and saves nothing once
// the lease is not held.
package pipeline
