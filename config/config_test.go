package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stocksync/stocksync/internal/testutil"
)

// load loads yaml from a stocksync.yaml of its own, beside a rules.yaml.
func load(t *testing.T, yaml string) (Config, error) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "rules.yaml"), "rules: []\n")
	return Load(writeFile(t, filepath.Join(dir, "stocksync.yaml"), yaml))
}

func writeFile(t *testing.T, path, data string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadReportsEveryProblemWithFileLineAndKey(t *testing.T) {
	cases := []struct {
		name, conf string
		want       []string
	}{
		{"unknown top-level key", "sorce: {}\n", []string{"stocksync.yaml:1:1: sorce: unknown key"}},
		{"unknown nested key", "source:\n  adr: x:1\n", []string{"stocksync.yaml:2:3: source.adr: unknown key (known: addr,"}},
		{"no port", "source: {addr: db.local}\n", []string{`source.addr: "db.local" has no port`}},
		{"zero server id", "source: {server_id: 0}\n", []string{"source.server_id: must be a non-zero replica id"}},
		{"bad flavor", "source: {flavor: postgres}\n", []string{`source.flavor: "postgres" is not one of mysql, mariadb`}},
		{"renamed table wait too short", "source: {renamed_table_wait: 500ms}\n", []string{"stocksync.yaml:1:30: source.renamed_table_wait: must be from 1s to 24h", "got 500ms"}},
		{"broker without port", "kafka: {brokers: [a:1, b]}\n", []string{`stocksync.yaml:1:24: kafka.brokers[1]: "b" has no port`}},
		{"list item indented under the one before", "kafka:\n  brokers:\n    - a:9092\n     - b:9092\n", []string{`kafka.brokers[0]: "a:9092 - b:9092" is not host:port`}},
		{"broker port out of range", "kafka: {brokers: [a:99999]}\n", []string{`kafka.brokers[0]: "a:99999" has no port number from 1 to 65535`}},
		{"checkpoint table", "checkpoint: {table: nodot}\n", []string{`checkpoint.table: "nodot" must be schema.table`}},
		{"long checkpoint name", "checkpoint: {name: " + strings.Repeat("n", 52) + "}\n", []string{"checkpoint.name: must be at most 51 bytes (it names rows of checkpoint.table), got 52"}},
		{"no inventory connections", "inventory: {max_connections: 0}\n", []string{"inventory.max_connections: must be between 1 and 4096"}},
		{"bad snapshot", "snapshot: sometimes\n", []string{`snapshot: "sometimes" is not one of never, initial, when_needed`}},
		{"empty chunks", "snapshot_chunk_size: 0\n", []string{"snapshot_chunk_size: must be between 1 and 1000000, got 0"}},
		{"tiny in-flight budget", "kafka: {max_in_flight_bytes: 65536}\n", []string{"stocksync.yaml:1:30: kafka.max_in_flight_bytes: must be at least 1048576 (1 MiB), got 65536"}},
		{"tiny messages", "kafka: {max_message_bytes: 10}\n", []string{"kafka.max_message_bytes: must be between 1024 and 100000000, got 10"}},
		{"bad partitioner", "kafka: {partitioner: random}\n", []string{`kafka.partitioner: "random" is not one of murmur2, crc32, fnv1a`}},
		{"heartbeat topic Kafka refuses", "kafka: {heartbeat_topic: \"stock heartbeat\"}\n", []string{`kafka.heartbeat_topic: "stock heartbeat": ' ' is not allowed in a Kafka topic name`}},
		{"heartbeat topic holding the checkpoints", "kafka: {exactly_once: true, heartbeat_topic: stocksync.checkpoints}\n", []string{`kafka.heartbeat_topic: "stocksync.checkpoints" is kafka.checkpoint_topic, which holds the checkpoints: name a topic of its own`}},
		{"heartbeat topic dot", "kafka: {heartbeat_topic: \".\"}\n", []string{`kafka.heartbeat_topic: "." is not a legal Kafka topic name`}},
		{"heartbeat every millisecond", "kafka: {heartbeat_interval: 1ms}\n", []string{"kafka.heartbeat_interval: must be from 1s to 1h (the daemon sends a heartbeat at most once a second, when the source is quiet), got 1ms"}},
		{"bad tls mode", "source: {tls: {mode: sometimes}}\n", []string{`source.tls.mode: "sometimes" is not one of disabled, required, verify_ca, verify_full`}},
		{"tls file without mode", "kafka: {tls: {ca_file: ca.pem}}\n", []string{"kafka.tls.ca_file: is set but kafka.tls.mode is disabled"}},
		{"missing ca file", "kafka: {tls: {mode: verify_full, ca_file: missing.pem}}\n", []string{"kafka.tls.ca_file:", "missing.pem: no such file"}},
		{"cert without key", "source: {tls: {mode: required, cert_file: c.pem}}\n", []string{"source.tls.cert_file: cert_file and key_file go together"}},
		{"bad sasl mechanism", "kafka: {brokers: [k:9092], sasl: {mechanism: GSSAPI, user: u}}\n", []string{`kafka.sasl.mechanism: "GSSAPI" is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512`}},
		{"sasl without user", "kafka: {brokers: [k:9092], sasl: {mechanism: SCRAM-SHA-512}}\n", []string{"kafka.sasl.user: SCRAM-SHA-512 needs a user"}},
		{"sasl password alone", "kafka: {brokers: [k:9092], sasl: {password: pw}}\n", []string{"kafka.sasl.mechanism: password is set but no mechanism"}},
		{"sasl with the embedded broker", "kafka: {sasl: {mechanism: PLAIN, user: u}}\n", []string{"kafka.sasl.mechanism: is set, but kafka.brokers is empty"}},
		{"tls with the embedded broker", "kafka: {tls: {mode: required}}\n", []string{"kafka.tls.mode: is set, but kafka.brokers is empty"}},
		{"exactly once without id", "kafka: {exactly_once: true, transactional_id: \"\"}\n", []string{"kafka.transactional_id: exactly_once needs a transactional id"}},
		{"several at once", "source: {addr: x, bogus: 1}\nlog: {level: loud, format: xml}\n",
			[]string{"source.addr", "source.bogus: unknown key", "log.level", "log.format"}},
		{"not a mapping", "- a\n- b\n", []string{"(file): must be a mapping"}},
		{"not yaml", "source: [\n", []string{"not valid YAML"}},
		{"indented too deep", "source:\n  addr: a:1\n   user: u\n", []string{"stocksync.yaml:3:1: (file): not valid YAML: mapping values are not allowed"}},
		{"key between two indentations", "source:\n  addr: a:1\n  tls:\n    mode: disabled\n   ca_file: x\n", []string{"stocksync.yaml:5:1: (file): not valid YAML: did not find expected key"}},
		{"tab in the indentation", "source:\n\taddr: a:1\n", []string{"stocksync.yaml:2:1: (file): a tab in the indentation: YAML indents with spaces"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := load(t, c.conf)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if c.name == "several at once" && len(err.(Problems)) != 4 {
				t.Errorf("want 4 problems, got %d:\n%v", len(err.(Problems)), err)
			}
		})
	}
}

// TestLoadSaysWhatAKeyWants: a value a key cannot take is named, with what the key wants
// instead, in the user's words rather than Go's types, and once.
func TestLoadSaysWhatAKeyWants(t *testing.T) {
	cases := []struct {
		name, conf, want string
	}{
		{"duration with a word for its unit", "checkpoint: {interval: 1 sec}\n",
			`stocksync.yaml:1:24: checkpoint.interval: "1 sec" is not a duration such as 1s, 500ms or 2m`},
		{"duration that is a word", "inventory:\n  sweep_interval: soon\n",
			`stocksync.yaml:2:19: inventory.sweep_interval: "soon" is not a duration such as 1s, 500ms or 2m`},
		{"duration that is a list", "inventory: {hold_ttl: [1m]}\n",
			"inventory.hold_ttl: a list is not a duration such as 1s, 500ms or 2m"},
		{"replica id that is a word", "source:\n  server_id: abc\n",
			`stocksync.yaml:2:14: source.server_id: "abc" is not a whole number from 0 to 4294967295`},
		{"negative replica id", "source: {server_id: -1}\n",
			"source.server_id: -1 is not a whole number from 0 to 4294967295"},
		{"replica id too large", "source: {server_id: 4294967296}\n",
			"source.server_id: 4294967296 is not a whole number from 0 to 4294967295"},
		{"fraction", "kafka: {max_in_flight: 1.5}\n", "kafka.max_in_flight: 1.5 is not a whole number"},
		{"number for a switch", "ha: 3\n", "ha: 3 is not true or false"},
		{"word for a switch", "kafka: {exactly_once: yes please}\n", `kafka.exactly_once: "yes please" is not true or false`},
		{"list for an address", "source: {addr: [a:1, b:2]}\n", "source.addr: a list is not a single value"},
		{"mapping for a list", "kafka: {brokers: {a: 1}}\n", "kafka.brokers: a mapping is not a list such as [a, b]"},
		{"section that is a value", "source: 5\n", "stocksync.yaml:1:9: source: must be a mapping"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := load(t, c.conf)
			if err == nil {
				t.Fatal("no error")
			}
			if ps := err.(Problems); len(ps) != 1 || !strings.HasSuffix(ps[0].String(), c.want) {
				t.Errorf("want one problem ending %q, got:\n%v", c.want, err)
			}
		})
	}
}

