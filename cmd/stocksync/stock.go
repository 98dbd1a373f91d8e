package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stocksync/stocksync/internal/shell"
	"github.com/stocksync/stocksync/inventory"
)

// newStockCmd runs inventory operations directly against the database named by the config
// (no daemon needed): the same Go API that `serve` exposes over HTTP. Answers print as JSON.
func newStockCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stock",
		Short: "Set, read and deduct inventory directly in the database (the HTTP API's operations)",
	}

	var sellable int64
	var shards int
	set := &cobra.Command{
		Use:   "set SKU --sellable N [--shards M]",
		Short: "Set a SKU's sellable stock, spread over M shard rows",
		Args:  cobra.ExactArgs(1),
		RunE: withStore(func(ctx context.Context, s *inventory.Store, args []string) (any, error) {
			return s.SetStock(ctx, args[0], sellable, shards)
		}),
	}
	set.Flags().Int64Var(&sellable, "sellable", 0, "sellable stock")
	set.Flags().IntVar(&shards, "shards", 0, "shard rows (0 keeps the current count; 1 for a new SKU)")
	set.MarkFlagRequired("sellable")

	get := &cobra.Command{
		Use:   "get SKU",
		Short: "Show a SKU's sellable (sum and per shard), reserved, physical and activity stock",
		Args:  cobra.ExactArgs(1),
		RunE: withStore(func(ctx context.Context, s *inventory.Store, args []string) (any, error) {
			return s.Get(ctx, args[0])
		}),
	}

	var adjustReq inventory.AdjustRequest
	adjust := &cobra.Command{
		Use:   "adjust SKU --delta ±N --reason TEXT [--request-id ID]",
		Short: "Add or remove sellable stock (idempotent on --request-id when given)",
		Args:  cobra.ExactArgs(1),
		RunE: withStore(func(ctx context.Context, s *inventory.Store, args []string) (any, error) {
			adjustReq.SKU = args[0]
			return s.Adjust(ctx, adjustReq)
		}),
	}
	adjust.Flags().Int64Var(&adjustReq.Delta, "delta", 0, "units to add (negative removes)")
	adjust.Flags().StringVar(&adjustReq.Reason, "reason", "", "why (recorded in adjustment_log)")
	adjust.Flags().StringVar(&adjustReq.RequestID, "request-id", "",
		"idempotency key (1-64 bytes): repeated with the same SKU and delta, the adjustment applies once")
	adjust.PreRunE = func(cmd *cobra.Command, _ []string) error {
		// "" is no request_id: a retry of it would apply again.
		return refuseEmptyFlags(cmd, map[string]string{"request-id": "an adjustment without one"})
	}

	reshard := &cobra.Command{
		Use:   "reshard SKU M",
		Short: "Spread a SKU's sellable stock over M shard rows, keeping the total (safe while deductions run)",
		Args:  cobra.ExactArgs(2),
		RunE: withStore(func(ctx context.Context, s *inventory.Store, args []string) (any, error) {
			m, err := strconv.Atoi(args[1])
			if err != nil {
				return nil, fmt.Errorf("shard count %q is not a number", args[1])
			}
			return s.Reshard(ctx, args[0], m)
		}),
	}

	var activity inventory.Activity
	var startsAt, endsAt string
	putActivity := &cobra.Command{
		Use:   "activity SKU ACTIVITY --qty N --starts-at TIME --ends-at TIME",
		Short: "Set the stock a campaign sets aside for a SKU, and the window in which deductions may take it",
		Long: "Set the stock a campaign sets aside for a SKU, and its window (PUT /v1/skus/{sku}/activities/{activity}):\n" +
			"stock of its own beside sellable, taken by deductions naming the activity (SKU:QTY@ACTIVITY) while\n" +
			"--starts-at <= now < --ends-at. All three flags are needed: moving a window restates its stock.\n" +
			"Times are RFC 3339, such as 2030-11-11T00:00:00Z or 2030-11-11T08:00:00+08:00.",
		Args: cobra.ExactArgs(2),
		// Read before the database is opened: a time that does not parse needs no
		// connection. A flag left out is cobra's to name (its required-flag check comes
		// after PreRunE).
		PreRunE: func(cmd *cobra.Command, _ []string) (err error) {
			for _, f := range []struct {
				name  string
				value string
				to    *time.Time
			}{{"starts-at", startsAt, &activity.StartsAt}, {"ends-at", endsAt, &activity.EndsAt}} {
				if !cmd.Flags().Changed(f.name) {
					continue
				}
				if *f.to, err = parseFlagTime(f.name, f.value); err != nil {
					return err
				}
			}
			return nil
		},
		RunE: withStore(func(ctx context.Context, s *inventory.Store, args []string) (any, error) {
			activity.SKU, activity.Activity = args[0], args[1]
			return s.PutActivity(ctx, activity)
		}),
	}
	putActivity.Flags().Int64Var(&activity.Qty, "qty", 0, "units set aside for the campaign now (orders holding some keep theirs)")
	putActivity.Flags().StringVar(&startsAt, "starts-at", "", "when deductions may begin to take it (RFC 3339)")
	putActivity.Flags().StringVar(&endsAt, "ends-at", "", "when they may no longer (RFC 3339, after --starts-at)")
	for _, name := range []string{"qty", "starts-at", "ends-at"} {
		putActivity.MarkFlagRequired(name)
	}

	var holdTTL time.Duration
	deduct := &cobra.Command{
		Use:   "deduct ORDER SKU:QTY[@ACTIVITY]...",
		Short: "Deduct an order's items, all or none (idempotent on ORDER)",
		Long: "Deduct an order's items, all or none (idempotent on ORDER). Each item is SKU:QTY or SKU:QTY@ACTIVITY;\n" +
			"SKUs and activities may hold ':' and '@' (APPLE:RED:2 is 2 of APPLE:RED). An item that reads in\n" +
			"more than one way (x:1@y:2) is refused with its readings.",
		Args: cobra.MinimumNArgs(2),
		RunE: withStore(func(ctx context.Context, s *inventory.Store, args []string) (any, error) {
			req := inventory.DeductRequest{OrderNo: args[0], HoldTTL: holdTTL}
			for _, arg := range args[1:] {
				item, err := parseItem(arg)
				if err != nil {
					return nil, err
				}
				req.Items = append(req.Items, item)
			}
			return s.Deduct(ctx, req)
		}),
	}
	deduct.Flags().DurationVar(&holdTTL, "hold-ttl", 0, "how long the unpaid hold lasts (default inventory.hold_ttl)")
	deduct.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if cmd.Flags().Changed("hold-ttl") && holdTTL == 0 {
			// 0 is the Store's default: as the API's "hold_ttl": "0s", refused, not read so.
			return fmt.Errorf("--hold-ttl must be positive, got 0 (leave it out for inventory.hold_ttl)")
		}
		return nil
	}

	// op is a method expression such as (*inventory.Store).Confirm.
	orderCmd := func(use, short string, op func(*inventory.Store, context.Context, string) (inventory.Order, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use + " ORDER",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: withStore(func(ctx context.Context, s *inventory.Store, args []string) (any, error) {
				return op(s, ctx, args[0])
			}),
		}
	}
	var warehouse string
	ship := orderCmd("ship", "Record that a warehouse shipped a paid order: reserved released, physical lowered",
		func(s *inventory.Store, ctx context.Context, order string) (inventory.Order, error) {
			return s.Ship(ctx, order, warehouse)
		})
	ship.Flags().StringVar(&warehouse, "warehouse", "", "code of the shipping warehouse")
	ship.MarkFlagRequired("warehouse")

	var extendTTL time.Duration
	extend := orderCmd("extend", "Make a held order's hold last --hold-ttl from now, on the database's clock (it never shortens a hold)",
		func(s *inventory.Store, ctx context.Context, order string) (inventory.Order, error) {
			return s.Extend(ctx, order, extendTTL)
		})
	extend.Flags().DurationVar(&extendTTL, "hold-ttl", 0, "how long the hold lasts from now (at most 168h)")
	extend.MarkFlagRequired("hold-ttl")

	var w inventory.Warehouse
	putWarehouse := &cobra.Command{
		Use:   "warehouse CODE --name NAME --type TYPE [--address ADDRESS]",
		Short: "Create or replace a warehouse's master data",
		Args:  cobra.ExactArgs(1),
		RunE: withStore(func(ctx context.Context, s *inventory.Store, args []string) (any, error) {
			w.Code = args[0]
			return s.PutWarehouse(ctx, w)
		}),
	}
	putWarehouse.Flags().StringVar(&w.Name, "name", "", "warehouse name")
	putWarehouse.Flags().StringVar(&w.Address, "address", "", "warehouse address")
	putWarehouse.Flags().StringVar(&w.Type, "type", "", "warehouse type, e.g. central, regional, store")

	warehouses := &cobra.Command{
		Use:   "warehouses [CODE]",
		Short: "List every warehouse's master data, or show one warehouse's",
		Args:  cobra.MaximumNArgs(1),
		RunE: withStore(func(ctx context.Context, s *inventory.Store, args []string) (any, error) {
			if len(args) == 1 {
				return s.GetWarehouse(ctx, args[0])
			}
			return s.ListWarehouses(ctx)
		}),
	}

	var zeroAll bool
	var levels []inventory.PhysicalLevel
	physical := &cobra.Command{
		Use:   "physical SKU (WAREHOUSE=QTY... | --zero-all)",
		Short: "Single-SKU physical sync: the SKU's stock per warehouse (warehouses not named become 0)",
		Args:  cobra.MinimumNArgs(1),
		// Read before the database is opened: a refused sync needs no connection.
		PreRunE: func(_ *cobra.Command, args []string) (err error) {
			levels, err = parseLevels(args[1:], zeroAll)
			return err
		},
		RunE: withStore(func(ctx context.Context, s *inventory.Store, args []string) (any, error) {
			n, err := s.SyncPhysicalSKU(ctx, args[0], levels)
			return map[string]int{"written": n}, err
		}),
	}
	physical.Flags().BoolVar(&zeroAll, "zero-all", false, "set the SKU's physical stock to 0 in every warehouse (it is in none now)")

	var orderQuery inventory.OrderQuery
	var status string
	orders := &cobra.Command{
		Use:   "orders [--status S] [--sku SKU] [--limit N] [--after CURSOR] [--json]",
		Short: "List orders a page at a time: held ones by expiry, soonest first; the others newest first",
		Args:  cobra.NoArgs,
		RunE: withStore(func(ctx context.Context, s *inventory.Store, _ []string) (any, error) {
			orderQuery.Status = inventory.OrderStatus(status)
			page, err := s.ListOrders(ctx, orderQuery)
			return orderPage{page, orderQuery}, err
		}),
	}
	orders.Flags().StringVar(&status, "status", "", "only orders in this status: held, confirmed, shipped, cancelled or expired")
	orders.Flags().StringVar(&orderQuery.SKU, "sku", "", "only orders with an item of this SKU")
	orders.Flags().IntVar(&orderQuery.Limit, "limit", 100, "most orders on the page (1-1000)")
	orders.Flags().StringVar(&orderQuery.After, "after", "", "the next page after the one that printed this cursor")
	orders.Flags().Bool("json", false, "print the page as JSON, as GET /v1/orders answers it")
	orders.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if cmd.Flags().Changed("limit") && orderQuery.Limit == 0 {
			return fmt.Errorf("--limit must be between 1 and 1000, got 0")
		}
		return refuseEmptyFlags(cmd, map[string]string{"status": "every status", "sku": "every SKU", "after": "the first page"})
	}

	sweep := &cobra.Command{
		Use:   "sweep",
		Short: "Release every expired unpaid hold now (serve does this every inventory.sweep_interval)",
		Args:  cobra.NoArgs,
		RunE: withStore(func(ctx context.Context, s *inventory.Store, _ []string) (any, error) {
			n, err := s.SweepExpired(ctx)
			return map[string]int{"released": n}, err
		}),
	}

	cmd.AddCommand(set, get, adjust, reshard, putActivity, deduct,
		orderCmd("order", "Show an order's state and items", (*inventory.Store).GetOrder),
		orderCmd("confirm", "Record payment: the hold becomes final, reserved grows", (*inventory.Store).Confirm),
		orderCmd("cancel", "Refund before shipment: restore the stock, soft-delete the log, write rollback rows", (*inventory.Store).Cancel),
		orders, extend, ship, putWarehouse, warehouses, physical, sweep)
	return cmd
}

