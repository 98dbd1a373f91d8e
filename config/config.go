package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"

	"github.com/stocksync/stocksync/internal/yamlpos"
	"github.com/stocksync/stocksync/rules/rulefmt"
)

// Partitioners are the names kafka.partitioner takes (sinks maps each to its hash).
var Partitioners = []string{"murmur2", "crc32", "fnv1a"}

// Config is the whole daemon configuration. Keys are the `mapstructure` tags.
type Config struct {
	Source     Source     `mapstructure:"source"`
	Kafka      Kafka      `mapstructure:"kafka"`
	Checkpoint Checkpoint `mapstructure:"checkpoint"`
	// Rules is the rules file, relative to the config file; Load checks that it exists.
	Rules     string    `mapstructure:"rules"`
	HTTP      HTTP      `mapstructure:"http"`
	Log       Log       `mapstructure:"log"`
	Inventory Inventory `mapstructure:"inventory"`
	// Snapshot says when the matched tables are read whole before streaming:
	// never, initial (first start only) or when_needed (also when the checkpoint's binlog was purged).
	Snapshot string `mapstructure:"snapshot"`
	// SnapshotChunkSize is the rows read per primary-key chunk by snapshots and by a
	// resync's re-read, which holds the stream for one chunk's read at a time. A chunk
	// ends early at canal.DefaultChunkBytes of row values, whatever this says.
	SnapshotChunkSize int `mapstructure:"snapshot_chunk_size"`
	// HA makes the daemon a standby until it holds the leader lock on the source.
	HA bool `mapstructure:"ha"`

	// File is the path the configuration was read from ("" for defaults only).
	File string `mapstructure:"-"`
	// UnknownVariables says of each STOCKSYNC_* environment variable that sets no key (a
	// misspelt one, say) that it is ignored, with the variable meant when it is plain.
	UnknownVariables []string `mapstructure:"-"`
	// Warnings are what Load found that works but is unwise, each placed where its value
	// came from: the commands print them, as they print UnknownVariables.
	Warnings Problems `mapstructure:"-"`

	// given is every key (and section) the file or a STOCKSYNC_* variable sets, and
	// positions the file's node of each key it has: read by Sets and ProblemAt, for
	// checks made after Load (against the server, say) to place what they find as Load
	// places its own problems.
	given     map[string]bool
	positions map[string]yaml.Node
}

// Sets reports whether the file or a STOCKSYNC_* variable sets key or, for a section such
// as "inventory", the section or any key in it, rather than leaving it to Default: a
// check that holds a value against the operator (serve's of inventory.database) asks
// whether the operator gave it.
func (c Config) Sets(key string) bool {
	for k := range c.given {
		if k == key || strings.HasPrefix(k, key+".") {
			return true
		}
	}
	return false
}

// ProblemAt is msg about key's value, placed where that value came from, as Load places
// its problems: the variable that set it, else the file, at the key's line when the file
// has it.
func (c Config) ProblemAt(key, msg string) Problem {
	return at(Problem{Key: key, Msg: msg}, c.File, c.positions)
}

// Source is the MySQL or MariaDB server whose binlog is read.
type Source struct {
	Addr     string `mapstructure:"addr"`
	User     string `mapstructure:"user"`
	Password string `mapstructure:"password"`
	// ServerID is our replica id on the binlog connection; unique among the server's replicas.
	ServerID uint32 `mapstructure:"server_id"`
	// Flavor is mysql or mariadb; empty detects it from the server.
	Flavor string `mapstructure:"flavor"`
	// TLS encrypts every connection to the server: the binlog stream, the inventory and
	// the checks.
	TLS TLS `mapstructure:"tls"`
	// RenamedTableWait is how long a table an aggregate or transition rule reads may stay
	// renamed away, no table having its name, before the stream takes it as dropped (the
	// stream waits meanwhile, for a two-step cut-over's second statement).
	// Default: canal.DefaultRenamedAwayWait, which canal takes for 0 (config does not
	// import canal, which would bring the binlog client into every package that reads a
	// configuration).
	RenamedTableWait time.Duration `mapstructure:"renamed_table_wait"`
}

