package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/rules"
	"github.com/stocksync/stocksync/sinks"
)

// newRulesCmd is `stocksync rules validate|test|explain`, the rule authors' tools.
func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "rules", Short: "Check, try and explain a rules file"}
	cmd.AddCommand(newRulesValidateCmd(), newRulesTestCmd(), newRulesExplainCmd())
	return cmd
}

func newRulesValidateCmd() *cobra.Command {
	var live bool
	cmd := &cobra.Command{
		Use:   "validate FILE",
		Short: "Report every problem in a rules file (with --live, also against the source's tables)",
		Long: `Validate reads FILE and prints every problem as file:line:col: message.
With --config it also refuses a rule whose topic is (or could be filled in as) one the
daemon writes its own records to: kafka.heartbeat_topic, and kafka.checkpoint_topic
with kafka.exactly_once. With --live it also connects to the source named by --config and reports globs that match
no table, columns no matched table has and sums over columns that are not numbers; in a
file with other problems it checks the rules that have none, in the same run. It also warns
on stderr, leaving the file valid, about each foreign key whose ON DELETE or ON UPDATE
CASCADE, SET NULL or SET DEFAULT changes a matched table: the binlog does not carry those
changes, so the rules miss them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !live {
				var reserved []rules.ReservedTopic
				if cmd.Flags().Changed("config") {
					cfg, err := loadConfigWithoutRules(cmd)
					if err != nil {
						return err
					}
					reserved = reservedTopics(cfg)
				}
				file, err := readRulesFile(args[0], reserved) // as serve reads it
				if err != nil {
					return reportLoadError(cmd.ErrOrStderr(), err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d rules, valid\n", args[0], len(file.set.Rules()))
				return nil
			}
			lc, err := loadAndCheckLive(cmd, args[0])
			if err != nil {
				return err
			}
			lc.warn(cmd.ErrOrStderr())
			if lc.valid() {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d rules, valid\n", args[0], len(lc.set.Rules()))
				return nil
			}
			return lc.report(cmd.ErrOrStderr(), args[0], "--live checked against the source", "checked")
		},
	}
	cmd.Flags().BoolVar(&live, "live", false, "also check tables and columns on the source of --config")
	return cmd
}

// liveCheck is a rules file loaded partially (rules.LoadPartial) and the rules valid on
// their own checked against the source of --config.
type liveCheck struct {
	set      *rules.Set // the rules valid on their own; nil when none is
	tables   []rules.TableInfo
	fileErrs rules.Errors
	liveErrs []error
	// cascades are the warnings: what the rules run with, but miss.
	cascades []cascadeWarning
}

// loadAndCheckLive loads file partially and checks the rules valid on their own against
// the source of --config (not connecting when there are none). An error is one reading
// the file or the source; the file's problems are then printed on stderr first, since
// the caller returns without reporting them.
func loadAndCheckLive(cmd *cobra.Command, file string) (*liveCheck, error) {
	set, err := rules.LoadPartial(file)
	lc := &liveCheck{set: set}
	if err != nil && !errors.As(err, &lc.fileErrs) {
		return nil, err
	}
	if set == nil {
		return lc, nil
	}
	found, err := checkLive(cmd, set)
	if err != nil {
		if len(lc.fileErrs) > 0 {
			fmt.Fprintln(cmd.ErrOrStderr(), lc.fileErrs)
		}
		return nil, err
	}
	lc.tables, lc.liveErrs, lc.cascades = found.tables, found.problems, found.cascades
	return lc, nil
}

// warn prints the warnings to w, one a line, as the commands print a warning: they do not
// make the file invalid.
func (lc *liveCheck) warn(w io.Writer) {
	for _, c := range lc.cascades {
		fmt.Fprintln(w, "stocksync: warning:", c)
	}
}

// valid reports whether neither the file nor the source showed a problem.
func (lc *liveCheck) valid() bool { return len(lc.fileErrs) == 0 && len(lc.liveErrs) == 0 }

// report prints every problem to w, in file order, then, when the file has problems of
// its own, which rules the command went through: "FILE: DID only the N rules valid on
// their own; the others are DONE once their own problems are mended". It returns
// errRulesInvalid.
func (lc *liveCheck) report(w io.Writer, file, did, done string) error {
	fmt.Fprintln(w, joinRuleProblems(lc.fileErrs, lc.liveErrs))
	if len(lc.fileErrs) == 0 {
		return errRulesInvalid
	}
	switch n := lc.rules(); n {
	case 0:
		fmt.Fprintf(w, "%s: %s no rule (none is valid on its own): each is %s once its own problems are mended\n", file, did, done)
	case 1:
		fmt.Fprintf(w, "%s: %s only the one rule valid on its own; the others are %s once their own problems are mended\n", file, did, done)
	default:
		fmt.Fprintf(w, "%s: %s only the %d rules valid on their own; the others are %s once their own problems are mended\n", file, did, n, done)
	}
	return errRulesInvalid
}

// rules is how many rules are valid on their own.
func (lc *liveCheck) rules() int {
	if lc.set == nil {
		return 0
	}
	return len(lc.set.Rules())
}

// joinRuleProblems is the file's problems and those found on the live source as one
// error, one per line: those with a place in the file in file order, then the others.
func joinRuleProblems(fileErrs rules.Errors, liveErrs []error) error {
	placed := slices.Clone(fileErrs)
	var others []error
	for _, err := range liveErrs {
		var e rules.Error
		if errors.As(err, &e) {
			placed = append(placed, e)
		} else {
			others = append(others, err)
		}
	}
	placed.Sort()
	if len(placed) > 0 {
		others = append([]error{placed}, others...)
	}
	return errors.Join(others...)
}

// errRulesInvalid is returned after the problems were printed, so main prints one line.
var errRulesInvalid = errors.New("rules file not valid")

// reportLoadError prints rules.Load's problems to w and returns errRulesInvalid; a file
// that cannot be read is not "not valid", and that error is returned as it is.
func reportLoadError(w io.Writer, err error) error {
	var problems rules.Errors
	if !errors.As(err, &problems) {
		return err
	}
	fmt.Fprintln(w, err)
	return errRulesInvalid
}

func newRulesTestCmd() *cobra.Command {
	var eventFile string
	var serverID uint32
	cmd := &cobra.Command{
		Use:   "test FILE --event EVENT.json",
		Short: "Print what the rules would publish, and where, for row changes",
		Long: `Test runs the rules of FILE over the row changes in EVENT.json ("-" reads stdin) and
prints each message: topic, key, headers and value. EVENT.json holds one change, a list
of changes forming one transaction, or a list of transactions, each a list of changes:

  [[change, change], [change]]

Transactions run in turn, aggregate and transition rules keeping their state from one to
the next, and the messages of each are printed after its "# transaction N" line. A
change is:

  {"schema": "inventory", "table": "sellable_shard", "op": "update",
   "columns": [{"name": "sku_id", "kind": "string"}, {"name": "shard", "kind": "int"},
               {"name": "qty", "kind": "int"}],
   "primary_key": ["sku_id", "shard"],
   "before": {"sku_id": "A1", "shard": 0, "qty": 3},
   "after":  {"sku_id": "A1", "shard": 0, "qty": 2},
   "source": {"file": "binlog.000003", "pos": 1234, "gtid": "", "ts_ms": 1700000000000}}

op is insert, update, delete or read; source may also hold server_id, and keys other
than these are refused. Without columns, each column's kind is guessed from all the
values the file's changes of its table give it: integers int, other numbers float (a
column holding both is float, as 5 then 4.5), strings string, objects, lists and
booleans json; null says nothing, and a column null in every change is a string. A
column holding a number in one change and a string in another is refused: give its
table's changes columns. So is a column given two kinds in changes of one table (in
their columns, or given in one and guessed in another): only an ALTER TABLE changes a
column's kind, and rules test runs no seed after one. Kinds are the
canal.ColumnKind names: int uint float decimal string bytes date datetime time json
enum set bit year. Changes are numbered from 1 in the output. Aggregate and transition rules start from empty state: give a
group's rows (op read, as the first start's snapshot reads them) in a first transaction
before changing them. A mistake in EVENT.json names the change it is in
("transaction 2: change 1"), a JSON syntax error its line and column. The rules'
failures at run time (an expression, a topic) are printed on stderr.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := rules.Load(args[0])
			if err != nil {
				return reportLoadError(cmd.ErrOrStderr(), err)
			}
			var data []byte
			if eventFile == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(eventFile)
			}
			if err != nil {
				return fmt.Errorf("reading events: %w", err)
			}
			txns, guessed, err := parseTestEvents(data)
			if err != nil {
				return fmt.Errorf("reading events from %s: %w", eventFile, err)
			}
			return runRulesTest(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), set, serverID, txns, guessed)
		},
	}
	cmd.Flags().StringVar(&eventFile, "event", "", "JSON file with one row change, a list of them, or a list of transactions (lists of them); - for stdin")
	cmd.Flags().Uint32Var(&serverID, "server-id", 1, "source.server_id written in messages whose change names none")
	_ = cmd.MarkFlagRequired("event")
	return cmd
}