// TestDurationsNeedAUnitAndASensibleLength: a number without a unit is refused for every
// duration (Go would read it as nanoseconds: hold_ttl: 15 released holds at once,
// checkpoint.interval: 1 spun the idle daemon), and so is a duration under its floor.
func TestDurationsNeedAUnitAndASensibleLength(t *testing.T) {
	cases := []struct {
		name, conf, want string
	}{
		{"hold ttl without unit", "inventory: {hold_ttl: 15}\n",
			"stocksync.yaml:1:23: inventory.hold_ttl: 15 has no unit; write it with one, e.g. 15s or 15m"},
		{"checkpoint interval without unit", "checkpoint:\n  interval: 1\n",
			"stocksync.yaml:2:13: checkpoint.interval: 1 has no unit; write it with one, e.g. 1s or 1m"},
		{"sweep interval without unit", "inventory: {sweep_interval: 2.5}\n",
			"inventory.sweep_interval: 2.5 has no unit; write it with one, e.g. 2.5s or 2.5m"},
		{"quoted number", "inventory: {hold_ttl: \"15\"}\n", "inventory.hold_ttl: 15 has no unit"},
		{"zero without unit", "checkpoint: {interval: 0}\n", "checkpoint.interval: 0 has no unit"},
		{"checkpoint interval under its floor", "checkpoint: {interval: 1ms}\n",
			"checkpoint.interval: must be at least 10ms (each interval waits for the broker and saves the checkpoint), got 1ms"},
		{"negative checkpoint interval", "checkpoint: {interval: -1s}\n", "checkpoint.interval: must be at least 10ms"},
		{"hold ttl under its floor", "inventory: {hold_ttl: 500ms}\n",
			"inventory.hold_ttl: must be from 1s to 168h0m0s (an unpaid deduction is released this long after it is made), got 500ms"},
		{"hold ttl over the longest hold", "inventory: {hold_ttl: 200h}\n",
			"inventory.hold_ttl: must be from 1s to 168h0m0s"},
		{"sweep interval under its floor", "inventory: {sweep_interval: 1ns}\n",
			"inventory.sweep_interval: must be at least 10ms (each sweep is a transaction on the server), got 1ns"},
		{"exactly-once transaction under twice the checkpoint interval", "kafka: {exactly_once: true}\ncheckpoint: {interval: 10m}\n",
			"kafka.transaction_timeout: must be at least twice checkpoint.interval (10m0s) with kafka.exactly_once"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := load(t, c.conf)
			if err == nil {
				t.Fatal("no error")
			}
			if ps := err.(Problems); len(ps) != 1 || !strings.Contains(ps[0].String(), c.want) {
				t.Errorf("want one problem with %q, got:\n%v", c.want, err)
			}
		})
	}

	// At least once, no Kafka transaction is opened: a long interval needs no timeout.
	if _, err := load(t, "checkpoint: {interval: 10m}\n"); err != nil {
		t.Errorf("a 10m checkpoint interval at least once: %v", err)
	}
	cfg, err := load(t, "checkpoint: {interval: 10ms}\ninventory: {hold_ttl: 1s, sweep_interval: 1m30s}\n")
	if err != nil {
		t.Fatalf("durations at their floors are refused: %v", err)
	}
	if cfg.Checkpoint.Interval != 10*time.Millisecond || cfg.Inventory.HoldTTL != time.Second || cfg.Inventory.SweepInterval != 90*time.Second {
		t.Errorf("durations read wrongly: %+v %+v", cfg.Checkpoint, cfg.Inventory)
	}
}