// Kafka is where messages go.
type Kafka struct {
	// Brokers empty starts the embedded development broker, which keeps nothing.
	Brokers []string `mapstructure:"brokers"`
	// DevBrokerAddr is where the embedded development broker listens.
	DevBrokerAddr string `mapstructure:"dev_broker_addr"`
	ClientID      string `mapstructure:"client_id"`
	// ExactlyOnce sends whole MySQL transactions in Kafka transactions (several to one),
	// each Kafka transaction with the checkpoint.
	ExactlyOnce bool `mapstructure:"exactly_once"`
	// TransactionalID identifies this daemon's transactional producer (exactly_once only).
	TransactionalID string `mapstructure:"transactional_id"`
	// CheckpointTopic holds checkpoints in exactly-once mode.
	CheckpointTopic string `mapstructure:"checkpoint_topic"`
	// MaxInFlight bounds the messages emitted but not yet acknowledged, and
	// MaxInFlightBytes their size: what waits for the brokers is held in memory, and a
	// count alone lets rows with large columns hold count × their size.
	MaxInFlight      int `mapstructure:"max_in_flight"`
	MaxInFlightBytes int `mapstructure:"max_in_flight_bytes"`
	// TransactionTimeout is how long the brokers let a Kafka transaction stay open
	// (exactly_once only): a snapshot commits in parts once its transaction has been open
	// for half of it, so it bounds a part, not the snapshot. At most the brokers'
	// transaction.max.timeout.ms.
	TransactionTimeout time.Duration `mapstructure:"transaction_timeout"`
	// Partitioner picks a keyed message's partition the way another client family does:
	// murmur2 (the Java client's default, and franz-go's), crc32 (librdkafka's
	// consistent) or fnv1a (sarama's default).
	Partitioner string `mapstructure:"partitioner"`
	// MaxMessageBytes is the largest message sent; a row whose message is larger stops
	// the daemon with an error naming it. Keep it under the topics' max.message.bytes.
	MaxMessageBytes int `mapstructure:"max_message_bytes"`
	// HeartbeatTopic, when set, receives a heartbeat every HeartbeatInterval while the
	// daemon streams, even when no change matches a rule (docs/topics.md, Heartbeats).
	HeartbeatTopic    string        `mapstructure:"heartbeat_topic"`
	HeartbeatInterval time.Duration `mapstructure:"heartbeat_interval"`
	// TLS and SASL are how the daemon reaches secured brokers (SASL_SSL: both).
	TLS  TLS  `mapstructure:"tls"`
	SASL SASL `mapstructure:"sasl"`
}

// Checkpoint is where the last acknowledged transaction boundary is kept.
type Checkpoint struct {
	// Table is schema.table on the source server; created if missing.
	Table string `mapstructure:"table"`
	// Interval is how often the acknowledged position is saved.
	Interval time.Duration `mapstructure:"interval"`
	// Name tells several pipelines on one checkpoint table apart.
	Name string `mapstructure:"name"`
}

// HTTP serves /metrics, /healthz, /readyz and the inventory API.
type HTTP struct {
	Addr string `mapstructure:"addr"`
	// Token, when set, is required as a bearer token on /v1 and /admin.
	Token string `mapstructure:"token"`
}

// Log sets the zap logger.
type Log struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// Inventory is the stock schema the daemon owns.
type Inventory struct {
	// Database is the schema on the source server that holds the stock tables.
	Database string `mapstructure:"database"`
	// HoldTTL is how long an unpaid deduction is held when a request names none.
	HoldTTL time.Duration `mapstructure:"hold_ttl"`
	// SweepInterval is how often expired holds are released.
	SweepInterval time.Duration `mapstructure:"sweep_interval"`
	// MaxConnections bounds the inventory's connections to the server. More callers than
	// connections queue in the daemon, which is cheaper than queueing on a hot row's lock
	// inside the server.
	MaxConnections int `mapstructure:"max_connections"`
}

