package canal

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stocksync/stocksync/internal/sqlconn"
)

// StateRow is one piece of rule state (an aggregate's running sum for one group) kept in
// the same database transaction as the checkpoint it belongs to.
type StateRow struct {
	Scope string // the rule
	Key   string // the group
	Value []byte
}

// MaxStateScope is the longest scope (rule name) a state row can be saved under: the
// state table's scope is VARBINARY(255).
const MaxStateScope = 255

// The state table's other limits: a row's key is VARBINARY(2048), its value a BLOB. A key
// longer than maxStoredKey (a group_by over long text) is stored as longKeyMark and its
// SHA-256, the key itself at the head of the value (storedRow, loadedRow). No group key,
// a JSON object, begins with a NUL; the rules' own keys that do (their seed marker,
// "\x00seeded") are short, and stay as they are, as state saved before long keys has them.
const (
	maxStoredKey   = 2048
	maxStoredValue = 65535
	longKeyMark    = "\x00sha256:"
)

// storedRow is r as the state table holds it: its key and value as stored, or an error
// naming what does not fit.
func storedRow(r StateRow) (k string, v []byte, err error) {
	if len(r.Scope) > MaxStateScope {
		return "", nil, fmt.Errorf("the rule name %.40q… is %d bytes; its state can be saved under at most %d", r.Scope, len(r.Scope), MaxStateScope)
	}
	k, v = r.Key, r.Value
	if len(k) > maxStoredKey || strings.HasPrefix(k, longKeyMark) {
		sum := sha256.Sum256([]byte(k))
		k = longKeyMark + string(sum[:])
		if v != nil {
			v = binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(r.Key)+len(r.Value)), uint64(len(r.Key)))
			v = append(append(v, r.Key...), r.Value...)
		}
	}
	if len(v) > maxStoredValue {
		return "", nil, fmt.Errorf("the state of rule %s's group %.60q… is %d bytes with its key; a state row holds at most %d", r.Scope, r.Key, len(v), maxStoredValue)
	}
	return k, v, nil
}

// loadedRow is the state row the state table holds as scope, k, v (storedRow undone).
func loadedRow(scope, k string, v []byte) (StateRow, error) {
	if !strings.HasPrefix(k, longKeyMark) {
		return StateRow{Scope: scope, Key: k, Value: v}, nil
	}
	n, used := binary.Uvarint(v)
	if used <= 0 || n > uint64(len(v)-used) {
		return StateRow{}, fmt.Errorf("the state row of rule %s under a long group key holds no key of its own", scope)
	}
	key := v[used : used+int(n)]
	return StateRow{Scope: scope, Key: string(key), Value: v[used+int(n):]}, nil
}

// CheckpointStore keeps positions in a table on the source server: one row per pipeline
// name, and the rule state as of that position in a companion table named TABLE_state.
type CheckpointStore struct {
	db         *sql.DB
	given      string // checkpoint.table as given: schema.table
	table      string // quoted schema.table
	stateTable string
	name       string
}

// OpenCheckpointStore is the store of checkpoint name in table (schema.table) on db's
// server, without creating anything: for reading what a daemon saved (a table that does
// not exist holds no checkpoint) and for moving it (CreateTables first).
func OpenCheckpointStore(db *sql.DB, table, name string) (*CheckpointStore, error) {
	schema, tbl, ok := strings.Cut(table, ".")
	if !ok || schema == "" || tbl == "" {
		return nil, fmt.Errorf("checkpoint.table %q must be schema.table", table)
	}
	return &CheckpointStore{db: db, name: name, given: table,
		table:      quoteName(schema) + "." + quoteName(tbl),
		stateTable: quoteName(schema) + "." + quoteName(tbl+"_state")}, nil
}

// Tables are the store's two tables as schema.table, unquoted: what its saves write.
func (c *CheckpointStore) Tables() []string { return CheckpointTables(c.given) }

