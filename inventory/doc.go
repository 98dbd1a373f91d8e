// Package inventory owns the stock schema (sellable stock split over shard rows, reserved,
// physical per warehouse, activity stock, warehouses, and the deduction, rollback and hold
// records) and every operation on it: idempotent, all-or-nothing deductions that never
// oversell, confirm, cancel, ship, hold expiry and extension, resharding and warehouse
// sync. Hold expiry and activity windows follow the database server's clock (serverClock),
// so that several daemons on one database agree on them.
//
// A Store serves the operations as a Go API and over HTTP under /v1. It never publishes
// anything itself: its writes reach Kafka through the binlog pipeline like any other table.
// Migrations are embedded and applied with goose (Migrate, CheckSchema).
package inventory
