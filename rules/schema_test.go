package rules

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/rules/rulefmt"
)

// TestRulesSchemaAgreesWithValidate: docs/rules.schema.json, which editors check rules
// files with, accepts and refuses what rules validate accepts and refuses, for what a
// JSON schema can say (not expressions, nor which placeholders a topic may hold).
func TestRulesSchemaAgreesWithValidate(t *testing.T) {
	schema := testutil.RulesSchema(t)
	agg := "rules:\n  - name: a\n    match: {table: inventory.sellable_shard}\n    emit: aggregate\n    group_by: [sku_id]\n    sum: {sellable: qty}\n    topic: product.stock\n"
	row := "rules:\n  - name: r\n    match: {table: shop.stock}\n    topic: shop.stock\n"
	for _, tc := range []struct {
		name, src string
		valid     bool
	}{
		{"a row rule", row, true},
		{"a row rule with ops, when, fields, key", row + "    fields: {sku: sku_id, twice: \"row.qty * 2\"}\n    key: [sku_id]\n", true},
		{"a key template", row + "    key: \"{sku_id}:{warehouse}\"\n", true},
		{"an aggregate rule", agg, true},
		{"a transition rule", strings.Replace(agg, "aggregate", "transition", 1) + "    value: sellable > 0\n", true},
		{"aggregate with match.ops", strings.Replace(agg, "{table: inventory.sellable_shard}", "{table: inventory.sellable_shard, ops: [update]}", 1), false},
		{"transition with match.when", strings.Replace(strings.Replace(agg, "aggregate", "transition", 1), "{table: inventory.sellable_shard}", "{table: inventory.sellable_shard, when: \"true\"}", 1) + "    value: sellable > 0\n", false},
		{"key empty", row + "    key: \"\"\n", false},
		{"key list holding an empty name", row + "    key: [sku_id, \"\"]\n", false},
		{"ops empty", strings.Replace(row, "{table: shop.stock}", "{table: shop.stock, ops: \"\"}", 1), false},
		{"table empty", strings.Replace(row, "{table: shop.stock}", "{table: \"\"}", 1), false},
		{"group_by empty", strings.Replace(agg, "[sku_id]", `""`, 1), false},
		{"topic with a space and a slash", strings.Replace(row, "topic: shop.stock", `topic: "bad topic/{sku_id}"`, 1), false},
		{"topic ..", strings.Replace(row, "topic: shop.stock", `topic: ".."`, 1), false},
		{"aggregate with key", agg + "    key: [sku_id]\n", false},
		{"row rule with value", row + "    value: x\n", false},
		{"unknown key", row + "    tpoic: x\n", false},
		{"unknown match key", strings.Replace(row, "{table: shop.stock}", "{table: shop.stock, opz: [update]}", 1), false},
		{"numbers and booleans where text is read", "rules:\n  - name: 12\n    match: {table: shop.stock, when: true}\n    fields: {n: 1, f: false}\n    topic: 2024\n", true},
		{"a fields value empty", row + "    fields: {a: \"\", b: qty}\n", false},
		{"when empty", strings.Replace(row, "{table: shop.stock}", "{table: shop.stock, when: \"\"}", 1), false},
		{"value empty", strings.Replace(agg, "aggregate", "transition", 1) + "    value: \"\"\n", false},
		{"a key template with a '{' left open", row + "    key: \"{sku_id}:{\"\n", false},
		{"a key template with text around", row + "    key: \"sku {sku_id} in {warehouse}\"\n", true},
		{"a key template as a list of one", row + "    key: [\"{sku_id}:{warehouse}\"]\n", true},
		{"a key list of a template and a name", row + "    key: [\"{sku_id}:{warehouse}\", sku_id]\n", false},
		{"columns named beyond ASCII letters", strings.Replace(strings.Replace(agg, "[sku_id]", "[sku-id]", 1), "{sellable: qty}", "{sellable: 库存}", 1), true},
		{"a key template over such columns", row + "    key: \"{sku-id}:{仓库}\"\n", true},
		{"a fields list of such columns", row + "    fields: [sku-id, 库存]\n", true},
		{"a column name ending with a space", row + "    key: [\"sku_id \"]\n", false},
		{"a column name over 64 characters", row + "    fields: [" + strings.Repeat("x", 65) + "]\n", false},
		{"a fields list with a column twice", row + "    fields: [sku_id, qty, qty]\n", false},
		{"a key list with a column twice", row + "    key: [sku_id, sku_id]\n", false},
		{"group_by with a column twice", strings.Replace(agg, "[sku_id]", "[sku_id, sku_id]", 1), false},
		{"an alias and a merge key", "rules:\n  - &r\n    name: a\n    match: {table: &t shop.stock}\n    topic: a\n  - <<: *r\n    name: b\n    match: {table: *t, ops: [insert]}\n", true},
		{"emit unknown", strings.Replace(agg, "aggregate", "sometimes", 1), false},
		{"format unknown", row + "    format: avro\n", false},
		{"ops unknown", strings.Replace(row, "{table: shop.stock}", "{table: shop.stock, ops: [upsert]}", 1), false},
	} {
		var v any
		if err := yaml.Unmarshal([]byte(tc.src), &v); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		schemaErr := schema.Validate(v)
		_, validateErr := Parse("rules.yaml", []byte(tc.src))
		if (schemaErr == nil) != tc.valid || (validateErr == nil) != tc.valid {
			t.Errorf("%s: want valid %v; the schema says %v, validate says %v", tc.name, tc.valid, schemaErr, validateErr)
		}
	}
}

