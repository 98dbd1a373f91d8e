package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Warehouse is warehouse master data.
type Warehouse struct {
	Code    string `json:"code"`
	Name    string `json:"name"`
	Address string `json:"address"`
	Type    string `json:"type"`
}

// PhysicalLevel is the physical stock of a SKU in a warehouse as the WMS reports it.
type PhysicalLevel struct {
	SKU       string `json:"sku,omitempty"`
	Warehouse string `json:"warehouse"`
	Qty       int64  `json:"qty"`
}

// maxSyncRows bounds one physical-stock sync; larger syncs are sent in parts.
const maxSyncRows = 10000

// PutWarehouse creates or replaces a warehouse's master data.
func (s *Store) PutWarehouse(ctx context.Context, w Warehouse) (Warehouse, error) {
	if err := validWarehouse("code", w.Code); err != nil {
		return w, fmt.Errorf("saving warehouse: %w", err)
	}
	if w.Name == "" || len(w.Name) > 255 {
		return w, fmt.Errorf("saving warehouse %s: %w", w.Code, invalid("name", "must be 1 to 255 bytes"))
	}
	if len(w.Address) > 512 {
		return w, fmt.Errorf("saving warehouse %s: %w", w.Code, invalid("address", "must be at most 512 bytes"))
	}
	if w.Type == "" || len(w.Type) > 32 {
		return w, fmt.Errorf("saving warehouse %s: %w", w.Code, invalid("type", "must be 1 to 32 bytes"))
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO warehouse (code, name, address, type) VALUES (?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE name = VALUES(name), address = VALUES(address), type = VALUES(type)`,
		w.Code, w.Name, w.Address, w.Type)
	if err != nil {
		return w, fmt.Errorf("saving warehouse %s: %w", w.Code, err)
	}
	return w, nil
}

// GetWarehouse returns a warehouse's master data; ErrNotFound when there is none.
func (s *Store) GetWarehouse(ctx context.Context, code string) (Warehouse, error) {
	if err := validWarehouse("code", code); err != nil {
		return Warehouse{}, fmt.Errorf("reading warehouse: %w", err)
	}
	w := Warehouse{Code: code}
	err := s.db.QueryRowContext(ctx, "SELECT name, address, type FROM warehouse WHERE code = ?", code).Scan(&w.Name, &w.Address, &w.Type)
	if errors.Is(err, sql.ErrNoRows) {
		return Warehouse{}, fmt.Errorf("warehouse %s: %w", code, ErrNotFound)
	}
	if err != nil {
		return Warehouse{}, fmt.Errorf("reading warehouse %s: %w", code, err)
	}
	return w, nil
}

// Warehouses is the answer of ListWarehouses.
type Warehouses struct {
	Warehouses []Warehouse `json:"warehouses"`
}

// ListWarehouses returns every warehouse's master data, by code (byte order).
func (s *Store) ListWarehouses(ctx context.Context) (Warehouses, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT code, name, address, type FROM warehouse ORDER BY code")
	if err != nil {
		return Warehouses{}, fmt.Errorf("listing warehouses: %w", err)
	}
	defer rows.Close()
	out := Warehouses{Warehouses: []Warehouse{}}
	for rows.Next() {
		var w Warehouse
		if err := rows.Scan(&w.Code, &w.Name, &w.Address, &w.Type); err != nil {
			return Warehouses{}, fmt.Errorf("listing warehouses: %w", err)
		}
		out.Warehouses = append(out.Warehouses, w)
	}
	if err := rows.Err(); err != nil {
		return Warehouses{}, fmt.Errorf("listing warehouses: %w", err)
	}
	return out, nil
}

// SyncPhysical is the WMS full sync: levels is the complete physical stock of every
// warehouse it names. Each level is written, and every other SKU of those warehouses is
// set to 0. It returns how many levels were written. Unknown warehouses return
// ErrUnknownWarehouse and nothing is written.
func (s *Store) SyncPhysical(ctx context.Context, levels []PhysicalLevel) (int, error) {
	if err := validLevels(levels, ""); err != nil {
		return 0, fmt.Errorf("syncing physical stock: %w", err)
	}
	n, err := s.syncPhysical(ctx, levels, "")
	if err != nil {
		return 0, fmt.Errorf("syncing physical stock: %w", err)
	}
	return n, nil
}

// SyncPhysicalSKU is the WMS single-SKU sync: levels is sku's complete physical stock;
// warehouses it does not name are set to 0 for sku.
func (s *Store) SyncPhysicalSKU(ctx context.Context, sku string, levels []PhysicalLevel) (int, error) {
	levels, err := skuLevels(sku, levels)
	if err != nil {
		return 0, fmt.Errorf("syncing physical stock of %q: %w", sku, err)
	}
	n, err := s.syncPhysical(ctx, levels, sku)
	if err != nil {
		return 0, fmt.Errorf("syncing physical stock of %s: %w", sku, err)
	}
	return n, nil
}

// skuLevels checks a single-SKU sync of sku and returns its levels, each naming sku.
func skuLevels(sku string, levels []PhysicalLevel) ([]PhysicalLevel, error) {
	if err := validID("sku", sku); err != nil {
		return nil, err
	}
	levels = slices.Clone(levels)
	for i := range levels {
		if levels[i].SKU != "" && levels[i].SKU != sku {
			return nil, invalid(fmt.Sprintf("[%d].sku", i), "%q is not the SKU synced", levels[i].SKU)
		}
		levels[i].SKU = sku
	}
	if err := validLevels(levels, sku); err != nil {
		return nil, err
	}
	return levels, nil
}

func validLevels(levels []PhysicalLevel, sku string) error {
	if len(levels) > maxSyncRows {
		return invalid("levels", "at most %d per request, got %d", maxSyncRows, len(levels))
	}
	if sku == "" && len(levels) == 0 {
		return invalid("levels", "must list at least one level")
	}
	seen := map[[2]string]bool{}
	for i, l := range levels {
		field := fmt.Sprintf("[%d]", i)
		if err := validID(field+".sku", l.SKU); err != nil {
			return err
		}
		if err := validWarehouse(field+".warehouse", l.Warehouse); err != nil {
			return err
		}
		if err := validQty(field+".qty", l.Qty, 0); err != nil {
			return err
		}
		key := [2]string{l.SKU, l.Warehouse}
		if seen[key] {
			return invalid(field, "%s at %s appears twice", l.SKU, l.Warehouse)
		}
		seen[key] = true
	}
	return nil
}

// syncPhysical writes levels and zeroes the rest of the scope: the SKU scopeSKU, or when
// empty the warehouses named by levels.
func (s *Store) syncPhysical(ctx context.Context, levels []PhysicalLevel, scopeSKU string) (int, error) {
	var warehouses []string
	for _, l := range levels {
		if !slices.Contains(warehouses, l.Warehouse) {
			warehouses = append(warehouses, l.Warehouse)
		}
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if len(warehouses) > 0 {
			known := map[string]bool{}
			args := make([]any, len(warehouses))
			for i, w := range warehouses {
				args[i] = w
			}
			rows, err := tx.QueryContext(ctx, "SELECT code FROM warehouse WHERE code IN ("+strings.TrimSuffix(strings.Repeat("?,", len(args)), ",")+") LOCK IN SHARE MODE", args...)
			if err != nil {
				return fmt.Errorf("reading warehouses: %w", err)
			}
			// A read that fails part way must not pass for warehouses that do not exist
			// (422 unknown_warehouse): it is the database's failure (503 or 500).
			for rows.Next() {
				var c string
				if err := rows.Scan(&c); err != nil {
					rows.Close()
					return fmt.Errorf("reading warehouses: %w", err)
				}
				known[c] = true
			}
			if err := rows.Err(); err != nil {
				rows.Close()
				return fmt.Errorf("reading warehouses: %w", err)
			}
			rows.Close()
			for _, w := range warehouses {
				if !known[w] {
					return fmt.Errorf("warehouse %s: %w", w, ErrUnknownWarehouse)
				}
			}
		}
		for start := 0; start < len(levels); start += 500 {
			part := levels[start:min(start+500, len(levels))]
			args := make([]any, 0, 3*len(part))
			for _, l := range part {
				args = append(args, l.SKU, l.Warehouse, l.Qty)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO physical_stock (sku_id, warehouse_code, qty) VALUES "+placeholders(len(part), 3)+
				" ON DUPLICATE KEY UPDATE qty = VALUES(qty)", args...); err != nil {
				return fmt.Errorf("writing physical stock: %w", err)
			}
		}
		// What the sync does not name is 0. Rows already right are left alone, so that the
		// binlog carries only real changes.
		var query string
		var args []any
		if scopeSKU != "" {
			query, args = "UPDATE physical_stock SET qty = 0 WHERE sku_id = ? AND qty <> 0", []any{scopeSKU}
			if len(warehouses) > 0 {
				query += " AND warehouse_code NOT IN (" + strings.TrimSuffix(strings.Repeat("?,", len(warehouses)), ",") + ")"
				for _, w := range warehouses {
					args = append(args, w)
				}
			}
		} else {
			query = "UPDATE physical_stock SET qty = 0 WHERE qty <> 0 AND warehouse_code IN (" +
				strings.TrimSuffix(strings.Repeat("?,", len(warehouses)), ",") + ") AND (sku_id, warehouse_code) NOT IN (" +
				placeholders(len(levels), 2) + ")"
			for _, w := range warehouses {
				args = append(args, w)
			}
			for _, l := range levels {
				args = append(args, l.SKU, l.Warehouse)
			}
		}
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			return fmt.Errorf("clearing physical stock the sync does not name: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(levels), nil
}