// The shortest durations that make sense. Below them the daemon spins, since each tick of
// the checkpoint's and the sweeper's tickers commits a transaction (the checkpoint's after
// waiting for the broker), and a hold is released before a payment could confirm it.
const (
	minCheckpointInterval = 10 * time.Millisecond
	minSweepInterval      = 10 * time.Millisecond
	minHoldTTL            = time.Second
)

// minInFlightBytes is the least kafka.max_in_flight_bytes.
const minInFlightBytes = 1 << 20

// MaxHoldTTL is the longest a hold may be kept, whether inventory.hold_ttl or a
// deduction's own hold_ttl asks for it.
const MaxHoldTTL = 7 * 24 * time.Hour

// Default returns the configuration used for every key the file does not set.
func Default() Config {
	return Config{
		Source: Source{Addr: "127.0.0.1:3306", User: "stocksync", ServerID: 4201, RenamedTableWait: time.Minute},
		Kafka: Kafka{
			DevBrokerAddr:      "127.0.0.1:9092",
			ClientID:           "stocksync",
			TransactionalID:    "stocksync",
			CheckpointTopic:    "stocksync.checkpoints",
			MaxInFlight:        100000,
			MaxInFlightBytes:   256 << 20,
			TransactionTimeout: 15 * time.Minute,
			Partitioner:        "murmur2",
			MaxMessageBytes:    1000000,
			HeartbeatInterval:  10 * time.Second,
		},
		Checkpoint:        Checkpoint{Table: "stocksync.checkpoint", Interval: time.Second, Name: "default"},
		Rules:             "rules.yaml",
		HTTP:              HTTP{Addr: "127.0.0.1:8080"},
		Log:               Log{Level: "info", Format: "json"},
		Inventory:         Inventory{Database: "inventory", HoldTTL: 15 * time.Minute, SweepInterval: 5 * time.Second, MaxConnections: 32},
		Snapshot:          "never",
		SnapshotChunkSize: 10000,
	}
}

// yamlProblems places a file yaml.v3 cannot parse: at each tab in its indentation, which
// yaml.v3 reports without naming it, else at the line yaml.v3 names.
func yamlProblems(path string, data []byte, err error) Problems {
	if tabs := yamlpos.Tabs(data); len(tabs) > 0 {
		ps := make(Problems, len(tabs))
		for i, tab := range tabs {
			ps[i] = Problem{File: path, Line: tab.Line, Col: tab.Col, Key: "(file)", Msg: yamlpos.TabMsg}
		}
		return ps
	}
	at := yamlpos.ErrorLine(data, err)
	return Problems{{File: path, Line: at.Line, Col: at.Col, Key: "(file)", Msg: "not valid YAML: " + yamlpos.ErrorText(err)}}
}

// Problem is one thing wrong with a configuration.
type Problem struct {
	File string
	Line int // 0 when the key is not in the file (a default or an environment variable)
	Col  int
	// Env is the environment variable the key's value came from, e.g.
	// STOCKSYNC_CHECKPOINT_INTERVAL; it is named instead of the file.
	Env string
	Key string // dotted path, e.g. source.server_id
	Msg string
}

func (p Problem) String() string {
	where := p.File
	switch {
	case p.Env != "":
		where = p.Env
	case where == "":
		where = "config"
	case p.Line > 0:
		where = fmt.Sprintf("%s:%d:%d", where, p.Line, p.Col)
	}
	return fmt.Sprintf("%s: %s: %s", where, p.Key, p.Msg)
}

// Problems is every problem found in one file; it is the error Load returns.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// keys is the set of keys ps names.
func (ps Problems) keys() map[string]bool {
	keys := make(map[string]bool, len(ps))
	for _, p := range ps {
		keys[p.Key] = true
	}
	return keys
}

// Load reads path (may be "" for defaults and environment only), applies STOCKSYNC_*
// environment variables, resolves Rules and the certificate files relative to the file,
// and validates.
// Any problem returns a Problems error listing all of them, with a Config that holds
// only UnknownVariables: a misspelt variable is most worth naming when the file fails.
func Load(path string) (Config, error) { return loadFile(path, true) }

// LoadWithoutRules is Load for the commands that never read the config's rules file
// (every one but serve): for them a rules file that does not exist yet is no problem.
func LoadWithoutRules(path string) (Config, error) { return loadFile(path, false) }

