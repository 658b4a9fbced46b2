package daemon

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"go.yaml.in/yaml/v3"

	"github.com/sagaflow/sagaflow/engine"
)

// A setting of `sagaflow serve` comes from, in this order: its flag, its
// SAGAFLOW_* environment variable, the config file (--config or
// SAGAFLOW_CONFIG; YAML whose keys are the flag names), the default.

// configFlag names the config file flag.
const configFlag = "config"

// envOf is the environment variable of setting name: SAGAFLOW_ and the
// name in upper case with '_' for '-'.
func envOf(name string) string {
	return "SAGAFLOW_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// AdminTokenEnv holds the admin API's bearer token itself (the
// alternative to --admin-token-file).
const AdminTokenEnv = "SAGAFLOW_ADMIN_TOKEN"

// engineFlags are the settings of `sagaflow serve`. Every one but --config
// may be set in the config file.
func engineFlags() []cli.Flag {
	env := func(name string) cli.ValueSourceChain { return cli.EnvVars(envOf(name)) }
	return []cli.Flag{
		&cli.StringFlag{Name: configFlag, Usage: "YAML config file; its keys are these flags' names (flags and SAGAFLOW_* variables win over it)", Sources: env(configFlag), TakesFile: true},
		&cli.StringFlag{Name: "name", Value: "sagaflow", Usage: "engine name: its saga queue and message source", Sources: env("name")},
		&cli.StringFlag{Name: "data-dir", Value: "sagaflow-data", Usage: "directory of the embedded store (used when --mongo-uri is empty)", Sources: env("data-dir"), TakesFile: true},
		&cli.StringFlag{Name: "mongo-uri", Usage: "MongoDB URI (mongodb:// or mongodb+srv://; tls=true for TLS); the database is the URI's path, default sagaflow", Sources: env("mongo-uri")},
		&cli.StringFlag{Name: "amqp-url", Usage: "RabbitMQ URL (amqp:// or amqps:// for TLS); empty: the in-process transport", Sources: env("amqp-url")},
		&cli.StringFlag{Name: "admin-addr", Value: "127.0.0.1:8080", Usage: `admin API listen address ("off" disables it); beyond loopback it needs an admin token`, Sources: env("admin-addr")},
		&cli.StringFlag{Name: "admin-token-file", Usage: "file holding the admin API's bearer token (or put the token in " + AdminTokenEnv + "); required when --admin-addr is not loopback", Sources: env("admin-token-file"), TakesFile: true},
		&cli.IntFlag{Name: "partitions", Value: 16, Usage: "partitions per queue (1-4096; the same on every engine node)", Sources: env("partitions")},
		&cli.IntFlag{Name: "prefetch", Value: 64, Usage: "unsettled deliveries per partition (1-65535)", Sources: env("prefetch")},
		&cli.DurationFlag{Name: "idle-timeout", Value: 2 * time.Minute, Usage: "passivate an entity's actor after this long idle (negative: never)", Sources: env("idle-timeout")},
		&cli.DurationFlag{Name: "shutdown-timeout", Value: 10 * time.Second, Usage: "on SIGINT/SIGTERM, how long in-flight work may take to finish (a second signal exits at once)", Sources: env("shutdown-timeout")},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", Sources: env("log-level")},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", Sources: env("log-format")},
		&cli.IntFlag{Name: "circuit-failures", Value: defaultCircuitFailures, Usage: "technical failures or timeouts in a row that open the circuit breaker of a remote participant service (1-1000000; -1: no breakers)", Sources: env("circuit-failures")},
		&cli.DurationFlag{Name: "circuit-open-for", Value: defaultCircuitOpenFor, Usage: "how long an open circuit holds the sagas' commands back, without using up attempts, before it lets a probe through (1ms-24h)", Sources: env("circuit-open-for")},
		&cli.IntFlag{Name: "circuit-probes", Value: defaultCircuitProbes, Usage: "commands a half-open circuit lets through, all of which must be answered to close it (1-1000)", Sources: env("circuit-probes")},
		&cli.StringFlag{Name: "pprof-addr", Usage: "serve net/http/pprof on this loopback address (off when empty)", Sources: env("pprof-addr")},
	}
}