// CheckpointTables are the tables a store in checkpoint.table table (schema.table) keeps,
// as schema.table: table itself and its TABLE_state companion. They are stocksync's own:
// no rule reads their changes, whatever its globs, and no check of the rules against the
// source's tables looks at them.
func CheckpointTables(table string) []string { return []string{table, table + "_state"} }

// NewCheckpointStore opens the store (OpenCheckpointStore) and creates its schema and
// tables if missing (CreateTables). table is schema.table.
func NewCheckpointStore(ctx context.Context, db *sql.DB, table, name string) (*CheckpointStore, error) {
	c, err := OpenCheckpointStore(db, table, name)
	if err != nil {
		return nil, err
	}
	if err := c.CreateTables(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// CreateTables creates the store's schema and tables if missing.
func (c *CheckpointStore) CreateTables(ctx context.Context) error {
	schema, _, _ := strings.Cut(c.given, ".")
	schema = quoteName(schema)
	stmts := []string{
		"CREATE DATABASE IF NOT EXISTS " + schema,
		"CREATE TABLE IF NOT EXISTS " + c.table + ` (
			name VARBINARY(64) NOT NULL PRIMARY KEY,
			file VARCHAR(255) NOT NULL,
			pos BIGINT UNSIGNED NOT NULL,
			gtid_set TEXT NOT NULL,
			updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
		) ENGINE=InnoDB`,
		"CREATE TABLE IF NOT EXISTS " + c.stateTable + ` (
			name VARBINARY(64) NOT NULL,
			scope VARBINARY(255) NOT NULL,
			k VARBINARY(2048) NOT NULL,
			v BLOB NOT NULL,
			PRIMARY KEY (name, scope, k)
		) ENGINE=InnoDB`,
	}
	for _, s := range stmts {
		if _, err := c.db.ExecContext(ctx, s); err != nil {
			if n := sqlconn.ErrorNumber(err); n == 1044 || n == 1142 { // access denied to the database, or CREATE on the table
				return fmt.Errorf("creating checkpoint table %s (checkpoint.table): source.user may not create or write it there: "+
					"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON %s.* TO it, or name a database it may write in: %w", c.given, schema, err)
			}
			return fmt.Errorf("creating checkpoint table %s (checkpoint.table): %w", c.given, err)
		}
	}
	return nil
}

// Load returns the saved position and state; found is false on a first start. State
// rows without a position (its checkpoint row deleted by an operator, to start afresh)
// are deleted: a first start seeds the rules again, and they must not come back with the
// next restart.
func (c *CheckpointStore) Load(ctx context.Context) (pos Position, state []StateRow, found bool, err error) {
	var p uint64
	err = c.db.QueryRowContext(ctx, "SELECT file, pos, gtid_set FROM "+c.table+" WHERE name = ?", c.name).Scan(&pos.File, &p, &pos.GTIDSet)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := c.db.ExecContext(ctx, "DELETE FROM "+c.stateTable+" WHERE name = ?", c.name); err != nil {
			return Position{}, nil, false, fmt.Errorf("deleting the rule state of deleted checkpoint %q: %w", c.name, err)
		}
		return Position{}, nil, false, nil
	}
	if err != nil {
		return Position{}, nil, false, fmt.Errorf("loading checkpoint %q: %w", c.name, err)
	}
	pos.Pos = uint32(p)
	rows, err := c.db.QueryContext(ctx, "SELECT scope, k, v FROM "+c.stateTable+" WHERE name = ?", c.name)
	if err != nil {
		return Position{}, nil, false, fmt.Errorf("loading rule state of checkpoint %q: %w", c.name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var scope, k string
		var v []byte
		if err := rows.Scan(&scope, &k, &v); err != nil {
			return Position{}, nil, false, fmt.Errorf("loading rule state of checkpoint %q: %w", c.name, err)
		}
		r, err := loadedRow(scope, k, v)
		if err != nil {
			return Position{}, nil, false, fmt.Errorf("loading rule state of checkpoint %q: %w", c.name, err)
		}
		state = append(state, r)
	}
	return pos, state, true, rows.Err()
}

// Save writes pos and the state rows changed up to it in one transaction: after a crash
// the two always belong together. A row with a nil Value is deleted.
func (c *CheckpointStore) Save(ctx context.Context, pos Position, state []StateRow) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("saving checkpoint %s: %w", pos, err)
	}
	defer tx.Rollback()
	var upserts []StateRow // as stored
	var gone [][2]string   // scope and key, as stored
	for _, r := range state {
		k, v, err := storedRow(r)
		if err != nil {
			return fmt.Errorf("saving rule state with checkpoint %s: %w", pos, err)
		}
		if v != nil {
			upserts = append(upserts, StateRow{Scope: r.Scope, Key: k, Value: v})
			continue
		}
		gone = append(gone, [2]string{r.Scope, k})
	}
	// Deletes before upserts: a group deleted and written again in the same save is kept.
	if err := c.deleteStateRows(ctx, tx, gone); err != nil {
		return fmt.Errorf("deleting rule state with checkpoint %s: %w", pos, err)
	}
	state = upserts
	for start := 0; start < len(state); start += stateRowsPerStatement {
		end := min(start+stateRowsPerStatement, len(state))
		var q strings.Builder
		args := make([]any, 0, 4*(end-start))
		q.WriteString("INSERT INTO " + c.stateTable + " (name, scope, k, v) VALUES ")
		for i, r := range state[start:end] {
			if i > 0 {
				q.WriteString(",")
			}
			q.WriteString("(?,?,?,?)")
			args = append(args, c.name, r.Scope, r.Key, r.Value)
		}
		q.WriteString(" ON DUPLICATE KEY UPDATE v = VALUES(v)")
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("saving rule state with checkpoint %s: %w", pos, err)
		}
	}
	_, err = tx.ExecContext(ctx, "INSERT INTO "+c.table+" (name, file, pos, gtid_set) VALUES (?,?,?,?) "+
		"ON DUPLICATE KEY UPDATE file = VALUES(file), pos = VALUES(pos), gtid_set = VALUES(gtid_set)",
		c.name, pos.File, pos.Pos, pos.GTIDSet)
	if err != nil {
		return fmt.Errorf("saving checkpoint %s: %w", pos, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing checkpoint %s: %w", pos, err)
	}
	return nil
}

