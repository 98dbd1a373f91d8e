package rulefmt

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// YAML lets a file write a value once and use it again: an anchor (&stock) names a node,
// an alias (*stock) stands for it, and a merge key (<<: *base) copies a mapping's keys
// into another that does not write them itself. Rule writers use them for many alike
// rules. yaml.v3 keeps them as they are written in its node tree, so the parser would
// meet an alias where it expects a scalar, and "<<" as an unknown key: expandAliases first
// rewrites the tree with each alias replaced by the node it names and each merge key by
// the keys it brings. The nodes keep the places they were written at, so a problem in a
// value used through an alias is reported where the anchored value is written (once for
// each rule that uses it, each naming its rule).

// maxAliasNodes bounds the nodes that aliases may bring into a file, so that a few lines
// of aliases of aliases (the "billion laughs") cannot take the daemon's memory.
const maxAliasNodes = 100_000

// aliasError is a problem with an alias or a merge key, at its place.
type aliasError struct {
	at  Pos
	msg string
}

type aliasExpander struct {
	// inside are the anchored nodes being expanded, to refuse an alias within its own
	// anchor's value (&a [*a]), which would never end.
	inside map[*yaml.Node]bool
	// brought counts the nodes aliases brought in; tooMany says it passed maxAliasNodes
	// (reported once).
	brought int
	tooMany bool
	errs    []aliasError
	// merged are, per mapping expanded, the keys it takes through a merge key.
	merged map[*yaml.Node][]string
}

// expandAliases returns n with every alias replaced by (a copy of) the node it names and
// every merge key by the keys it merges, and the problems met: an alias inside its own
// anchor's value, a merge key whose value is not a mapping or a list of them, aliases
// bringing in more than maxAliasNodes nodes; and, per mapping of the result, the keys it
// takes through a merge key (a value there is written elsewhere, which a problem with it
// being in this mapping must say). Mappings and lists are copied, scalars shared; n
// itself is not changed.
func expandAliases(n *yaml.Node) (*yaml.Node, []aliasError, map[*yaml.Node][]string) {
	x := &aliasExpander{inside: map[*yaml.Node]bool{}, merged: map[*yaml.Node][]string{}}
	out := x.node(n, false)
	return out, x.errs, x.merged
}

func (x *aliasExpander) errorf(at *yaml.Node, format string, args ...any) {
	x.errs = append(x.errs, aliasError{at: pos(at), msg: fmt.Sprintf(format, args...)})
}

// node expands n; viaAlias says n is reached through an alias, and counts against
// maxAliasNodes.
func (x *aliasExpander) node(n *yaml.Node, viaAlias bool) *yaml.Node {
	if viaAlias {
		x.brought++
	}
	switch n.Kind {
	case yaml.AliasNode:
		target := n.Alias
		switch {
		case target == nil:
			x.errorf(n, "alias *%s names no anchor", n.Value)
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
		case x.inside[target]:
			x.errorf(n, "alias *%s is inside the value of its own anchor &%s, which would never end", n.Value, n.Value)
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
		case x.brought > maxAliasNodes:
			if !x.tooMany {
				x.tooMany = true
				x.errorf(n, "aliases bring in more than %d YAML nodes, more than any rules file needs", maxAliasNodes)
			}
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
		}
		return x.node(target, true) // a mapping or list marks itself inside (x.inside)
	case yaml.MappingNode:
		return x.mapping(n, viaAlias)
	case yaml.SequenceNode:
		x.inside[n] = true
		defer delete(x.inside, n)
		c := *n
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, item := range n.Content {
			c.Content[i] = x.node(item, viaAlias)
		}
		return &c
	}
	return n
}

// isMergeKey reports whether k is YAML's merge key, a plain <<.
func isMergeKey(k *yaml.Node) bool { return k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" }

// mapping expands a mapping: its keys and values, and its merge keys, whose mappings'
// keys are added where the merge key is written, unless the mapping writes them itself
// or an earlier merged mapping brought them (YAML's merge: a list of mappings merges the
// first one's keys first).
func (x *aliasExpander) mapping(n *yaml.Node, viaAlias bool) *yaml.Node {
	x.inside[n] = true
	defer delete(x.inside, n)
	written := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && !isMergeKey(k) {
			written[k.Value] = true
		}
	}
	c := *n
	c.Content = make([]*yaml.Node, 0, len(n.Content))
	merged := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !isMergeKey(k) {
			c.Content = append(c.Content, x.node(k, viaAlias), x.node(v, viaAlias))
			continue
		}
		value := x.node(v, viaAlias)
		sources := []*yaml.Node{value}
		if value.Kind == yaml.SequenceNode {
			sources = value.Content
		}
		for _, m := range sources {
			if m.Kind != yaml.MappingNode {
				x.errorf(m, "<<: a merge key takes a mapping, an alias of one, or a list of them, not %s", kindNames[m.Kind])
				break
			}
			for j := 0; j+1 < len(m.Content); j += 2 {
				mk := m.Content[j]
				if mk.Kind == yaml.ScalarNode && (written[mk.Value] || merged[mk.Value]) {
					continue // the mapping's own key, or an earlier mapping's, wins
				}
				if mk.Kind == yaml.ScalarNode {
					merged[mk.Value] = true
					x.merged[&c] = append(x.merged[&c], mk.Value)
				}
				c.Content = append(c.Content, mk, m.Content[j+1])
			}
		}
	}
	return &c
}
