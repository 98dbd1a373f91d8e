package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, yaml string) (Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stocksync.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

func TestLoadReportsEveryProblemWithFileLineAndKey(t *testing.T) {
	cases := []struct {
		name, conf string
		want       []string
	}{
		{"unknown top-level key", "sorce: {}\n", []string{"stocksync.yaml:1:1: sorce: unknown key"}},
		{"unknown nested key", "source:\n  adr: x:1\n", []string{"stocksync.yaml:2:3: source.adr: unknown key (known: addr,"}},
		{"wrong type", "source:\n  server_id: abc\n", []string{"stocksync.yaml:2:14: source.server_id: wrong type"}},
		{"no port", "source: {addr: db.local}\n", []string{`source.addr: "db.local" has no port`}},
		{"zero server id", "source: {server_id: 0}\n", []string{"source.server_id: must be a non-zero replica id"}},
		{"bad flavor", "source: {flavor: postgres}\n", []string{`source.flavor: "postgres" is not one of mysql, mariadb`}},
		{"broker without port", "kafka: {brokers: [a:1, b]}\n", []string{`stocksync.yaml:1:24: kafka.brokers[1]: "b" has no port`}},
		{"checkpoint table", "checkpoint: {table: nodot}\n", []string{`checkpoint.table: "nodot" must be schema.table`}},
		{"bad duration", "checkpoint: {interval: soon}\n", []string{"checkpoint.interval: wrong type"}},
		{"no inventory connections", "inventory: {max_connections: 0}\n", []string{"inventory.max_connections: must be between 1 and 4096"}},
		{"bad snapshot", "snapshot: sometimes\n", []string{`snapshot: "sometimes" is not one of never, initial, when_needed`}},
		{"bad partitioner", "kafka: {partitioner: random}\n", []string{`kafka.partitioner: "random" is not one of murmur2, crc32, fnv1a`}},
		{"exactly once without id", "kafka: {exactly_once: true, transactional_id: \"\"}\n", []string{"kafka.transactional_id: exactly_once needs a transactional id"}},
		{"several at once", "source: {addr: x, bogus: 1}\nlog: {level: loud, format: xml}\n",
			[]string{"source.addr", "source.bogus: unknown key", "log.level", "log.format"}},
		{"not a mapping", "- a\n- b\n", []string{"(file): must be a mapping"}},
		{"not yaml", "source: [\n", []string{"not valid YAML"}},
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

func TestDefaultsEnvironmentAndRelativeRules(t *testing.T) {
	t.Setenv("STOCKSYNC_SOURCE_PASSWORD", "from-env")
	t.Setenv("STOCKSYNC_CHECKPOINT_INTERVAL", "250ms")
	cfg, err := load(t, "source: {addr: db:3306}\nrules: r/rules.yaml\n")
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

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load("../stocksync.example.yaml")
	if err != nil {
		t.Fatalf("the example config in the repository does not load:\n%v", err)
	}
	if cfg.Rules != filepath.Join("..", "examples", "rules.yaml") {
		t.Errorf("rules = %q", cfg.Rules)
	}
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