// TestEveryValueOfTheWrongTypeAtOnce: values of the wrong type in several sections are
// all reported in one run, each at its place, not one per run.
func TestEveryValueOfTheWrongTypeAtOnce(t *testing.T) {
	_, err := load(t, "source: {server_id: abc}\ncheckpoint: {interval: 15}\ninventory: {hold_ttl: 2 minutes, max_connections: abc}\n")
	want := []string{
		`stocksync.yaml:1:21: source.server_id: "abc" is not a whole number`,
		"stocksync.yaml:2:24: checkpoint.interval: 15 has no unit",
		`stocksync.yaml:3:23: inventory.hold_ttl: "2 minutes" is not a duration`,
		`stocksync.yaml:3:51: inventory.max_connections: "abc" is not a whole number`,
	}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("lacks %q:\n%v", w, err)
		}
	}
}

// TestProblemsFromTheEnvironmentNameTheVariable: a value a STOCKSYNC_* variable set is
// reported under that variable, not at the line of the file it replaced.
func TestProblemsFromTheEnvironmentNameTheVariable(t *testing.T) {
	conf := "source:\n  server_id: 9\nkafka: {brokers: [k:9092]}\ncheckpoint:\n  interval: 1s\nlog: {level: info}\n"
	cases := []struct {
		name, env, value, want string
	}{
		{"duration", "STOCKSYNC_CHECKPOINT_INTERVAL", "abc",
			`STOCKSYNC_CHECKPOINT_INTERVAL: checkpoint.interval: "abc" is not a duration such as 1s, 500ms or 2m`},
		{"duration without unit", "STOCKSYNC_CHECKPOINT_INTERVAL", "1",
			"STOCKSYNC_CHECKPOINT_INTERVAL: checkpoint.interval: 1 has no unit; write it with one, e.g. 1s or 1m"},
		{"duration under its floor", "STOCKSYNC_CHECKPOINT_INTERVAL", "1ms",
			"STOCKSYNC_CHECKPOINT_INTERVAL: checkpoint.interval: must be at least 10ms (each interval waits for the broker and saves the checkpoint), got 1ms"},
		{"replica id that is a word", "STOCKSYNC_SOURCE_SERVER_ID", "nine",
			`STOCKSYNC_SOURCE_SERVER_ID: source.server_id: "nine" is not a whole number from 0 to 4294967295`},
		{"zero replica id", "STOCKSYNC_SOURCE_SERVER_ID", "0",
			"STOCKSYNC_SOURCE_SERVER_ID: source.server_id: must be a non-zero replica id unique among the server's replicas"},
		{"log level", "STOCKSYNC_LOG_LEVEL", "loud",
			`STOCKSYNC_LOG_LEVEL: log.level: "loud" is not one of debug, info, warn, error`},
		{"a list's item", "STOCKSYNC_KAFKA_BROKERS", "a:1,b",
			`STOCKSYNC_KAFKA_BROKERS: kafka.brokers[1]: "b" has no port; write host:port`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(c.env, c.value)
			_, err := load(t, conf)
			if err == nil {
				t.Fatal("no error")
			}
			if ps := err.(Problems); len(ps) != 1 || ps[0].String() != c.want {
				t.Errorf("want one problem:\n%s\ngot:\n%v", c.want, err)
			}
		})
	}
}