// printer is the Emitter of `rules test`: it prints each message.
type printer struct {
	w io.Writer
	n int
}

func (p *printer) Emit(_ context.Context, m sinks.Message) error {
	p.n++
	fmt.Fprintf(p.w, "--- message %d\ntopic:   %s\nkey:     %s\n", p.n, m.Topic, m.Key)
	for _, h := range m.Headers {
		fmt.Fprintf(p.w, "header:  %s=%s\n", h.Key, h.Value)
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, m.Value, "", "  ") == nil {
		fmt.Fprintf(p.w, "value:\n%s\n", pretty.Bytes())
	} else {
		fmt.Fprintf(p.w, "value:   %s\n", m.Value)
	}
	return nil
}

// runRulesTest runs set over the transactions txns in turn, state carried from one to
// the next, and prints the messages to w; the rules' failures at run time (an
// expression, a topic) go to stderr, one line each. guessed says, of the tables whose
// kinds were guessed, how (an error the rules meet on one of their changes tells it).
func runRulesTest(ctx context.Context, w, stderr io.Writer, set *rules.Set, serverID uint32, txns [][]*canal.RowChange, guessed map[*canal.Table]string) error {
	e := rules.NewEngine(set, serverID)
	e.SetLogger(evalFailureLog(stderr))
	e.LogEveryFailure()
	p := &printer{w: w}
	rows := map[string]bool{} // the rows the changes so far left in place (rowIdentity)
	for ti, changes := range txns {
		if len(txns) > 1 {
			plural := "s"
			if len(changes) == 1 {
				plural = ""
			}
			fmt.Fprintf(w, "# transaction %d (%d change%s)\n", ti+1, len(changes), plural)
		}
		before := p.n
		for i, c := range changes {
			if !set.Matches(c.Table.Schema, c.Table.Name) {
				fmt.Fprintf(w, "# change %d (%s %s): no rule matches this table\n", i+1, c.Op.Name(), c.Table.FullName())
				continue
			}
			if c.Before != nil && !rows[rowIdentity(c.Table, c.Before)] && set.StatefulTables(c.Table.Schema, c.Table.Name) {
				fmt.Fprintf(w, "# change %d (%s %s): no earlier change of these events inserted or read this row, and aggregate and transition rules start "+
					"from empty state, so their sums lack it: give the group's rows (op read) in a first transaction\n", i+1, c.Op.Name(), c.Table.FullName())
			}
			if c.Before != nil {
				delete(rows, rowIdentity(c.Table, c.Before))
			}
			if c.After != nil {
				rows[rowIdentity(c.Table, c.After)] = true
			}
			if err := e.Row(ctx, c, p); err != nil {
				if note, ok := guessed[c.Table]; ok {
					return fmt.Errorf("evaluating change %d of transaction %d: %w (%s)", i+1, ti+1, err, note)
				}
				return fmt.Errorf("evaluating change %d of transaction %d: %w", i+1, ti+1, err)
			}
		}
		entries, err := e.Commit(ctx, canal.Position{File: "test", Pos: uint32(ti)}, p)
		if err != nil {
			return fmt.Errorf("committing transaction %d: %w", ti+1, err)
		}
		for _, s := range entries {
			fmt.Fprintf(w, "# state %s %s = %s\n", s.Rule, s.Key, s.Value)
		}
		if p.n == before {
			fmt.Fprintln(w, "# nothing would be published")
		}
	}
	if n := e.EvalErrors(); n > 0 {
		fmt.Fprintf(w, "# %d rule evaluations failed at run time (a when counted false, a field or value null, a message not published): see stderr\n", n)
		return fmt.Errorf("%d rule evaluations failed at run time (%s): each is on stderr", n, failuresByRule(e.EvalErrorsByRule()))
	}
	return nil
}