// TestRulesSchemaNamesWhatTheParserKnows: the schema's keys and enum values are those of
// the parser, so an editor neither flags a key the parser reads nor offers one it refuses.
func TestRulesSchemaNamesWhatTheParserKnows(t *testing.T) {
	data, err := os.ReadFile("../docs/rules.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	type object struct {
		Properties map[string]struct {
			Enum       []string                   `json:"enum"`
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"properties"`
	}
	var schema struct {
		object
		Definitions struct {
			Rule object `json:"rule"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	rule := schema.Definitions.Rule.Properties
	ops := rule["match"].Properties["ops"]
	var opsSchema struct {
		OneOf []struct {
			Enum  []string `json:"enum"`
			Items struct {
				Enum []string `json:"enum"`
			} `json:"items"`
		} `json:"oneOf"`
	}
	if err := json.Unmarshal(ops, &opsSchema); err != nil || len(opsSchema.OneOf) != 2 {
		t.Fatalf("match.ops: %v %s", err, ops)
	}
	sorted := func(s []string) []string { return slices.Sorted(slices.Values(s)) }
	for _, c := range []struct {
		what         string
		schema, want []string
	}{
		{"the file's keys", slices.Collect(maps.Keys(schema.Properties)), []string{"rules"}},
		{"a rule's keys", slices.Collect(maps.Keys(rule)), rulefmt.RuleKeys},
		{"match's keys", slices.Collect(maps.Keys(rule["match"].Properties)), rulefmt.MatchKeys},
		{"emit", rule["emit"].Enum, []string{rulefmt.EmitRow, rulefmt.EmitAggregate, rulefmt.EmitTransition}},
		{"format", rule["format"].Enum, []string{rulefmt.FormatDebezium, rulefmt.FormatCanal, rulefmt.FormatMaxwell}},
		{"match.ops as one", opsSchema.OneOf[0].Enum, rulefmt.OpNames},
		{"match.ops as a list", opsSchema.OneOf[1].Items.Enum, rulefmt.OpNames},
	} {
		if got, want := sorted(c.schema), sorted(c.want); !slices.Equal(got, want) {
			t.Errorf("%s: the schema has %v, the parser %v", c.what, got, want)
		}
	}
}