// TestTLSFilesAreReadRelativeToTheConfig: certificate paths are relative to the config
// file, the files are parsed at load, and a CA file without a certificate is named.
func TestTLSFilesAreReadRelativeToTheConfig(t *testing.T) {
	certs := testutil.NewCerts(t)
	conf := `source: {tls: {mode: verify_full, ca_file: ca.pem, cert_file: client.pem, key_file: client-key.pem}}
kafka: {brokers: [kafka-1:9093], tls: {mode: verify_ca, ca_file: ca.pem}, sasl: {mechanism: SCRAM-SHA-256, user: stocksync}}
`
	path := writeFile(t, filepath.Join(certs.Dir, "stocksync.yaml"), conf)
	writeFile(t, filepath.Join(certs.Dir, "rules.yaml"), "rules: []\n")
	t.Setenv("STOCKSYNC_KAFKA_SASL_PASSWORD", "from-env")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.TLS.CAFile != certs.CAFile || cfg.Source.TLS.KeyFile != certs.ClientKey {
		t.Errorf("tls files not resolved against the config's folder: %+v", cfg.Source.TLS)
	}
	if cfg.Kafka.SASL.Password != "from-env" {
		t.Errorf("kafka.sasl.password not read from the environment")
	}
	tc, err := cfg.Source.TLS.ClientConfig("db.local")
	if err != nil || tc.ServerName != "db.local" || tc.InsecureSkipVerify || len(tc.Certificates) != 1 {
		t.Errorf("verify_full client config: %+v, %v", tc, err)
	}

	if err := os.WriteFile(filepath.Join(certs.Dir, "empty.pem"), []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("kafka: {tls: {mode: verify_ca, ca_file: empty.pem}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "kafka.tls.ca_file: the CA file") {
		t.Errorf("a CA file without a certificate: %v", err)
	}
}

func TestDefaultsEnvironmentAndRelativeRules(t *testing.T) {
	t.Setenv("STOCKSYNC_SOURCE_PASSWORD", "from-env")
	t.Setenv("STOCKSYNC_CHECKPOINT_INTERVAL", "250ms")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "r", "rules.yaml"), "rules: []\n")
	cfg, err := Load(writeFile(t, filepath.Join(dir, "stocksync.yaml"), "source: {addr: db:3306}\nrules: r/rules.yaml\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.Password != "from-env" || cfg.Checkpoint.Interval != 250*time.Millisecond {
		t.Errorf("environment not applied: %+v", cfg)
	}
	if cfg.Source.Addr != "db:3306" || cfg.Source.ServerID != 4201 || cfg.Inventory.HoldTTL != 15*time.Minute {
		t.Errorf("file or defaults not applied: %+v", cfg)
	}
	if want := filepath.Join(filepath.Dir(cfg.File), "r", "rules.yaml"); cfg.Rules != want {
		t.Errorf("rules = %q, want %q (relative to the config file)", cfg.Rules, want)
	}
}