// refuseEmptyFlags refuses a string flag of cmd given as "" (--sku ""), naming it: ""
// would read as the flag left out, which is not what the caller wrote (the API refuses
// an empty optional field the same way). leftOut says, for each flag, what leaving it
// out means.
func refuseEmptyFlags(cmd *cobra.Command, leftOut map[string]string) error {
	for _, name := range slices.Sorted(maps.Keys(leftOut)) {
		if f := cmd.Flags().Lookup(name); f != nil && f.Changed && f.Value.String() == "" {
			return fmt.Errorf("--%s must not be empty (leave it out for %s)", name, leftOut[name])
		}
	}
	return nil
}

// parseFlagTime reads the RFC 3339 time given as the flag name, as the API reads the
// times of its JSON bodies; an empty one is refused, naming the flag, rather than read
// as some default time.
func parseFlagTime(name, value string) (time.Time, error) {
	if value == "" {
		return time.Time{}, fmt.Errorf("--%s must not be empty: give an RFC 3339 time such as 2030-11-11T00:00:00Z", name)
	}
	t, err := time.Parse(time.RFC3339Nano, value)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s %q is not an RFC 3339 time such as 2030-11-11T00:00:00Z or 2030-11-11T08:00:00+08:00", name, value)
	}
	return t, nil
}