func loadFile(path string, rulesNeeded bool) (Config, error) {
	cfg := Default()
	v := viper.New()
	v.SetEnvPrefix(envPrefix)
	v.SetEnvKeyReplacer(envKeys)
	v.AutomaticEnv()
	setDefaults(v, "", reflect.ValueOf(cfg))
	// Every key is registered now, so this is known before anything can fail.
	unknown := unknownVariables(v.AllKeys(), os.Environ())
	failed := Config{UnknownVariables: unknown}

	var positions map[string]yaml.Node
	var problems Problems
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return failed, fmt.Errorf("reading config: %w", err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return failed, yamlProblems(path, data, err)
		}
		positions = map[string]yaml.Node{}
		problems = append(problems, checkKeys(path, &doc, reflect.TypeOf(cfg), "", positions)...)
		if len(problems) > 0 && problems[0].Key == "(file)" {
			return failed, problems
		}
		// The document checkKeys marked, not the file's bytes: a text key's 012345 is
		// read as "012345".
		var settings map[string]any
		if err := doc.Decode(&settings); err != nil {
			return failed, Problems{{File: path, Key: "(file)", Msg: err.Error()}}
		}
		if err := v.MergeConfigMap(settings); err != nil {
			return failed, Problems{{File: path, Key: "(file)", Msg: err.Error()}}
		}
	}
	decodeErr := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.WeaklyTypedInput = true
		dc.Metadata = nil
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(checkValue, dc.DecodeHook)
	})
	// A key reported once is not reported again: checkKeys before decoding, decoding
	// before Validate.
	if decodeErr != nil {
		reported := problems.keys()
		for _, p := range decodeProblems(decodeErr) {
			if !reported[p.Key] {
				problems = append(problems, at(p, path, positions))
			}
		}
	}
	cfg.File = path
	cfg.UnknownVariables = unknown
	cfg.positions, cfg.given = positions, map[string]bool{}
	for key := range positions {
		cfg.given[key] = true
	}
	for _, key := range v.AllKeys() {
		if _, set := envVar(key); set {
			cfg.given[key] = true
		}
	}
	if path != "" {
		// The rules file and certificate files are relative to the config file.
		dir := filepath.Dir(path)
		resolve(dir, &cfg.Rules)
		cfg.Source.TLS.resolve(dir)
		cfg.Kafka.TLS.resolve(dir)
	}
	reported := problems.keys()
	for _, p := range cfg.Validate() {
		if !reported[p.Key] {
			problems = append(problems, at(p, path, positions))
		}
	}
	if rulesNeeded && path != "" && cfg.Rules != "" && !reported["rules"] {
		if err := readableFile(cfg.Rules); err != nil {
			problems = append(problems, at(Problem{Key: "rules", Msg: err.Error()}, path, positions))
		}
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
		return failed, problems
	}
	for _, w := range cfg.warnings() {
		cfg.Warnings = append(cfg.Warnings, at(w, path, positions))
	}
	return cfg, nil
}