// TestMisspeltVariableIsNamedWhenTheConfigFails: the misspelt variable is named also when
// the file has problems (perhaps the very key the variable was meant to set), and when it
// is not YAML at all.
func TestMisspeltVariableIsNamedWhenTheConfigFails(t *testing.T) {
	t.Setenv("STOCKSYNC_SOURCE_SERVERID", "5")
	want := []string{"STOCKSYNC_SOURCE_SERVERID is no key's variable and is ignored (STOCKSYNC_SOURCE_SERVER_ID?)"}
	for name, file := range map[string]string{
		"a bad value": "source:\n  server_id: 0\n",
		"not YAML":    "source:\n\tserver_id: 5\n",
	} {
		cfg, err := load(t, file)
		if err == nil {
			t.Errorf("%s: loaded without a problem", name)
		}
		if !slices.Equal(cfg.UnknownVariables, want) {
			t.Errorf("%s: unknown variables %q, want %q", name, cfg.UnknownVariables, want)
		}
	}
}

// TestMisspeltVariableIsNamed: a STOCKSYNC_* variable that sets no key is named, with the
// variable meant when only underscores differ; the project's own script variables are not.
func TestMisspeltVariableIsNamed(t *testing.T) {
	t.Setenv("STOCKSYNC_SOURCE_SERVERID", "5")
	t.Setenv("STOCKSYNC_KAFKA_BROKER", "k:9092")
	t.Setenv("STOCKSYNC_MARIADB_PORT", "33061")
	t.Setenv("STOCKSYNC_SOURCE_PASSWORD", "set")
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"STOCKSYNC_KAFKA_BROKER is no key's variable and is ignored",
		"STOCKSYNC_SOURCE_SERVERID is no key's variable and is ignored (STOCKSYNC_SOURCE_SERVER_ID?)",
	}
	if !slices.Equal(cfg.UnknownVariables, want) {
		t.Errorf("unknown variables %q, want %q", cfg.UnknownVariables, want)
	}
}

// TestRulesFileMustExist: the rules file a config names (or its default, rules.yaml beside
// it) is checked at load and reported at the rules key, not when the daemon reads it;
// LoadWithoutRules, for the commands that never read it, does not check it.
func TestRulesFileMustExist(t *testing.T) {
	cases := []struct {
		name, conf, env string
		want            func(dir string) string // the one problem, in full
	}{
		{"missing", "source: {server_id: 9}\nrules: nope.yaml\n", "", func(dir string) string {
			return filepath.Join(dir, "stocksync.yaml") + ":2:8: rules: " + filepath.Join(dir, "nope.yaml") + " does not exist"
		}},
		{"a folder", "rules: sub\n", "", func(dir string) string {
			return filepath.Join(dir, "stocksync.yaml") + ":1:8: rules: " + filepath.Join(dir, "sub") + " is a folder, not a file"
		}},
		{"the default", "source: {server_id: 9}\n", "", func(dir string) string {
			return filepath.Join(dir, "stocksync.yaml") + ": rules: " + filepath.Join(dir, "rules.yaml") + " does not exist"
		}},
		{"from the environment", "rules: sub/rules.yaml\n", "nope.yaml", func(dir string) string {
			return "STOCKSYNC_RULES: rules: " + filepath.Join(dir, "nope.yaml") + " does not exist"
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "sub", "rules.yaml"), "rules: []\n")
			if c.env != "" {
				t.Setenv("STOCKSYNC_RULES", c.env)
			}
			_, err := Load(writeFile(t, filepath.Join(dir, "stocksync.yaml"), c.conf))
			if err == nil {
				t.Fatal("no error")
			}
			if ps := err.(Problems); len(ps) != 1 || ps[0].String() != c.want(dir) {
				t.Errorf("want one problem:\n%s\ngot:\n%v", c.want(dir), err)
			}
			// The commands that never read the config's rules file (all but serve) load it.
			if _, err := LoadWithoutRules(filepath.Join(dir, "stocksync.yaml")); err != nil {
				t.Errorf("LoadWithoutRules: %v", err)
			}
		})
	}
	// Not when the config names no rules file at all: that is a mistake in the file.
	dir := t.TempDir()
	if _, err := LoadWithoutRules(writeFile(t, filepath.Join(dir, "stocksync.yaml"), "rules: \"\"\n")); err == nil || !strings.Contains(err.Error(), "rules: must name the rules file") {
		t.Errorf("LoadWithoutRules of a config with rules: \"\": %v; want the rules key named", err)
	}

	// Without a config file, nothing names a rules file, and commands that need none
	// (tail with the development broker) still load the defaults.
	if _, err := Load(""); err != nil {
		t.Errorf("defaults alone, with no rules.yaml here: %v", err)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load("../stocksync.example.yaml")
	if err != nil {
		t.Fatalf("the example config in the repository does not load:\n%v", err)
	}
	if cfg.Rules != filepath.Join("..", "examples", "rules.yaml") {
		t.Errorf("rules = %q", cfg.Rules)
	}
}