// failuresByRule writes counts by rule as "a: 2, b: 1", in rule name order.
func failuresByRule(counts map[string]int64) string {
	parts := make([]string, 0, len(counts))
	for _, rule := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%s: %d", rule, counts[rule]))
	}
	return strings.Join(parts, ", ")
}

// rowIdentity names a row image of table t: its table and primary key values, or all its
// values when the events give no primary key.
func rowIdentity(t *canal.Table, img []any) string {
	key := img
	if len(t.PrimaryKey) > 0 {
		key = make([]any, len(t.PrimaryKey))
		for i, idx := range t.PrimaryKey {
			key[i] = img[idx]
		}
	}
	id, _ := json.Marshal(key) // not fmt.Sprint: ("A1", 0) and ("A", 10) would both be A10
	return t.FullName() + " " + string(id)
}

// evalFailureLog is the engine's logger for `rules test`: each failure of a rule at run
// time as one line, "rule expression failed" and its rule, table, expression and error.
func evalFailureLog(w io.Writer) *zap.Logger {
	enc := zapcore.NewConsoleEncoder(zapcore.EncoderConfig{MessageKey: "msg", ConsoleSeparator: " "})
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), zapcore.WarnLevel))
}

type testEvent struct {
	Schema     string `json:"schema"`
	Table      string `json:"table"`
	Op         string `json:"op"`
	Columns    []struct{ Name, Kind string }
	PrimaryKey []string                   `json:"primary_key"`
	Before     map[string]json.RawMessage `json:"before"`
	After      map[string]json.RawMessage `json:"after"`
	Source     struct {
		ServerID uint32 `json:"server_id"`
		GTID     string `json:"gtid"`
		File     string `json:"file"`
		Pos      uint32 `json:"pos"`
		TsMs     int64  `json:"ts_ms"`
	} `json:"source"`
}

// parseTestEvents reads the transactions of `rules test`: one change (one transaction of
// it), a list of changes (one transaction), or a list of transactions, each a list of
// changes. guessed holds, for each table whose kinds it guessed (guessKinds), a note
// saying how. A syntax error names its line and column; any other mistake, the change it
// is in (changePlace).
func parseTestEvents(data []byte) (txns [][]*canal.RowChange, guessed map[*canal.Table]string, err error) {
	var all json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			line, col := lineColumn(data, syntax.Offset)
			return nil, nil, fmt.Errorf("line %d, column %d: %w", line, col, err)
		}
		return nil, nil, err
	}
	// raw are the changes of each transaction, as written.
	var raw [][]json.RawMessage
	if all[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(all, &items); err != nil {
			return nil, nil, err
		}
		lists := 0
		for _, item := range items {
			if item[0] == '[' {
				lists++
			}
		}
		switch lists {
		case 0:
			raw = [][]json.RawMessage{items}
		case len(items):
			raw = make([][]json.RawMessage, len(items))
			for ti, item := range items {
				if err := json.Unmarshal(item, &raw[ti]); err != nil {
					return nil, nil, fmt.Errorf("transaction %d: %w", ti+1, err)
				}
			}
		default:
			return nil, nil, errors.New("a list holding both changes and lists: give a list of changes (one transaction) or a list of lists of changes (one transaction each)")
		}
	} else {
		raw = [][]json.RawMessage{{all}}
	}
	events := make([][]testEvent, len(raw))
	for ti, changes := range raw {
		events[ti] = make([]testEvent, len(changes))
		for i, change := range changes {
			if err := decodeEvent(change, &events[ti][i]); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", changePlace(len(raw), ti, i), err)
			}
		}
	}
	guesses, err := guessKinds(events)
	if err != nil {
		return nil, nil, err
	}
	txns = make([][]*canal.RowChange, len(events))
	guessed = map[*canal.Table]string{}
	tables := map[string]*canal.Table{}
	kinds := tableKinds{}
	for ti, txnEvents := range events {
		rowsOf := map[*canal.Table]int{} // Source.Row counts a transaction's changes per table, as the stream does
		for i, ev := range txnEvents {
			g := guesses[ev.Schema+"."+ev.Table]
			c, err := ev.change(tables, g)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", changePlace(len(events), ti, i), err)
			}
			if err := kinds.check(c.Table, len(ev.Columns) == 0, changePlace(len(events), ti, i)); err != nil {
				return nil, nil, err
			}
			if _, noted := guessed[c.Table]; !noted && len(ev.Columns) == 0 {
				guessed[c.Table] = g.note(c.Table.FullName())
			}
			c.Source.Row = rowsOf[c.Table]
			rowsOf[c.Table]++
			if ev.Source.File == "" && ev.Source.Pos == 0 {
				c.Source.Pos = uint32(ti) // the transaction's place, as a binlog position tells transactions apart
			}
			txns[ti] = append(txns[ti], c)
		}
	}
	return txns, guessed, nil
}

