package rules

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/stocksync/stocksync/canal"
)

// seedKey is the key of the state entry that records which definition of a stateful rule
// the rule's saved state belongs to: its value is the rule's signature, or seedMarkerV2 +
// the file and offset of the position the rule was seeded at (while the stream has not yet
// reached it) + the signature, or, once the classes of its summed columns are known,
// seedMarkerV3 + that position (empty when none) + the classes + the signature
// (seedMarker).
const seedKey = "\x00seeded"

// IsSeedMarker reports whether a state entry's key is a rule's seed marker (seedKey), not
// one of its groups: a saved state without its marker is restored as another definition's
// (Restore), whose groups the next seed retracts where it does not publish them.
func IsSeedMarker(key string) bool { return key == seedKey }

// seedMarkerV2 begins a marker that holds the seed's position; seedMarkerV3 one that also
// holds the classes of the summed columns by table (sumtype.go).
const (
	seedMarkerV2 = "v2\x00"
	seedMarkerV3 = "v3\x00"
)

// seedMarker is the value of rule r's marker, seeded at `after` (zero: nothing to skip),
// its summed columns of the classes types (encodeSumTypes; "": not known yet).
func seedMarker(r *Rule, after canal.Position, types string) []byte {
	switch {
	case types != "":
		return fmt.Appendf(nil, "%s%s\x00%d\x00%s\x00%s", seedMarkerV3, after.File, after.Pos, types, r.signature)
	case after.File == "":
		return []byte(r.signature)
	}
	return fmt.Appendf(nil, "%s%s\x00%d\x00%s", seedMarkerV2, after.File, after.Pos, r.signature)
}

// readSeedMarker reads a marker's value: the signature it vouches for, the seed position
// it holds (zero when none) and the classes of the summed columns (nil when not known).
func readSeedMarker(v []byte) (signature string, after canal.Position, types map[string]string) {
	s, v3 := strings.CutPrefix(string(v), seedMarkerV3)
	if !v3 {
		var ok bool
		if s, ok = strings.CutPrefix(string(v), seedMarkerV2); !ok {
			return string(v), canal.Position{}, nil
		}
	}
	file, rest, _ := strings.Cut(s, "\x00")
	pos, rest, _ := strings.Cut(rest, "\x00")
	signature = rest
	if v3 {
		var enc string
		enc, signature, _ = strings.Cut(rest, "\x00") // JSON: no NUL inside
		types = decodeSumTypes(enc)
	}
	n, err := strconv.ParseUint(pos, 10, 32)
	if err != nil || file == "" {
		return signature, canal.Position{}, types
	}
	return signature, canal.Position{File: file, Pos: uint32(n)}, types
}

// Unseeded names the stateful rules whose state does not start from their tables'
// contents: no saved state vouches for their current definition (a first start, a rule
// added or changed in the file, or by a reload). Their sums are wrong until seeded.
func (e *Engine) Unseeded() []string {
	var names []string
	for _, r := range e.set.rules {
		if st := e.states[r.name]; st != nil && !st.seeded {
			names = append(names, r.name)
		}
	}
	return names
}

// TablesOf reports whether a table feeds one of the named rules (those to seed, or to
// re-read for a resync).
func (s *Set) TablesOf(names []string) func(schema, table string) bool {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	return func(schema, table string) bool {
		for _, r := range s.rules {
			if want[r.name] && r.MatchesTable(schema, table) {
				return true
			}
		}
		return false
	}
}

// Seed folds a snapshot row into the named rules only (others see nothing of it). The
// groups it touches emit at the next Commit.
func (e *Engine) Seed(c *canal.RowChange, names []string) error {
	plan := e.planFor(c.Table)
	for _, rp := range plan.rules {
		if rp.rule.emit == EmitRow || !contains(names, rp.rule.name) {
			continue
		}
		if rp.err != nil {
			return rp.err
		}
		st := e.states[rp.rule.name]
		if rp.typesChecked != st {
			if _, err := e.checkSumTypes(st, rp, true); err != nil { // the seed reads the table as it is now
				return err
			}
		}
		if err := e.fold(st, rp, c); err != nil {
			return err
		}
	}
	return nil
}

// MarkSeeded records that the named rules' state now starts from their tables as of
// `after`: changes of transactions that began before it are already in the state and are
// not folded again. The next Commit saves the marker with the state.
func (e *Engine) MarkSeeded(names []string, after canal.Position) {
	for _, n := range names {
		if st := e.states[n]; st != nil {
			st.seeded, st.seedPending, st.activeAfter = true, true, after
		}
	}
	e.seedsWanted = false
}