// resolve makes each relative path in paths relative to dir, the config file's folder.
func resolve(dir string, paths ...*string) {
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// readableFile says what keeps path from being read as a file; nil when nothing does.
func readableFile(path string) error {
	f, err := os.Open(path)
	var pathErr *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s does not exist", path)
	case errors.As(err, &pathErr):
		return fmt.Errorf("%s cannot be read: %w", path, pathErr.Err)
	case err != nil:
		return err
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.IsDir() {
		return fmt.Errorf("%s is a folder, not a file", path)
	}
	return nil
}

// at places p where its key's value came from: the environment variable that set it,
// else file, at the key's position when the file has the key.
func at(p Problem, file string, positions map[string]yaml.Node) Problem {
	p.File = file
	if name, set := envVar(p.Key); set {
		p.Env = name
	} else if n, ok := positions[p.Key]; ok {
		p.Line, p.Col = n.Line, n.Column
	}
	return p
}

// A key's environment variable is envPrefix, "_" and the key in capitals with envKeys
// applied: source.server_id is STOCKSYNC_SOURCE_SERVER_ID.
const envPrefix = "STOCKSYNC"

var envKeys = strings.NewReplacer(".", "_")

// envVar is the environment variable of key (of its list, for a list's item) and whether
// it sets the key (viper ignores a variable set to "").
func envVar(key string) (name string, set bool) {
	key, _, _ = strings.Cut(key, "[")
	name = strings.ToUpper(envPrefix + "_" + envKeys.Replace(key))
	return name, os.Getenv(name) != ""
}

// Validate checks values that decode but make no sense. Each problem names its key. The
// certificates TLS names are read; that the rules file exists is Load's to check (not
// LoadWithoutRules').
func (c Config) Validate() Problems {
	var ps Problems
	bad := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Source.Addr == "" {
		bad("source.addr", "must be host:port")
	} else if !strings.Contains(c.Source.Addr, ":") && !strings.HasPrefix(c.Source.Addr, "/") {
		bad("source.addr", "%q has no port; write host:port", c.Source.Addr)
	}
	if c.Source.User == "" {
		bad("source.user", "must not be empty")
	}
	if c.Source.ServerID == 0 {
		bad("source.server_id", "must be a non-zero replica id unique among the server's replicas")
	}
	switch c.Source.Flavor {
	case "", "mysql", "mariadb":
	default:
		bad("source.flavor", "%q is not one of mysql, mariadb or empty (detect)", c.Source.Flavor)
	}
	if c.Source.RenamedTableWait < time.Second || c.Source.RenamedTableWait > 24*time.Hour {
		bad("source.renamed_table_wait", "must be from 1s to 24h (how long the stream waits for a table to take the name of one an aggregate or transition rule reads, renamed away), got %s", c.Source.RenamedTableWait)
	}
	for i, b := range c.Kafka.Brokers {
		if problem := brokerAddrProblem(b); problem != "" {
			bad(fmt.Sprintf("kafka.brokers[%d]", i), "%q %s; write host:port", b, problem)
		}
	}
	if c.Kafka.MaxInFlight <= 0 {
		bad("kafka.max_in_flight", "must be positive")
	}
	if c.Kafka.MaxInFlightBytes < minInFlightBytes {
		// A message larger than the budget still goes, alone; a budget this small would
		// send every message alone, one round trip to the brokers each.
		bad("kafka.max_in_flight_bytes", "must be at least %d (1 MiB), got %d", minInFlightBytes, c.Kafka.MaxInFlightBytes)
	}
	if c.Kafka.TransactionTimeout < 10*time.Second {
		bad("kafka.transaction_timeout", "must be at least 10s, got %s", c.Kafka.TransactionTimeout)
	} else if c.Kafka.ExactlyOnce && c.Kafka.TransactionTimeout < 2*c.Checkpoint.Interval {
		// Only exactly-once opens Kafka transactions: each stays open up to checkpoint.interval.
		bad("kafka.transaction_timeout", "must be at least twice checkpoint.interval (%s) with kafka.exactly_once, since each Kafka transaction stays open that long; "+
			"raise it or lower checkpoint.interval, got %s", c.Checkpoint.Interval, c.Kafka.TransactionTimeout)
	}
	ps = append(ps, c.Source.TLS.problems("source.tls")...)
	ps = append(ps, c.Kafka.TLS.problems("kafka.tls")...)
	ps = append(ps, c.Kafka.SASL.problems("kafka.sasl")...)
	if len(c.Kafka.Brokers) == 0 && (c.Kafka.SASL.Mechanism != "" || c.Kafka.TLS.Enabled()) {
		// The embedded development broker serve starts without kafka.brokers speaks
		// neither: its refusal would read as a wrong password or certificate.
		key := "kafka.sasl.mechanism"
		if c.Kafka.TLS.Enabled() {
			key = "kafka.tls.mode"
		}
		bad(key, "is set, but kafka.brokers is empty, which runs the embedded development broker without TLS or SASL: "+
			"name the brokers, or leave kafka.tls and kafka.sasl out (stocksync devbroker --tls-cert/--sasl-mechanism runs one that speaks them)")
	}
	if c.Kafka.MaxMessageBytes < 1024 || c.Kafka.MaxMessageBytes > 100000000 {
		bad("kafka.max_message_bytes", "must be between 1024 and 100000000, got %d", c.Kafka.MaxMessageBytes)
	}
	if !slices.Contains(Partitioners, c.Kafka.Partitioner) {
		bad("kafka.partitioner", "%q is not one of %s", c.Kafka.Partitioner, strings.Join(Partitioners, ", "))
	}
	if c.Kafka.HeartbeatTopic != "" {
		if err := rulefmt.CheckTopicText(c.Kafka.HeartbeatTopic); err != nil {
			bad("kafka.heartbeat_topic", "%q: %v", c.Kafka.HeartbeatTopic, err)
		} else if err := rulefmt.CheckTopicShape(c.Kafka.HeartbeatTopic); err != nil {
			bad("kafka.heartbeat_topic", "%v", err)
		} else if c.Kafka.ExactlyOnce && c.Kafka.HeartbeatTopic == c.Kafka.CheckpointTopic {
			bad("kafka.heartbeat_topic", "%q is kafka.checkpoint_topic, which holds the checkpoints: name a topic of its own", c.Kafka.HeartbeatTopic)
		}
	}
	if c.Kafka.HeartbeatInterval < time.Second || c.Kafka.HeartbeatInterval > time.Hour {
		bad("kafka.heartbeat_interval", "must be from 1s to 1h (the daemon sends a heartbeat at most once a second, when the source is quiet), got %s", c.Kafka.HeartbeatInterval)
	}
	if c.Kafka.ExactlyOnce {
		if c.Kafka.TransactionalID == "" {
			bad("kafka.transactional_id", "exactly_once needs a transactional id")
		}
		if c.Kafka.CheckpointTopic == "" {
			bad("kafka.checkpoint_topic", "exactly_once needs a checkpoint topic")
		}
	}
	if parts := strings.Split(c.Checkpoint.Table, "."); len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		bad("checkpoint.table", "%q must be schema.table", c.Checkpoint.Table)
	}
	if c.Checkpoint.Interval < minCheckpointInterval {
		bad("checkpoint.interval", "must be at least %s (each interval waits for the broker and saves the checkpoint), got %s", minCheckpointInterval, c.Checkpoint.Interval)
	}
	if c.Checkpoint.Name == "" {
		bad("checkpoint.name", "must not be empty")
	}
	if n := len(c.Checkpoint.Name); n > maxCheckpointName {
		bad("checkpoint.name", "must be at most %d bytes (it names rows of checkpoint.table), got %d", maxCheckpointName, n)
	}
	if c.Rules == "" {
		bad("rules", "must name the rules file")
	}
	if c.HTTP.Addr != "" && !strings.Contains(c.HTTP.Addr, ":") {
		bad("http.addr", "%q has no port; write host:port", c.HTTP.Addr)
	}
	if problem := tokenProblem(c.HTTP.Token); problem != "" {
		bad("http.token", "%s", problem)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		bad("log.format", "%q is not one of json, console", c.Log.Format)
	}
	if c.Inventory.Database == "" {
		bad("inventory.database", "must not be empty")
	}
	if c.Inventory.HoldTTL < minHoldTTL || c.Inventory.HoldTTL > MaxHoldTTL {
		bad("inventory.hold_ttl", "must be from %s to %s (an unpaid deduction is released this long after it is made), got %s", minHoldTTL, MaxHoldTTL, c.Inventory.HoldTTL)
	}
	if c.Inventory.MaxConnections < 1 || c.Inventory.MaxConnections > 4096 {
		bad("inventory.max_connections", "must be between 1 and 4096")
	}
	if c.Inventory.SweepInterval < minSweepInterval {
		bad("inventory.sweep_interval", "must be at least %s (each sweep is a transaction on the server), got %s", minSweepInterval, c.Inventory.SweepInterval)
	}
	switch c.Snapshot {
	case "never", "initial", "when_needed":
	default:
		bad("snapshot", "%q is not one of never, initial, when_needed", c.Snapshot)
	}
	if c.SnapshotChunkSize < 1 || c.SnapshotChunkSize > 1000000 {
		bad("snapshot_chunk_size", "must be between 1 and 1000000, got %d", c.SnapshotChunkSize)
	}
	return ps
}