// lineColumn is the line and column (from 1, in characters) of the byte a JSON decoder's
// error offset names: the one it had just read when it found the error, or the end of
// data when it read all of it (unexpected end of JSON input).
func lineColumn(data []byte, offset int64) (line, col int) {
	at := max(int(offset)-1, 0)
	if int(offset) >= len(data) {
		at = len(data)
	}
	lineStart := bytes.LastIndexByte(data[:at], '\n') + 1
	return bytes.Count(data[:at], []byte("\n")) + 1, utf8.RuneCount(data[lineStart:at]) + 1
}

// tableKinds are the kinds of each table's columns (by table, then column) as the first
// change that has the column gives them, given or guessed, and where.
type tableKinds map[string]map[string]givenKind

type givenKind struct {
	kind    canal.ColumnKind
	guessed bool
	where   string
}

func (g givenKind) String() string {
	if g.guessed {
		return g.kind.String() + " (guessed from its values)"
	}
	return g.kind.String()
}

// check refuses a column of t whose kind differs from the one an earlier change of its
// table gave it: the stream changes a column's kind only at an ALTER TABLE, after which
// an aggregate or transition rule summing it is seeded again from the table, which rules
// test cannot do; it would run the rule as if the ALTER had happened, over sums of no
// rows. guessed says t's kinds were guessed (the change has no "columns"); where is the
// change's place.
func (tk tableKinds) check(t *canal.Table, guessed bool, where string) error {
	table := t.FullName()
	cols := tk[table]
	if cols == nil {
		cols = map[string]givenKind{}
		tk[table] = cols
	}
	for _, col := range t.Columns {
		now := givenKind{kind: col.Kind, guessed: guessed, where: where}
		was, ok := cols[col.Name]
		switch {
		case !ok:
			cols[col.Name] = now
		case was.kind != now.kind:
			return fmt.Errorf("%s: column %s of %s is %s here and %s in %s: a column keeps its kind from change to change (only an ALTER TABLE "+
				"changes it, and rules test runs no seed after one): give every change of %s the same kind for %s in \"columns\"",
				where, col.Name, table, now, was, was.where, table, col.Name)
		}
	}
	return nil
}

// changePlace names change i of transaction ti, of n transactions, as the output numbers
// them: "change 2", or "transaction 3: change 2" when there are several.
func changePlace(n, ti, i int) string {
	if n > 1 {
		return fmt.Sprintf("transaction %d: change %d", ti+1, i+1)
	}
	return fmt.Sprintf("change %d", i+1)
}

// guessedKinds are the kinds of one table's columns guessed from the values the changes
// without "columns" give them, over the whole events file: the stream gives a table's
// changes one set of kinds, and a kind that changed between two changes would be taken
// for an ALTER TABLE (an aggregate rule prepares a seed that rules test never runs).
type guessedKinds struct {
	kinds map[string]canal.ColumnKind
	// nullOnly are the columns null in every change, taken as strings for want of a value.
	nullOnly []string
}