// The circuit breaker defaults, the engine's (engine.CircuitSettings).
const (
	defaultCircuitFailures = 10
	defaultCircuitOpenFor  = 30 * time.Second
	defaultCircuitProbes   = 1
)

// serveSettings are the validated settings of `sagaflow serve`.
type serveSettings struct {
	opts      engine.Options
	mongoURI  string
	amqpURL   string
	pprofAddr string
}

// applyConfigFile sets, from the config file named by --config, every
// setting that neither a flag nor an environment variable set. Unknown
// keys are errors.
func applyConfigFile(cmd *cli.Command) error {
	path := cmd.String(configFlag)
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var values map[string]any
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".yaml", ".yml", "":
		if err := yaml.Unmarshal(data, &values); err != nil {
			return fmt.Errorf("--config %s: not valid YAML: %w", path, err)
		}
	default:
		return fmt.Errorf("--config %s: %q files are not supported; write YAML (.yaml or .yml)", path, ext)
	}
	var known []string
	for _, f := range cmd.Flags {
		if n := f.Names()[0]; n != configFlag && n != "help" {
			known = append(known, n)
		}
	}
	var errs []error
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := values[k]
		if !slices.Contains(known, k) {
			errs = append(errs, fmt.Errorf("unknown setting %q (known: %s)", k, strings.Join(known, ", ")))
			continue
		}
		if cmd.IsSet(k) {
			continue // a flag or environment variable wins
		}
		s, ok := scalar(v)
		if !ok {
			errs = append(errs, fmt.Errorf("setting %q: want a single value, got %T", k, v))
			continue
		}
		if err := cmd.Set(k, s); err != nil {
			errs = append(errs, fmt.Errorf("setting %q = %q: %w", k, s, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	return nil
}

// scalar renders a YAML scalar as the flag text it stands for.
func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case int, int64, uint64, float64, bool:
		return fmt.Sprint(x), true
	case nil:
		return "", true
	}
	return "", false
}