// tokenProblem says why no HTTP client can present token as "Authorization: Bearer
// <token>", "" when one can. net/http trims the spaces and tabs around a header's value
// and refuses a control character (a line break among them) anywhere in it, so such a
// token would make every /v1 and /admin call 401, the CLI's included. The token itself is
// never shown: it is a secret.
func tokenProblem(token string) string {
	const unsendable = "which no HTTP client can present in an Authorization header (HTTP drops the spaces around a header's value " +
		"and refuses control characters in it), so every /v1 and /admin call would be refused 401"
	isCtl := func(b byte) bool { return b < ' ' && b != '\t' || b == 0x7f }
	name := func(b byte) string {
		switch b {
		case '\n', '\r':
			return "a newline"
		case ' ':
			return "a space"
		case '\t':
			return "a tab"
		}
		return fmt.Sprintf("a control character (0x%02x)", b)
	}
	if token == "" {
		return ""
	}
	first, last := token[0], token[len(token)-1]
	switch {
	case last == '\n' || last == '\r':
		return "ends with a newline (a secret made from a file keeps the file's last line break), " + unsendable + ": remove it"
	case last == ' ' || last == '\t' || isCtl(last):
		return "ends with " + name(last) + ", " + unsendable + ": remove it"
	case first == ' ' || first == '\t' || isCtl(first):
		return "begins with " + name(first) + ", " + unsendable + ": remove it"
	}
	for i := range len(token) {
		if isCtl(token[i]) {
			return fmt.Sprintf("holds %s at byte %d, %s: use a token of printable characters", name(token[i]), i+1, unsendable)
		}
	}
	return ""
}