// guessKinds guesses, per table (schema.table), the kind of each column from every
// value the changes without "columns" give it: integers int, other numbers float (a
// column holding both is float), strings string, objects, lists, true and false json.
// null says nothing; a column null in every change is taken as a string. A column
// holding values of two of these (a number and a string) is refused: its kind is given
// with "columns".
func guessKinds(txns [][]testEvent) (map[string]*guessedKinds, error) {
	type seen struct {
		kind  canal.ColumnKind
		where string // the first change that gave the kind, for a conflict's message
		known bool
	}
	byTable := map[string]map[string]*seen{}
	for ti, events := range txns {
		for i, ev := range events {
			if len(ev.Columns) > 0 {
				continue
			}
			table := ev.Schema + "." + ev.Table
			cols := byTable[table]
			if cols == nil {
				cols = map[string]*seen{}
				byTable[table] = cols
			}
			for _, img := range []map[string]json.RawMessage{ev.Before, ev.After} {
				for _, name := range slices.Sorted(maps.Keys(img)) {
					s := cols[name]
					if s == nil {
						s = &seen{}
						cols[name] = s
					}
					k, ok := guessKind(img[name])
					switch {
					case !ok:
					case !s.known:
						*s = seen{kind: k, where: changePlace(len(txns), ti, i), known: true}
					case s.kind == k:
					case numberKind(s.kind) && numberKind(k):
						s.kind = canal.KindFloat
					default:
						return nil, fmt.Errorf("%s: column %s of %s is %s here and %s in %s, so its kind cannot be guessed: "+
							"give the changes of %s \"columns\" with each column's kind (int uint float decimal string …)",
							changePlace(len(txns), ti, i), name, table, guessedName(k), guessedName(s.kind), s.where, table)
					}
				}
			}
		}
	}
	out := map[string]*guessedKinds{}
	for table, cols := range byTable {
		g := &guessedKinds{kinds: map[string]canal.ColumnKind{}}
		for _, name := range slices.Sorted(maps.Keys(cols)) {
			s := cols[name]
			if !s.known {
				s.kind = canal.KindString
				g.nullOnly = append(g.nullOnly, name)
			}
			g.kinds[name] = s.kind
		}
		out[table] = g
	}
	return out, nil
}

func numberKind(k canal.ColumnKind) bool { return k == canal.KindInt || k == canal.KindFloat }

// guessedName says what a guessed kind was guessed from.
func guessedName(k canal.ColumnKind) string {
	switch k {
	case canal.KindInt, canal.KindFloat:
		return "a number"
	case canal.KindJSON:
		return "an object, a list or a boolean"
	}
	return "a string"
}

// note is what to add to an error the rules met on a change of table whose kinds were
// guessed: that they were, each guess (a null-only column's said so), and how to give them.
func (g *guessedKinds) note(table string) string {
	var kinds []string
	for _, name := range slices.Sorted(maps.Keys(g.kinds)) {
		kind := name + " " + g.kinds[name].String()
		if slices.Contains(g.nullOnly, name) {
			kind += " (null in every change)"
		}
		kinds = append(kinds, kind)
	}
	return fmt.Sprintf("without \"columns\", the kinds of %s's columns were guessed from the events' values: %s; give its changes \"columns\" with each column's kind",
		table, strings.Join(kinds, ", "))
}

// decodeEvent decodes one change, refusing keys a change does not have (a misspelt
// "columns" would otherwise have the kinds guessed).
func decodeEvent(data []byte, ev *testEvent) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(ev)
}

var kindByName = func() map[string]canal.ColumnKind {
	m := map[string]canal.ColumnKind{}
	for k := canal.KindInt; k <= canal.KindYear; k++ {
		m[k.String()] = k
	}
	return m
}()

// change is the row change ev gives, its table one of tables when one has its shape;
// guessed are the kinds of its table's columns for a change without "columns".
func (ev testEvent) change(tables map[string]*canal.Table, guessed *guessedKinds) (*canal.RowChange, error) {
	if ev.Schema == "" || ev.Table == "" {
		return nil, errors.New("schema and table are required")
	}
	c := &canal.RowChange{}
	switch ev.Op {
	case "insert", "c":
		c.Op = canal.OpCreate
	case "update", "u":
		c.Op = canal.OpUpdate
	case "delete", "d":
		c.Op = canal.OpDelete
	case "read", "r":
		c.Op = canal.OpRead
	default:
		return nil, fmt.Errorf("op %q is not one of insert, update, delete, read", ev.Op)
	}
	needBefore := c.Op == canal.OpUpdate || c.Op == canal.OpDelete
	needAfter := c.Op != canal.OpDelete
	if needBefore != (ev.Before != nil) || needAfter != (ev.After != nil) {
		return nil, fmt.Errorf("op %s needs before: %v, after: %v", ev.Op, needBefore, needAfter)
	}
	t := &canal.Table{Schema: ev.Schema, Name: ev.Table}
	if len(ev.Columns) > 0 {
		for _, col := range ev.Columns {
			k, ok := kindByName[col.Kind]
			if !ok {
				return nil, fmt.Errorf("column %s: kind %q unknown", col.Name, col.Kind)
			}
			t.Columns = append(t.Columns, canal.Column{Name: col.Name, Kind: k})
		}
	} else {
		img := ev.After
		if img == nil {
			img = ev.Before
		}
		names := make([]string, 0, len(img))
		for n := range img {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			t.Columns = append(t.Columns, canal.Column{Name: n, Kind: guessed.kinds[n]})
		}
	}
	for _, pk := range ev.PrimaryKey {
		i := t.ColumnIndex(pk)
		if i < 0 {
			return nil, fmt.Errorf("primary_key column %s is not a column", pk)
		}
		t.PrimaryKey = append(t.PrimaryKey, i)
	}
	// changes of the same table shape share one *canal.Table, as the stream's do
	shape := fmt.Sprint(t.Schema, t.Name, t.Columns, t.PrimaryKey)
	if known, ok := tables[shape]; ok {
		t = known
	} else {
		tables[shape] = t
	}
	var err error
	if ev.Before != nil {
		if c.Before, err = imageValues(t, ev.Before); err != nil {
			return nil, fmt.Errorf("before: %w", err)
		}
	}
	if ev.After != nil {
		if c.After, err = imageValues(t, ev.After); err != nil {
			return nil, fmt.Errorf("after: %w", err)
		}
	}
	c.Table = t
	s := ev.Source
	c.Source = canal.Source{ServerID: s.ServerID, GTID: s.GTID, File: s.File, Pos: s.Pos, TsMs: s.TsMs}
	if c.Source.File == "" {
		c.Source.File = "test"
	}
	if c.Source.TsMs == 0 {
		c.Source.TsMs = time.Now().UnixMilli()
	}
	return c, nil
}