// TestExampleConfigNamesEveryKey: stocksync.example.yaml is where a newcomer learns the
// keys, so it sets every one the daemon reads.
func TestExampleConfigNamesEveryKey(t *testing.T) {
	data, err := os.ReadFile("../stocksync.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(typ reflect.Type, node *yaml.Node, prefix string)
	walk = func(typ reflect.Type, node *yaml.Node, prefix string) {
		for i := range typ.NumField() {
			key := typ.Field(i).Tag.Get("mapstructure")
			if key == "" || key == "-" {
				continue
			}
			var val *yaml.Node
			for j := 0; node != nil && j+1 < len(node.Content); j += 2 {
				if node.Content[j].Value == key {
					val = node.Content[j+1]
				}
			}
			if val == nil {
				t.Errorf("stocksync.example.yaml lacks %s%s", prefix, key)
				continue
			}
			if typ.Field(i).Type.Kind() == reflect.Struct && typ.Field(i).Type != reflect.TypeOf(time.Duration(0)) {
				walk(typ.Field(i).Type, val, prefix+key+".")
			}
		}
	}
	walk(reflect.TypeOf(Config{}), doc.Content[0], "")
}

// TestReadmeConfigLoads keeps the configuration shown in README.md true.
func TestReadmeConfigLoads(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 || !strings.Contains(block, "source:") {
		t.Fatal("README.md has no ```yaml block with the configuration")
	}
	if _, err := load(t, block); err != nil {
		t.Fatalf("README.md's configuration does not load:\n%v", err)
	}
}

// TestSetsAndProblemAtTellWhatTheOperatorGave: Sets tells a key or section the file or a
// variable gives from one left to Default, and ProblemAt places a problem found after
// Load (by serve, against the server) where the value came from, as Load places its own.
func TestSetsAndProblemAtTellWhatTheOperatorGave(t *testing.T) {
	t.Setenv("STOCKSYNC_KAFKA_CLIENT_ID", "from-env")
	cfg, err := load(t, "source: {addr: \"db:3306\"}\ninventory:\n  hold_ttl: 1m\n")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{"inventory": true, "inventory.hold_ttl": true, "inventory.database": false,
		"source": true, "kafka": true, "kafka.client_id": true, "kafka.brokers": false, "checkpoint": false, "http": false} {
		if got := cfg.Sets(key); got != want {
			t.Errorf("Sets(%q) = %v, want %v", key, got, want)
		}
	}
	if got := cfg.ProblemAt("inventory.hold_ttl", "too short").String(); !strings.HasSuffix(got, "stocksync.yaml:3:13: inventory.hold_ttl: too short") {
		t.Errorf("ProblemAt a key of the file = %q, want it at its line and column", got)
	}
	if got := cfg.ProblemAt("inventory.database", "missing").String(); !strings.HasSuffix(got, "stocksync.yaml: inventory.database: missing") {
		t.Errorf("ProblemAt a key the file leaves to its default = %q, want the file without a line", got)
	}
	if got := cfg.ProblemAt("kafka.client_id", "bad").String(); got != "STOCKSYNC_KAFKA_CLIENT_ID: kafka.client_id: bad" {
		t.Errorf("ProblemAt a key a variable sets = %q, want the variable named", got)
	}
	if Default().Sets("inventory") {
		t.Error("Default().Sets(inventory) = true; want nothing set")
	}
}

// TestTextKeysTakeTheValueAsWritten: a password, token or any other text key written
// without quotes, that YAML alone would read as a number or a switch (0x1F, 012345,
// 1_000_000, 6e3, 1.50, true), is taken exactly as the file writes it: read as a number
// and written back, 012345 was "5349" and 1.50 "1.5", a password nobody wrote (the server
// answered "Access denied") or a token no client had (every call 401). A list's items and
// a value given by an alias keep their text too, and so does a STOCKSYNC_* variable; keys
// that are numbers, switches or durations read those as before.
func TestTextKeysTakeTheValueAsWritten(t *testing.T) {
	for _, written := range []string{"0x1F", "012345", "0o17", "1_000_000", "6e3", "1.50", ".5", "-0", ".inf", "true", "False", "2001-12-14"} {
		cfg, err := load(t, fmt.Sprintf("source: {user: %s, password: %[1]s}\nhttp: {token: %[1]s}\ncheckpoint: {name: %[1]s}\n"+
			"kafka: {brokers: [k:9092], client_id: %[1]s, sasl: {mechanism: SCRAM-SHA-256, user: %[1]s, password: %[1]s}}\n", written))
		if err != nil {
			t.Errorf("%s: %v", written, err)
			continue
		}
		for key, got := range map[string]string{"source.user": cfg.Source.User, "source.password": cfg.Source.Password, "http.token": cfg.HTTP.Token,
			"checkpoint.name": cfg.Checkpoint.Name, "kafka.client_id": cfg.Kafka.ClientID, "kafka.sasl.user": cfg.Kafka.SASL.User, "kafka.sasl.password": cfg.Kafka.SASL.Password} {
			if got != written {
				t.Errorf("%s written %s loaded as %q", key, written, got)
			}
		}
	}

	if _, err := load(t, "kafka: {brokers: [0x1F]}\n"); err == nil || !strings.Contains(err.Error(), `kafka.brokers[0]: "0x1F" has no port`) {
		t.Errorf("a list's item written 0x1F: %v", err)
	}
	cfg, err := load(t, "source: {server_id: &id 012345}\ncheckpoint: {name: *id}\n")
	if err != nil || cfg.Checkpoint.Name != "012345" || cfg.Source.ServerID != 5349 {
		t.Errorf("an alias of 012345: checkpoint.name %q, source.server_id %d, %v; want \"012345\" and 5349 (YAML's octal, as before)", cfg.Checkpoint.Name, cfg.Source.ServerID, err)
	}
	cfg, err = load(t, "source: {password: , server_id: 0x10}\nhttp: {token: ~}\ncheckpoint: {name: null}\nha: true\nkafka: {max_in_flight: 1_000, max_message_bytes: 1e6}\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.Password != "" || cfg.HTTP.Token != "" || cfg.Checkpoint.Name != "default" {
		t.Errorf("empty values: password %q, token %q, checkpoint.name %q; want them left to their defaults", cfg.Source.Password, cfg.HTTP.Token, cfg.Checkpoint.Name)
	}
	if cfg.Source.ServerID != 16 || !cfg.HA || cfg.Kafka.MaxInFlight != 1000 || cfg.Kafka.MaxMessageBytes != 1000000 {
		t.Errorf("numbers and switches: server_id %d, ha %v, max_in_flight %d, max_message_bytes %d", cfg.Source.ServerID, cfg.HA, cfg.Kafka.MaxInFlight, cfg.Kafka.MaxMessageBytes)
	}

	t.Setenv("STOCKSYNC_SOURCE_PASSWORD", "012345")
	t.Setenv("STOCKSYNC_HTTP_TOKEN", "1.50")
	cfg, err = load(t, "source: {password: other}\n")
	if err != nil || cfg.Source.Password != "012345" || cfg.HTTP.Token != "1.50" {
		t.Errorf("from the environment: password %q, token %q, %v; want 012345 and 1.50", cfg.Source.Password, cfg.HTTP.Token, err)
	}
}

// TestTextKeyRefusesANumberItCannotTakeAsWritten: should a number or a switch reach a text
// key with its text lost, it is refused, saying to quote it, rather than written back in
// another form.
func TestTextKeyRefusesANumberItCannotTakeAsWritten(t *testing.T) {
	for _, value := range []any{31, 1.5, true, uint32(7)} {
		_, err := checkValue(reflect.ValueOf(value), reflect.ValueOf(""))
		if want := fmt.Sprintf("%v is not text: write it in quotes", value); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%T %v for a text key: %v, want %q", value, value, err, want)
		}
	}
	if got, err := checkValue(reflect.ValueOf("012345"), reflect.ValueOf("")); err != nil || got != "012345" {
		t.Errorf("text for a text key: %q, %v", got, err)
	}
}