// settingsFrom validates the settings and builds the engine options; every
// error names the setting as --flag and SAGAFLOW_* variable.
func settingsFrom(cmd *cli.Command, stderr io.Writer) (serveSettings, error) {
	var errs []error
	bad := func(name string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s (%s): %s", name, envOf(name), fmt.Sprintf(format, args...)))
	}
	logger, err := newLogger(stderr, cmd.String("log-level"), cmd.String("log-format"))
	if err != nil {
		errs = append(errs, err)
	}
	s := serveSettings{
		mongoURI:  cmd.String("mongo-uri"),
		amqpURL:   cmd.String("amqp-url"),
		pprofAddr: cmd.String("pprof-addr"),
		opts: engine.Options{
			Name:            cmd.String("name"),
			DataDir:         cmd.String("data-dir"),
			AdminAddr:       cmd.String("admin-addr"),
			Partitions:      int(cmd.Int("partitions")),
			Prefetch:        int(cmd.Int("prefetch")),
			IdleTimeout:     cmd.Duration("idle-timeout"),
			ShutdownTimeout: cmd.Duration("shutdown-timeout"),
			Circuit: engine.CircuitSettings{
				Failures: int(cmd.Int("circuit-failures")),
				OpenFor:  cmd.Duration("circuit-open-for"),
				Probes:   int(cmd.Int("circuit-probes")),
			},
			Logger: logger,
		},
	}
	o := &s.opts
	if f := o.Circuit.Failures; f != -1 && (f < 1 || f > 1_000_000) {
		bad("circuit-failures", "%d: want 1 to 1000000, or -1 for no circuit breakers", f)
	}
	if d := o.Circuit.OpenFor; d < time.Millisecond || d > 24*time.Hour {
		bad("circuit-open-for", "%v: want a duration from 1ms to 24h such as 30s", d)
	}
	if p := o.Circuit.Probes; p < 1 || p > 1000 {
		bad("circuit-probes", "%d: want 1 to 1000", p)
	}
	if o.Name == "" || strings.ContainsAny(o.Name, " /#*") {
		bad("name", "%q: want a non-empty name without spaces, '/', '#' or '*'", o.Name)
	}
	if s.mongoURI == "" && o.DataDir == "" {
		bad("data-dir", "empty: give a directory, or --mongo-uri")
	}
	if s.mongoURI != "" && cmd.IsSet("data-dir") && logger != nil {
		// Either may come from the environment: say which store is used,
		// so a data directory nobody writes to does not go unnoticed.
		logger.Warn("both a data directory and a MongoDB URI are set: the engine uses MongoDB and leaves the data directory unused",
			"data_dir", o.DataDir, "mongo_uri", redact(s.mongoURI))
	}
	if p := o.Partitions; p < 1 || p > 4096 {
		bad("partitions", "partitions %d: want 1 to 4096", p)
	}
	if p := o.Prefetch; p < 1 || p > 65535 {
		bad("prefetch", "%d: want 1 to 65535", p)
	}
	if o.ShutdownTimeout <= 0 {
		bad("shutdown-timeout", "%v: want a positive duration such as 30s", o.ShutdownTimeout)
	}
	if u := s.mongoURI; u != "" && !strings.HasPrefix(u, "mongodb://") && !strings.HasPrefix(u, "mongodb+srv://") {
		bad("mongo-uri", "%q: want a mongodb:// or mongodb+srv:// URI", redact(u))
	}
	if u := s.amqpURL; u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "amqp" && pu.Scheme != "amqps") || pu.Host == "" {
			bad("amqp-url", "%q: want amqp://user:pass@host:port/vhost (amqps:// for TLS)", redact(u))
		}
	}
	token, err := adminToken(cmd)
	if err != nil {
		errs = append(errs, err)
	}
	o.AdminToken = token
	if o.AdminAddr != engine.AdminOff {
		if !validAddr(o.AdminAddr) {
			bad("admin-addr", "%q: want host:port, or %q", o.AdminAddr, engine.AdminOff)
		} else if token == "" && !loopback(o.AdminAddr) {
			bad("admin-addr", "%q listens beyond loopback without a token: give --admin-token-file or %s, or bind 127.0.0.1", o.AdminAddr, AdminTokenEnv)
		}
	}
	if a := s.pprofAddr; a != "" {
		if !validAddr(a) || !loopback(a) {
			bad("pprof-addr", "%q: want a loopback host:port such as 127.0.0.1:6060 (pprof has no authentication)", a)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return serveSettings{}, fmt.Errorf("invalid settings:\n%w", err)
	}
	return s, nil
}

// adminToken reads the token from --admin-token-file, else from
// SAGAFLOW_ADMIN_TOKEN.
func adminToken(cmd *cli.Command) (string, error) {
	if path := cmd.String("admin-token-file"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("--admin-token-file (%s): %w", envOf("admin-token-file"), err)
		}
		token := strings.TrimSpace(string(data))
		if len(token) < 16 {
			return "", fmt.Errorf("--admin-token-file (%s): %s holds a token of %d characters; use at least 16", envOf("admin-token-file"), path, len(token))
		}
		return token, nil
	}
	token := strings.TrimSpace(os.Getenv(AdminTokenEnv))
	if token != "" && len(token) < 16 {
		return "", fmt.Errorf("%s: a token of %d characters; use at least 16", AdminTokenEnv, len(token))
	}
	return token, nil
}

func validAddr(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port != ""
}

func loopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redact hides a URL's password for error messages.
func redact(u string) string {
	if pu, err := url.Parse(u); err == nil && pu.User != nil {
		return pu.Redacted()
	}
	return u
}