// warnings checks values that work but are unwise, as Validate checks those that do not
// work; each names its key.
func (c Config) warnings() Problems {
	var ws Problems
	if c.Kafka.SASL.Mechanism == SASLPlain && !c.Kafka.TLS.Enabled() && len(c.Kafka.Brokers) > 0 {
		ws = append(ws, Problem{Key: "kafka.sasl.mechanism", Msg: "PLAIN sends kafka.sasl.password to the brokers in clear text, and kafka.tls.mode is disabled: " +
			"anyone on the network between them reads it; set kafka.tls.mode (SASL_SSL), or use SCRAM-SHA-256 or SCRAM-SHA-512, which never send it"})
	}
	return ws
}

// maxCheckpointName is the longest checkpoint.name: checkpoint.table's name column holds
// 64 bytes, and exactly-once's row adds "/exactly-once" (pipeline's MirrorName).
const maxCheckpointName = 64 - len("/exactly-once")

// projectVariables are STOCKSYNC_* variables of the project's scripts and tests, not keys.
var projectVariables = []string{"STOCKSYNC_TEST_", "STOCKSYNC_MARIADB_", "STOCKSYNC_DEMO_", "STOCKSYNC_BENCH_",
	"STOCKSYNC_RUN_DIR", "STOCKSYNC_DURABLE"}

// unknownVariables lists the variables of environ named STOCKSYNC_* that set none of keys,
// each with what it is taken for: "STOCKSYNC_SOURCE_SERVERID is no key's variable and is
// ignored (STOCKSYNC_SOURCE_SERVER_ID?)".
func unknownVariables(keys []string, environ []string) []string {
	known := map[string]bool{}
	plain := map[string]string{} // without underscores: SOURCESERVERID → STOCKSYNC_SOURCE_SERVER_ID
	for _, k := range keys {
		name, _ := envVar(k)
		known[name] = true
		plain[strings.ReplaceAll(name, "_", "")] = name
	}
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix+"_") || known[name] ||
			slices.ContainsFunc(projectVariables, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		msg := name + " is no key's variable and is ignored"
		if meant, ok := plain[strings.ReplaceAll(strings.ToUpper(name), "_", "")]; ok {
			msg += " (" + meant + "?)"
		}
		unknown = append(unknown, msg)
	}
	sort.Strings(unknown)
	return unknown
}