// TestHTTPTokenNoClientCanSendIsRefused: an http.token with a line break or a space around
// it (a Kubernetes secret made --from-file ends with the file's newline), or a control
// character, cannot be sent in an Authorization header (net/http drops the spaces and
// refuses the rest), so every /v1 and /admin call would be 401. Load refuses it, naming
// where it came from and what is wrong, never the token itself.
func TestHTTPTokenNoClientCanSendIsRefused(t *testing.T) {
	cases := []struct {
		name, env, conf, want string
	}{
		{"trailing newline from a variable", "T0K3N\n", "", "STOCKSYNC_HTTP_TOKEN: http.token: ends with a newline"},
		{"trailing CRLF from a variable", "T0K3N\r\n", "", "STOCKSYNC_HTTP_TOKEN: http.token: ends with a newline"},
		{"leading space from a variable", " T0K3N", "", "STOCKSYNC_HTTP_TOKEN: http.token: begins with a space"},
		{"trailing tab in the file", "", "http: {token: \"T0K3N\\t\"}\n", "stocksync.yaml:1:15: http.token: ends with a tab"},
		{"block scalar's newline in the file", "", "http:\n  token: |\n    T0K3N\n", "stocksync.yaml:2:10: http.token: ends with a newline"},
		{"newline inside", "", "http: {token: \"T0K\\n3N\"}\n", "http.token: holds a newline"},
		{"control character", "", "http: {token: \"T0K\\x073N\"}\n", "http.token: holds a control character (0x07)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.env != "" {
				t.Setenv("STOCKSYNC_HTTP_TOKEN", c.env)
			}
			conf := c.conf
			if conf == "" {
				conf = "http: {addr: \"0.0.0.0:8080\"}\n"
			}
			cfg, err := load(t, conf)
			if err == nil {
				t.Fatalf("loaded, token %q", cfg.HTTP.Token)
			}
			if ps := err.(Problems); len(ps) != 1 || !strings.Contains(ps[0].String(), c.want) {
				t.Errorf("want one problem with %q, got:\n%v", c.want, err)
			}
			if strings.Contains(err.Error(), "T0K") {
				t.Errorf("the refusal shows the token: %v", err)
			}
			if cfg.HTTP.Token != "" {
				t.Errorf("a refused config still holds the token %q", cfg.HTTP.Token)
			}
		})
	}
	for _, token := range []string{"T0K3N", "a b", "Zm9v+/=-._~", "pässwort"} {
		if cfg, err := load(t, fmt.Sprintf("http: {token: %q}\n", token)); err != nil || cfg.HTTP.Token != token {
			t.Errorf("token %q a client can send: %q, %v", token, cfg.HTTP.Token, err)
		}
	}
}