// guessKind is the kind one JSON value suggests (guessKinds); false for null, which
// suggests none.
func guessKind(raw json.RawMessage) (canal.ColumnKind, bool) {
	s := strings.TrimSpace(string(raw))
	switch {
	case s == "" || s == "null":
		return 0, false
	case s[0] == '"':
		return canal.KindString, true
	case s[0] == '{' || s[0] == '[' || s == "true" || s == "false":
		return canal.KindJSON, true
	case strings.ContainsAny(s, ".eE"):
		return canal.KindFloat, true
	}
	return canal.KindInt, true
}

func imageValues(t *canal.Table, img map[string]json.RawMessage) ([]any, error) {
	vals := make([]any, len(t.Columns))
	for name := range img {
		if t.ColumnIndex(name) < 0 {
			return nil, fmt.Errorf("%s is not a column of %s", name, t.FullName())
		}
	}
	for i, col := range t.Columns {
		raw, ok := img[col.Name]
		if !ok || string(raw) == "null" {
			continue
		}
		v, err := columnValue(col.Kind, raw)
		if err != nil {
			return nil, fmt.Errorf("column %s (%s): %w", col.Name, col.Kind, err)
		}
		vals[i] = v
	}
	return vals, nil
}

// columnValue converts a JSON value to the Go type canal uses for kind.
func columnValue(kind canal.ColumnKind, raw json.RawMessage) (any, error) {
	text := string(raw)
	if unq, err := strconv.Unquote(text); err == nil && strings.HasPrefix(text, `"`) {
		text = unq
	}
	switch kind {
	case canal.KindInt, canal.KindYear:
		return strconv.ParseInt(text, 10, 64)
	case canal.KindUint, canal.KindBit:
		return strconv.ParseUint(text, 10, 64)
	case canal.KindFloat:
		return strconv.ParseFloat(text, 64)
	case canal.KindJSON:
		return []byte(raw), nil
	case canal.KindBytes:
		if b, err := base64.StdEncoding.DecodeString(text); err == nil {
			return b, nil
		}
		return []byte(text), nil
	}
	return text, nil
}

func newRulesExplainCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "explain FILE --config CONFIG",
		Short: "Show which rules match which live tables, and which tables no rule matches",
		Long: `Explain connects to the source named by --config and prints, for each rule of FILE,
the tables it matches there, then the tables no rule matches. In a file with problems it
explains the rules valid on their own and prints every problem on stderr (those of the
file and those --live would find), exiting non-zero; a rule with a problem of its own is
explained once that problem is mended. The warnings of --live are printed on stderr too.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, err := loadAndCheckLive(cmd, args[0])
			if err != nil {
				return err
			}
			lc.warn(cmd.ErrOrStderr())
			if lc.set != nil {
				explainRules(cmd.OutOrStdout(), lc.set, lc.tables, len(lc.fileErrs) > 0)
			}
			if lc.valid() {
				return nil
			}
			return lc.report(cmd.ErrOrStderr(), args[0], "explain showed", "explained")
		},
	}
}

// explainRules prints the rules of set and the tables each matches, then the tables none
// matches; partial says set holds only the rules of its file valid on their own.
func explainRules(w io.Writer, set *rules.Set, tables []rules.TableInfo, partial bool) {
	for _, r := range set.Rules() {
		fmt.Fprintf(w, "rule %s (emit %s, format %s, topic %s) matches %s:\n", r.Name(), r.Emit(), r.Format(), r.Topic(), strings.Join(r.Tables(), ", "))
		n := 0
		for _, t := range tables {
			if r.MatchesTable(t.Schema, t.Name) {
				fmt.Fprintf(w, "  %s%s\n", canal.TableName{Schema: t.Schema, Name: t.Name}, ddlNote(set, r, t))
				n++
			}
		}
		if n == 0 {
			fmt.Fprintln(w, "  (no live table)")
		}
	}
	var unmatched []string
	for _, t := range tables {
		if !set.Matches(t.Schema, t.Name) {
			unmatched = append(unmatched, canal.TableName{Schema: t.Schema, Name: t.Name}.String())
		}
	}
	if partial {
		fmt.Fprintf(w, "tables none of these rules matches (%d; the rules with problems are left out):\n", len(unmatched))
	} else {
		fmt.Fprintf(w, "tables no rule matches (%d):\n", len(unmatched))
	}
	for _, t := range unmatched {
		fmt.Fprintf(w, "  %s\n", t)
	}
}

// ddlNote says, for a table t that an aggregate or transition rule r matches, what a
// TRUNCATE or DROP TABLE of it does to the stream (docs/operations.md, Tables emptied by
// DDL); "" for a row rule.
func ddlNote(set *rules.Set, r *rules.Rule, t rules.TableInfo) string {
	switch {
	case !r.Stateful():
		return ""
	case set.StatefulAlone(t.Schema, t.Name):
		return "  (a TRUNCATE or DROP TABLE of it publishes its groups empty)"
	}
	return "  (a TRUNCATE or DROP TABLE of it seeds the rules that read it again: one of them reads other tables too)"
}

// checkLive checks set against the source named by --config, strictly (every glob must
// match a table): what rulesOnSource finds, with the rules' topics that are the daemon's
// own among the problems.
func checkLive(cmd *cobra.Command, set *rules.Set) (sourceCheck, error) {
	cfg, err := loadConfigWithoutRules(cmd)
	if err != nil {
		return sourceCheck{}, err
	}
	src, err := sourceConfig(cfg)
	if err != nil {
		return sourceCheck{}, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
	defer cancel()
	found, err := rulesOnSource(ctx, src, cfg.Checkpoint.Table, set, true)
	var reserved rules.Errors
	if errors.As(set.CheckReservedTopics(reservedTopics(cfg)), &reserved) {
		for _, e := range reserved {
			found.problems = append(found.problems, e)
		}
	}
	return found, err
}

// sourceCheck is what rulesOnSource found on the live source: its tables, the problems
// that make the rules unfit to run, and what the rules may run with but miss.
type sourceCheck struct {
	tables   []rules.TableInfo
	problems []error
	cascades []cascadeWarning
}

// rulesOnSource checks set against the live source src: the columns its rules name
// (rules.Set.CheckColumns), that source.user may read the tables they match, and when
// strict that every glob matches a table (rules.Set.CheckTables: not at serve, where a
// table may come later). It also finds the foreign keys whose cascades change a table the
// rules read without a row event (cascadeWarnings): a warning, not a problem, since the
// rules run, and are right while no cascade fires. System schemas and the tables of
// checkpointTable (canal.CheckpointTables) are left out: the daemon never reads their
// changes, whatever a rule's globs match.
func rulesOnSource(ctx context.Context, src canal.Config, checkpointTable string, set *rules.Set, strict bool) (sourceCheck, error) {
	db, err := src.OpenDB("")
	if err != nil {
		return sourceCheck{}, err
	}
	defer db.Close()
	tables, unstreamable, err := readTables(ctx, db)
	if err != nil {
		return sourceCheck{}, err
	}
	own := canal.CheckpointTables(checkpointTable)
	tables = slices.DeleteFunc(tables, func(t rules.TableInfo) bool { return slices.Contains(own, t.Schema+"."+t.Name) })
	check := set.CheckColumns
	if strict {
		check = set.CheckTables
	}
	problems := check(tables)
	var globs []string // each once, however many rules name it
	for _, r := range set.Rules() {
		for _, g := range r.Tables() {
			if !slices.Contains(globs, g) {
				globs = append(globs, g)
			}
		}
	}
	for _, u := range unstreamable {
		for _, r := range set.Rules() {
			if r.MatchesTable(u.schema, u.table) {
				problems = append(problems, fmt.Errorf("%s: rule %q: %s", set.File(), r.Name(), u.why))
			}
		}
	}
	unreadable, err := canal.UnreadableTables(ctx, db, src.User, globs)
	if err != nil {
		return sourceCheck{}, err
	}
	for _, r := range set.Rules() {
		for _, g := range r.Tables() {
			if u, ok := unreadable[g]; ok {
				problems = append(problems, fmt.Errorf("%s: rule %q: %s", set.File(), r.Name(), u))
			}
		}
	}
	keys, err := canal.CascadingForeignKeys(ctx, db, func(schema, table string) bool {
		return set.Matches(schema, table) && !slices.Contains(own, schema+"."+table)
	})
	if err != nil {
		return sourceCheck{}, err
	}
	return sourceCheck{tables: tables, problems: problems, cascades: cascadeWarnings(set, keys)}, nil
}

// cascadeWarning is a foreign key whose referential action changes rows of a table rules
// read (its child table) inside InnoDB, where the binlog never sees it: no rule hears of
// those changes (docs/operations.md, Foreign keys that cascade).
type cascadeWarning struct {
	file  string // the rules file
	key   canal.ForeignKey
	rules []string // the rules matching the child table, in file order
}

// cascadeWarnings is a warning for each of keys whose child table a rule of set matches
// and whose missed changes (ForeignKey.MissedOps) are of a kind the rule takes: a row rule
// with ops: [insert] misses nothing of an ON DELETE CASCADE.
func cascadeWarnings(set *rules.Set, keys []canal.ForeignKey) []cascadeWarning {
	var out []cascadeWarning
	for _, k := range keys {
		w := cascadeWarning{file: set.File(), key: k}
		missed := k.MissedOps()
		for _, r := range set.Rules() {
			if r.MatchesTable(k.Table.Schema, k.Table.Name) && slices.ContainsFunc(missed, r.Hears) {
				w.rules = append(w.rules, r.Name())
			}
		}
		if len(w.rules) > 0 {
			out = append(out, w)
		}
	}
	return out
}

// String is the warning as `rules validate --live` prints it: the file and the rules,
// the key, what the stream misses and what to do.
func (w cascadeWarning) String() string {
	k := w.key
	return fmt.Sprintf("%s: %s: foreign key %s of %s references %s %s: %s, inside InnoDB, which writes none of it to the binlog, so no message tells of it "+
		"and an aggregate or transition over %s goes on counting the rows as they were. %s",
		w.file, w.ruleNames(), k.Name, k.Table, k.Parent, k.Actions(), k.Unlogged(), k.Table, w.advice())
}

// ruleNames is `rule "a"` or `rules "a", "b"`, as the rules' problems name them.
func (w cascadeWarning) ruleNames() string {
	quoted := make([]string, len(w.rules))
	for i, r := range w.rules {
		quoted[i] = strconv.Quote(r)
	}
	if len(quoted) == 1 {
		return "rule " + quoted[0]
	}
	return "rules " + strings.Join(quoted, ", ")
}

// advice is what to do about the key (docs/operations.md, Foreign keys that cascade).
func (w cascadeWarning) advice() string {
	var restrict []string
	if canal.CascadingAction(w.key.OnDelete) {
		restrict = append(restrict, "ON DELETE RESTRICT")
	}
	if canal.CascadingAction(w.key.OnUpdate) {
		restrict = append(restrict, "ON UPDATE RESTRICT")
	}
	return fmt.Sprintf("Have the application change the rows of %s itself, in the same transaction before those of %s, or make the key %s "+
		"(docs/operations.md, Foreign keys that cascade)", w.key.Table, w.key.Parent, strings.Join(restrict, " "))
}

// log writes the warning to log at WARN, with the key's parts as fields.
func (w cascadeWarning) log(log *zap.Logger) {
	k := w.key
	log.Warn("a foreign key changes rows the rules read without writing them to the binlog: those changes are not published",
		zap.String("foreign_key", k.Name), zap.Stringer("table", k.Table), zap.Stringer("references", k.Parent),
		zap.String("action", k.Actions()), zap.Strings("rules", w.rules), zap.String("missed", k.Unlogged()), zap.String("fix", w.advice()))
}

// unstreamableTable is a table whose changes the stream cannot read, and why, with what
// to do.
type unstreamableTable struct{ schema, table, why string }

// readTables reads the source's tables of data (canal.DataTableTypes: not views, nor
// MariaDB's sequences, which the stream leaves out) and their columns, and the tables
// whose changes the stream cannot read: a column in a character set the stream cannot
// decode, or transaction-precise system versioning. The period columns of a table WITH
// SYSTEM VERSIONING are left out, as the stream and snapshots leave them out of the
// images (docs/topics.md, System-versioned tables).
func readTables(ctx context.Context, db *sql.DB) ([]rules.TableInfo, []unstreamableTable, error) {
	rows, err := db.QueryContext(ctx, `SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, COALESCE(c.CHARACTER_SET_NAME, ''),
		  COALESCE(c.GENERATION_EXPRESSION, ''), t.TABLE_TYPE
		FROM information_schema.COLUMNS c JOIN information_schema.TABLES t
		  ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
		WHERE t.TABLE_TYPE IN `+canal.DataTableTypes+`
		  AND c.TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
		ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION`)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the source's tables: %w", err)
	}
	defer rows.Close()
	var out []rules.TableInfo
	var unstreamable []unstreamableTable
	for rows.Next() {
		var schema, table, column, dataType, columnType, charset, generated, tableType string
		if err := rows.Scan(&schema, &table, &column, &dataType, &columnType, &charset, &generated, &tableType); err != nil {
			return nil, nil, fmt.Errorf("reading the source's tables: %w", err)
		}
		if n := len(out); n == 0 || out[n-1].Schema != schema || out[n-1].Name != table {
			out = append(out, rules.TableInfo{Schema: schema, Name: table})
		}
		full := schema + "." + table
		if period := strings.ToUpper(generated); tableType == "SYSTEM VERSIONED" && (period == "ROW START" || period == "ROW END") {
			if period == "ROW START" && !strings.Contains(strings.ToLower(dataType), "timestamp") {
				unstreamable = append(unstreamable, unstreamableTable{schema: schema, table: table, why: fmt.Sprintf("%s is system-versioned with transaction-precise history "+
					"(its row start column %s is %s): MariaDB logs every change of such a table as a statement, whatever binlog_format says, and the stream would stop at its first change. "+
					"Version it by timestamp (the default) or leave the table out of the rule (docs/topics.md, System-versioned tables)", full, column, columnType)})
			}
			continue
		}
		t := &out[len(out)-1]
		t.Columns = append(t.Columns, canal.Column{Name: column, Kind: kindOfSQLType(dataType, columnType)})
		if !canal.DecodesCharset(charset) {
			unstreamable = append(unstreamable, unstreamableTable{schema: schema, table: table, why: fmt.Sprintf("column %s of %s is in character set %s, which stocksync cannot decode: the stream would stop at the table's first change. "+
				"Convert the column (ALTER TABLE … CONVERT TO CHARACTER SET utf8mb4) or leave the table out of the rule (docs/topics.md, Values)", column, full, charset)})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("reading the source's tables: %w", err)
	}
	return out, unstreamable, nil
}

// kindOfSQLType maps information_schema's DATA_TYPE to the kind canal reports.
func kindOfSQLType(dataType, columnType string) canal.ColumnKind {
	switch strings.ToLower(dataType) {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint":
		if strings.Contains(strings.ToLower(columnType), "unsigned") {
			return canal.KindUint
		}
		return canal.KindInt
	case "float", "double", "real":
		return canal.KindFloat
	case "decimal", "numeric":
		return canal.KindDecimal
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
		return canal.KindBytes
	case "date":
		return canal.KindDate
	case "datetime", "timestamp":
		return canal.KindDateTime
	case "time":
		return canal.KindTime
	case "json":
		return canal.KindJSON
	case "enum":
		return canal.KindEnum
	case "set":
		return canal.KindSet
	case "bit":
		return canal.KindBit
	case "year":
		return canal.KindYear
	}
	return canal.KindString
}