// stateRowsPerStatement is how many state rows one statement of a save writes or deletes:
// a save after a mass delete or a first seed touches tens of thousands of groups, and a
// statement per row costs a round trip each inside the checkpoint's transaction.
const stateRowsPerStatement = 500

// deleteStateRows deletes the checkpoint's state rows named by gone (scope and key as
// stored: a long key as its hash, storedRow) in tx, stateRowsPerStatement to a
// statement. The row constructor reads the primary key (name, scope, k) as ranges, one
// per pair, so a statement deletes exactly the rows the pairs name, as one statement
// per pair would.
func (c *CheckpointStore) deleteStateRows(ctx context.Context, tx *sql.Tx, gone [][2]string) error {
	for start := 0; start < len(gone); start += stateRowsPerStatement {
		batch := gone[start:min(start+stateRowsPerStatement, len(gone))]
		var q strings.Builder
		args := make([]any, 0, 1+2*len(batch))
		args = append(args, c.name)
		q.WriteString("DELETE FROM " + c.stateTable + " WHERE name = ? AND (scope, k) IN (")
		for i, r := range batch {
			if i > 0 {
				q.WriteString(",")
			}
			q.WriteString("(?,?)")
			args = append(args, r[0], r[1])
		}
		q.WriteString(")")
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// Reset forgets the checkpoint and its state (a new snapshot starts over), in one
// transaction.
func (c *CheckpointStore) Reset(ctx context.Context) error {
	if _, _, err := c.replace(ctx, nil, nil); err != nil {
		return fmt.Errorf("resetting checkpoint %q: %w", c.name, err)
	}
	return nil
}

// Move sets the checkpoint to pos and deletes each of its state rows that keep does not
// keep, in one transaction: what was saved as of the old position and is wrong at another
// one (the caller knows which rows those are). It returns how many state rows it deleted
// and how many it kept.
func (c *CheckpointStore) Move(ctx context.Context, pos Position, keep func(StateRow) bool) (deleted, kept int64, err error) {
	deleted, kept, err = c.replace(ctx, &pos, keep)
	if err != nil {
		return 0, 0, fmt.Errorf("moving checkpoint %q to %s: %w", c.name, pos, err)
	}
	return deleted, kept, nil
}

// replace deletes the checkpoint's row and its state rows that keep does not keep (nil:
// all of them), and writes pos as its row when pos is not nil, in one transaction; it
// returns how many state rows it deleted and kept. keep sees each row's scope and key.
func (c *CheckpointStore) replace(ctx context.Context, pos *Position, keep func(StateRow) bool) (deleted, kept int64, err error) {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	if keep == nil {
		res, err := tx.ExecContext(ctx, "DELETE FROM "+c.stateTable+" WHERE name = ?", c.name)
		if err != nil {
			return 0, 0, err
		}
		deleted, _ = res.RowsAffected()
	} else {
		var gone [][2]string // scope and key, as stored
		rows, err := tx.QueryContext(ctx, "SELECT scope, k, IF(LEFT(k, 1) = 0x00, v, NULL) FROM "+c.stateTable+" WHERE name = ? FOR UPDATE", c.name)
		if err != nil {
			return 0, 0, err
		}
		for rows.Next() {
			var scope, k string
			var v []byte
			if err := rows.Scan(&scope, &k, &v); err != nil {
				rows.Close()
				return 0, 0, err
			}
			r, err := loadedRow(scope, k, v)
			if err != nil {
				rows.Close()
				return 0, 0, err
			}
			if keep(r) {
				kept++
			} else {
				gone = append(gone, [2]string{scope, k})
			}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return 0, 0, err
		}
		if err := c.deleteStateRows(ctx, tx, gone); err != nil {
			return 0, 0, err
		}
		deleted = int64(len(gone))
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM "+c.table+" WHERE name = ?", c.name); err != nil {
		return 0, 0, err
	}
	if pos != nil {
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+c.table+" (name, file, pos, gtid_set) VALUES (?,?,?,?)",
			c.name, pos.File, pos.Pos, pos.GTIDSet); err != nil {
			return 0, 0, err
		}
	}
	return deleted, kept, tx.Commit()
}

// SavedCheckpoint is a checkpoint as its store keeps it.
type SavedCheckpoint struct {
	Position
	SavedAt   time.Time // in UTC
	StateRows int64     // rule state rows saved with it
}

// Saved reads the checkpoint as it is saved, without touching it; found is false when
// there is none (the table too may not exist yet).
func (c *CheckpointStore) Saved(ctx context.Context) (saved SavedCheckpoint, found bool, err error) {
	var p uint64
	err = c.db.QueryRowContext(ctx, "SELECT file, pos, gtid_set, updated_at FROM "+c.table+" WHERE name = ?", c.name).
		Scan(&saved.File, &p, &saved.GTIDSet, &saved.SavedAt)
	switch {
	case errors.Is(err, sql.ErrNoRows), sqlconn.ErrorNumber(err) == 1146 || sqlconn.ErrorNumber(err) == 1049: // no such table, no such database
		return SavedCheckpoint{}, false, nil
	case err != nil:
		return SavedCheckpoint{}, false, fmt.Errorf("reading checkpoint %q: %w", c.name, err)
	}
	saved.Pos = uint32(p)
	if err := c.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+c.stateTable+" WHERE name = ?", c.name).Scan(&saved.StateRows); err != nil {
		return SavedCheckpoint{}, false, fmt.Errorf("counting the rule state rows of checkpoint %q: %w", c.name, err)
	}
	return saved, true, nil
}
