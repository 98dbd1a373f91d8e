package rules

import (
	"fmt"
	"slices"
	"strings"

	"github.com/stocksync/stocksync/rules/rulefmt"
)

// ReservedTopic is a topic of the daemon's own that no rule may publish to: Topic, named
// by the config key Key (kafka.heartbeat_topic; kafka.checkpoint_topic exactly-once).
type ReservedTopic struct {
	Topic, Key string
}

// CheckReservedTopics reports each rule whose topic is one of reserved, or is a template
// that could be filled in as one, as an Error at the rule's topic (Errors, nil when
// none): the consumers of that topic would read the rule's messages with the daemon's
// own. A template counts as able to: its literal text fits around the reserved name, and
// each placeholder could hold the part in between ({op} one of the four ops, {schema} and
// {table} a name one of the rule's globs matches, a column any value, a group_by column
// named op, schema or table included), so that no message
// of the rule can ever land there; the check is made before the rule runs, not on each
// message.
func (s *Set) CheckReservedTopics(reserved []ReservedTopic) error {
	var errs Errors
	for _, r := range s.rules {
		for _, rt := range reserved {
			if rt.Topic == "" {
				continue
			}
			switch {
			case r.topic != "" && r.topic == rt.Topic:
				errs = append(errs, Error{File: s.file, Pos: r.src.Topic.Pos, Msg: fmt.Sprintf(
					"rule %q: topic %q is %s, which the daemon writes its own records to: name another topic (or another %s)", r.name, r.topic, rt.Key, rt.Key)})
			case r.topic == "" && r.couldFill(r.topicParts, rt.Topic):
				errs = append(errs, Error{File: s.file, Pos: r.src.Topic.Pos, Msg: fmt.Sprintf(
					"rule %q: topic %q could be filled in as %q, %s, which the daemon writes its own records to: change the template's literal text (or %s) so that it cannot",
					r.name, r.src.Topic.Value, rt.Topic, rt.Key, rt.Key)})
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	errs.Sort()
	return errs
}

// couldFill reports whether template parts could be filled in as name.
func (r *Rule) couldFill(parts []rulefmt.TemplatePart, name string) bool {
	if len(parts) == 0 {
		return name == ""
	}
	p := parts[0]
	if !p.Var {
		rest, ok := strings.CutPrefix(name, p.Text)
		return ok && r.couldFill(parts[1:], rest)
	}
	for n := 1; n <= len(name); n++ {
		if r.couldHold(p.Text, name[:n]) && r.couldFill(parts[1:], name[n:]) {
			return true
		}
	}
	return false
}

// couldHold reports whether placeholder {name} could be filled with value. In an
// aggregate or transition rule every placeholder is a group_by column (the engine's
// groupTopic), {op}, {schema} and {table} too, and a column could hold any value.
func (r *Rule) couldHold(name, value string) bool {
	if slices.Contains(r.groupBy, name) {
		return true
	}
	switch name {
	case "op":
		return slices.Contains([]string{"insert", "update", "delete", "read"}, value)
	case "schema", "table":
		for _, g := range r.tables {
			half := g.schema
			if name == "table" {
				half = g.table
			}
			if half != nil && half.MatchString(value) {
				return true
			}
		}
		return false
	}
	return true
}