// Reseed prepares every aggregate and transition rule for a new snapshot that folds all
// their rows again (the binlog since the checkpoint was purged), as PrepareReseed does, and
// the rules are seeded as of the snapshot. At its Commit each group is published against
// what it was: one that no row filled, its rows deleted while the binlog saying so was
// lost, as deleted (aggregate: op d; transition: its empty value, when that differs), at
// the snapshot's position.
func (e *Engine) Reseed() {
	var names []string
	for _, r := range e.set.rules {
		names = append(names, r.name)
	}
	e.MarkSeeded(e.PrepareReseed(names, canal.Source{Snapshot: true}), canal.Position{})
}

// PrepareReseed prepares the named aggregate and transition rules to be seeded again from
// their tables as they are now (DDL moved or removed rows of those tables without row
// events, at `at`: canal.TableReseeder; or the binlog was purged: Reseed). Each group is
// emptied but kept, and Unseeded names the rules until the seed's MarkSeeded. A group's
// sums start again in the class of their columns as the seed reads them, which DDL may
// have changed. At the Commit after the seed, a group no row filled is published as
// deleted, one whose count, sums or value changed as changed (aggregate: a c where a sum
// moved to another class), and one the seed filled as it was is not published again. A
// rule seeded at a later position than `at` already holds the change and is left as it
// is. The classes of the summed columns by table (sumtype.go) are forgotten, and
// recorded again as the seed and the rows after it meet the tables. It returns the
// rules to seed.
func (e *Engine) PrepareReseed(names []string, at canal.Source) []string {
	var seeding []string
	for _, n := range names {
		st := e.states[n]
		if st == nil || st.holds(at) {
			continue
		}
		st.emptyGroups(canal.Source{Snapshot: true}, nil) // the position: the seed's
		for _, g := range st.groups {
			g.reseeding = true // its sums' classes are the columns' as the seed reads them
		}
		st.seeded = false
		// The classes of its summed columns are learned again from the tables the seed
		// reads: a table dropped or renamed away no longer holds the rule to its classes.
		st.sumTypes = nil
		e.forgetTypesChecked(st)
		seeding = append(seeding, n)
	}
	return seeding
}

// holds reports whether a stateful rule's seeded state already holds what happened at
// src: it was seeded by a snapshot at a later position.
func (st *ruleState) holds(src canal.Source) bool {
	if st.activeAfter.IsZero() || src.Snapshot {
		return false
	}
	return canal.Position{File: src.File, Pos: src.Pos}.Compare(st.activeAfter) < 0
}

// seedMarkers returns the markers of rules seeded since the last Commit.
func (e *Engine) seedMarkers() []StateEntry {
	var out []StateEntry
	for _, r := range e.set.rules {
		if st := e.states[r.name]; st != nil && st.seedPending {
			st.seedPending = false
			out = append(out, StateEntry{Rule: r.name, Key: seedKey, Value: seedMarker(r, st.activeAfter, encodeSumTypes(st.sumTypes))})
		}
	}
	return out
}

// passSeedPositions forgets the seed position of each rule the stream has now reached it
// at (pos, a transaction's end): nothing before it is read any more, and a position kept
// longer could be compared with another server's files after a failover. The marker is
// saved again without it.
func (e *Engine) passSeedPositions(pos canal.Position) {
	for _, st := range e.states {
		if !st.activeAfter.IsZero() && pos.File != "" && (canal.Position{File: pos.File, Pos: pos.Pos}).Compare(st.activeAfter) >= 0 {
			st.activeAfter, st.seedPending = canal.Position{}, true
		}
	}
}

func contains(names []string, n string) bool {
	for _, x := range names {
		if x == n {
			return true
		}
	}
	return false
}

// EmptyState is the saved state of every stateful rule over tables that have no rows
// yet: nothing but the markers saying the (empty) state is seeded. A caller that knows
// its tables were empty at a position saves it with that position.
func (s *Set) EmptyState() []StateEntry {
	var out []StateEntry
	for _, r := range s.rules {
		if r.Stateful() {
			out = append(out, StateEntry{Rule: r.name, Key: seedKey, Value: []byte(r.signature)})
		}
	}
	return out
}