// setDefaults registers every leaf key with viper so that environment variables reach it.
func setDefaults(v *viper.Viper, prefix string, val reflect.Value) {
	t := val.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		if f.Type.Kind() == reflect.Struct {
			setDefaults(v, key+".", val.Field(i))
			continue
		}
		v.SetDefault(key, val.Field(i).Interface())
	}
}

// checkKeys walks the YAML document against the Config type, reporting unknown keys,
// recording each known key's node for line numbers, and marking the value of each key
// that takes text (a list's items too) to be read as the text it is written with (asText).
func checkKeys(file string, doc *yaml.Node, t reflect.Type, prefix string, positions map[string]yaml.Node) Problems {
	node := doc
	if node.Kind == yaml.DocumentNode {
		if len(node.Content) == 0 {
			return nil
		}
		node = node.Content[0]
	}
	if node.Kind != yaml.MappingNode {
		if prefix == "" && node.Tag == "!!null" {
			return nil
		}
		key := strings.TrimSuffix(prefix, ".")
		if key == "" {
			key = "(file)"
		}
		return Problems{{File: file, Line: node.Line, Col: node.Column, Key: key, Msg: "must be a mapping"}}
	}
	fields := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		if tag := t.Field(i).Tag.Get("mapstructure"); tag != "" && tag != "-" {
			fields[tag] = t.Field(i)
		}
	}
	var ps Problems
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, val := node.Content[i], node.Content[i+1]
		key := prefix + k.Value
		f, ok := fields[k.Value]
		if !ok {
			ps = append(ps, Problem{File: file, Line: k.Line, Col: k.Column, Key: key, Msg: "unknown key" + suggest(k.Value, fields)})
			continue
		}
		positions[key] = *val
		switch {
		case f.Type.Kind() == reflect.Struct:
			ps = append(ps, checkKeys(file, val, f.Type, key+".", positions)...)
		case f.Type.Kind() == reflect.String:
			asText(val)
		case f.Type.Kind() == reflect.Slice:
			for j, item := range val.Content {
				positions[fmt.Sprintf("%s[%d]", key, j)] = *item
				if f.Type.Elem().Kind() == reflect.String {
					asText(item)
				}
			}
		}
	}
	return ps
}

// asText makes a plain scalar that YAML would read as a number, a switch or a date
// (012345, 0x1F, 1_000_000, 1.50, true, 2001-12-14) read as the text written, for a key
// that takes text: read as a number, it reached the key written back in another form
// (012345 as "5349", 1.50 as "1.5"), a password or token nobody wrote. An alias of such a
// scalar is replaced by a copy of it, marked so, at the alias's place: the anchor itself
// may be another key's number. Null (nothing, ~) stays null, which leaves the key at its
// default.
func asText(n *yaml.Node) {
	if n.Kind == yaml.AliasNode && n.Alias != nil && n.Alias.Kind == yaml.ScalarNode {
		line, col := n.Line, n.Column
		*n = *n.Alias
		n.Anchor, n.Line, n.Column = "", line, col
	}
	if n.Kind != yaml.ScalarNode {
		return
	}
	switch n.ShortTag() {
	case "!!int", "!!float", "!!bool", "!!timestamp":
		n.Tag = "!!str"
	}
}

func suggest(name string, fields map[string]reflect.StructField) string {
	known := make([]string, 0, len(fields))
	for k := range fields {
		known = append(known, k)
	}
	sort.Strings(known)
	return " (known: " + strings.Join(known, ", ") + ")"
}

// brokerAddrProblem says what is wrong with a broker address, "" when it is host:port. A
// list item indented under the one before it reads as one value, "a:9092 - b:9092".
func brokerAddrProblem(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	switch {
	case !strings.Contains(addr, ":"):
		return "has no port"
	case err != nil:
		return "is not host:port"
	case host == "" || strings.ContainsAny(host, " \t"):
		return "has no host name, or one with spaces"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "has no port number from 1 to 65535"
	}
	return ""
}