// TestPlainSASLWithoutTLSIsWarnedOf: SASL PLAIN sends kafka.sasl.password as it is, so
// without kafka.tls anyone on the path to the brokers reads it. The config loads (a
// broker on a private network may be meant), with a warning naming both keys.
func TestPlainSASLWithoutTLSIsWarnedOf(t *testing.T) {
	cfg, err := load(t, "kafka:\n  brokers: [k:9092]\n  sasl: {mechanism: PLAIN, user: u, password: p}\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "stocksync.yaml:3:21: kafka.sasl.mechanism: PLAIN sends kafka.sasl.password to the brokers in clear text, and kafka.tls.mode is disabled"
	if len(cfg.Warnings) != 1 || !strings.HasPrefix(cfg.Warnings[0].String(), filepath.Dir(cfg.File)) || !strings.Contains(cfg.Warnings[0].String(), want) {
		t.Errorf("warnings %v, want one with %q", cfg.Warnings, want)
	}
	for _, conf := range []string{
		"kafka:\n  brokers: [k:9092]\n  sasl: {mechanism: PLAIN, user: u, password: p}\n  tls: {mode: required}\n",
		"kafka:\n  brokers: [k:9092]\n  sasl: {mechanism: SCRAM-SHA-512, user: u, password: p}\n",
	} {
		if cfg, err := load(t, conf); err != nil || len(cfg.Warnings) != 0 {
			t.Errorf("%s: warnings %v, %v; want none", conf, cfg.Warnings, err)
		}
	}
}
