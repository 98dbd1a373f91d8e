package rules

import (
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// TestRulesSchemaAgreesWithValidate: docs/rules.schema.json, which editors check rules
// files with, accepts and refuses what rules validate accepts and refuses, for what a
// JSON schema can say (not expressions, nor which placeholders a topic may hold).
func TestRulesSchemaAgreesWithValidate(t *testing.T) {
	const schemaPath = "../docs/rules.schema.json"
	f, err := os.Open(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("rules.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("rules.schema.json")
	if err != nil {
		t.Fatal(err)
	}
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