// parseItem reads SKU:QTY or SKU:QTY@ACTIVITY. SKUs and activity ids may hold ':' and
// '@' (APPLE:RED, a@b), so the QTY is found as a ':' followed by digits and then the end
// of arg or an '@' and the activity. An arg that reads so in more than one way
// ("x:1@y:2") is refused with its readings rather than guessed at.
func parseItem(arg string) (inventory.Item, error) {
	var readings []inventory.Item
	for i := range len(arg) {
		if arg[i] != ':' || i == 0 {
			continue
		}
		end := i + 1
		for end < len(arg) && arg[end] >= '0' && arg[end] <= '9' {
			end++
		}
		if end == i+1 || (end < len(arg) && (arg[end] != '@' || end+1 == len(arg))) {
			continue
		}
		item := inventory.Item{SKU: arg[:i]}
		if end < len(arg) {
			item.Activity = arg[end+1:]
		}
		n, err := strconv.ParseInt(arg[i+1:end], 10, 64)
		if err != nil {
			return inventory.Item{}, fmt.Errorf("%q: quantity %s is too large", arg, arg[i+1:end])
		}
		item.Qty = n
		readings = append(readings, item)
	}
	switch len(readings) {
	case 0:
		return inventory.Item{}, fmt.Errorf("%q is not SKU:QTY or SKU:QTY@ACTIVITY (QTY a whole number of units)", arg)
	case 1:
		return readings[0], nil
	}
	described := make([]string, len(readings))
	for i, r := range readings {
		described[i] = fmt.Sprintf("SKU %q QTY %d", r.SKU, r.Qty)
		if r.Activity != "" {
			described[i] += fmt.Sprintf(" ACTIVITY %q", r.Activity)
		}
	}
	return inventory.Item{}, fmt.Errorf("%q reads as SKU:QTY[@ACTIVITY] in %d ways (%s): deduct this order through POST /v1/deductions, whose items name each part",
		arg, len(readings), strings.Join(described, ", or "))
}

// parseLevels reads the WAREHOUSE=QTY arguments of a single-SKU physical sync. With none,
// the sync would set the SKU's stock to 0 in every warehouse; that needs zeroAll
// (--zero-all), so that a forgotten argument does not do it.
func parseLevels(args []string, zeroAll bool) ([]inventory.PhysicalLevel, error) {
	if zeroAll && len(args) > 0 {
		return nil, fmt.Errorf("--zero-all sets the SKU's physical stock to 0 in every warehouse: give it without WAREHOUSE=QTY arguments")
	}
	if !zeroAll && len(args) == 0 {
		return nil, fmt.Errorf("give the SKU's stock as WAREHOUSE=QTY (warehouses not named become 0), or --zero-all for 0 in every warehouse")
	}
	levels := []inventory.PhysicalLevel{}
	for _, arg := range args {
		// The last '=': QTY is a number, a warehouse code may hold '='.
		i := strings.LastIndexByte(arg, '=')
		n, err := strconv.ParseInt(arg[i+1:], 10, 64)
		if i <= 0 || err != nil {
			return nil, fmt.Errorf("%q is not WAREHOUSE=QTY (QTY a whole number of units)", arg)
		}
		levels = append(levels, inventory.PhysicalLevel{Warehouse: arg[:i], Qty: n})
	}
	return levels, nil
}

// textAnswer is an answer that prints as text for a person unless the command's --json
// flag is given.
type textAnswer interface {
	writeText(w io.Writer) error
}

// orderPage prints a page of orders one per line: order, status, expiry and items, then
// the command that prints the next page.
type orderPage struct {
	inventory.OrderPage
	query inventory.OrderQuery // what was asked: the next page needs the same filters
}

func (p orderPage) MarshalJSON() ([]byte, error) { return json.Marshal(p.OrderPage) }

func (p orderPage) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORDER\tSTATUS\tEXPIRES_AT\tITEMS")
	for _, o := range p.Orders {
		items := make([]string, len(o.Items))
		for i, it := range o.Items {
			items[i] = fmt.Sprintf("%s:%d", it.SKU, it.Qty)
			if it.Activity != "" {
				items[i] += "@" + it.Activity
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.OrderNo, o.Status, o.ExpiresAt.Format(time.RFC3339Nano), strings.Join(items, " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if p.Next == "" {
		return nil
	}
	// The flags of the next page: the cursor with the filters it was made under.
	var next []string
	if p.query.Status != "" {
		next = append(next, "--status", string(p.query.Status))
	}
	if p.query.SKU != "" {
		next = append(next, "--sku", shell.Word(p.query.SKU))
	}
	next = append(next, "--limit", strconv.Itoa(p.query.Limit), "--after", p.Next)
	_, err := fmt.Fprintf(w, "more: %s\n", strings.Join(next, " "))
	return err
}

// withStore opens the inventory database from the config, checks its schema, runs op and
// prints its answer as JSON (as text when it is a textAnswer and --json is not given);
// when op fails, the error alone is the answer.
func withStore(op func(context.Context, *inventory.Store, []string) (any, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		cfg, err := loadConfigWithoutRules(cmd)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		db, err := inventory.Open(ctx, cfg)
		if err != nil {
			return err
		}
		defer db.Close()
		if err := inventory.CheckSchema(ctx, db); err != nil {
			return err
		}
		store := inventory.New(db, inventory.Options{HoldTTL: cfg.Inventory.HoldTTL, DisableMerging: true})
		out, err := op(ctx, store, args)
		if err != nil {
			return err
		}
		if text, ok := out.(textAnswer); ok {
			if asJSON, _ := cmd.Flags().GetBool("json"); !asJSON {
				return text.writeText(cmd.OutOrStdout())
			}
		}
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
}
