package daemon

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v3"
)

// settingsOf runs the serve flags over args (with the environment as set
// by the test) and returns the validated settings or the error.
func settingsOf(t *testing.T, args ...string) (serveSettings, error) {
	t.Helper()
	var got serveSettings
	cmd := &cli.Command{
		Name: "serve", Flags: engineFlags(), Writer: io.Discard, ErrWriter: io.Discard,
		Action: func(_ context.Context, cmd *cli.Command) error {
			if err := applyConfigFile(cmd); err != nil {
				return err
			}
			s, err := settingsFrom(cmd, io.Discard)
			got = s
			return err
		},
	}
	err := cmd.Run(context.Background(), append([]string{"serve"}, args...))
	return got, err
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSettingsPrecedenceFlagEnvFileDefault(t *testing.T) {
	conf := writeFile(t, "sagaflow.yaml", `
name: from-file
partitions: 3
prefetch: 7
shutdown-timeout: 45s
idle-timeout: 1m
`)
	t.Setenv("SAGAFLOW_CONFIG", conf)
	t.Setenv("SAGAFLOW_PREFETCH", "9")
	t.Setenv("SAGAFLOW_NAME", "from-env")
	s, err := settingsOf(t, "--name", "from-flag", "--idle-timeout", "5m")
	if err != nil {
		t.Fatal(err)
	}
	o := s.opts
	for _, c := range []struct {
		setting   string
		got, want any
	}{
		{"name (flag over env and file)", o.Name, "from-flag"},
		{"prefetch (env over file)", o.Prefetch, 9},
		{"partitions (file over default)", o.Partitions, 3},
		{"shutdown-timeout (file)", o.ShutdownTimeout, 45 * time.Second},
		{"idle-timeout (flag over file)", o.IdleTimeout, 5 * time.Minute},
		{"admin-addr (default)", o.AdminAddr, "127.0.0.1:8080"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.setting, c.got, c.want)
		}
	}
}

func TestAdminTokenFromFileOrEnv(t *testing.T) {
	tokenFile := writeFile(t, "token", "  file-token-0123456789\n")
	s, err := settingsOf(t, "--admin-addr", "0.0.0.0:0", "--admin-token-file", tokenFile)
	if err != nil || s.opts.AdminToken != "file-token-0123456789" {
		t.Errorf("token from file: %q, %v", s.opts.AdminToken, err)
	}
	t.Setenv(AdminTokenEnv, "env-token-0123456789")
	s, err = settingsOf(t, "--admin-addr", "0.0.0.0:0")
	if err != nil || s.opts.AdminToken != "env-token-0123456789" {
		t.Errorf("token from env: %q, %v", s.opts.AdminToken, err)
	}
}

func TestBadSettingsAreNamed(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		file    string // config file contents ("" = none)
		mention []string
	}{
		{"partitions", []string{"--partitions", "0"}, nil, "", []string{"--partitions", "SAGAFLOW_PARTITIONS", "partitions 0"}},
		{"prefetch from env", nil, map[string]string{"SAGAFLOW_PREFETCH": "70000"}, "", []string{"--prefetch", "70000"}},
		{"public admin without token", []string{"--admin-addr", "0.0.0.0:8080"}, nil, "", []string{"--admin-addr", "beyond loopback", "SAGAFLOW_ADMIN_TOKEN"}},
		{"admin address", []string{"--admin-addr", "8080"}, nil, "", []string{"--admin-addr", `"8080"`}},
		{"amqp url", []string{"--amqp-url", "http://guest:secret@host/"}, nil, "", []string{"--amqp-url", "amqps://"}},
		{"amqp password hidden", []string{"--amqp-url", "nats://guest:secret@host/"}, nil, "", []string{"xxxxx"}},
		{"mongo uri", []string{"--mongo-uri", "postgres://x"}, nil, "", []string{"--mongo-uri", "mongodb://"}},
		{"shutdown timeout", []string{"--shutdown-timeout", "0s"}, nil, "", []string{"--shutdown-timeout"}},
		{"log format", []string{"--log-format", "xml"}, nil, "", []string{"--log-format", `"xml"`}},
		{"pprof beyond loopback", []string{"--pprof-addr", "0.0.0.0:6060"}, nil, "", []string{"--pprof-addr", "loopback"}},
		{"short token", nil, map[string]string{AdminTokenEnv: "short"}, "", []string{AdminTokenEnv, "at least 16"}},
		{"unknown config key", nil, nil, "partitons: 4\n", []string{`unknown setting "partitons"`, "partitions"}},
		{"bad config value", nil, nil, "partitions: many\n", []string{`setting "partitions"`, "many"}},
		{"config not yaml", nil, nil, "partitions: [\n", []string{"not valid YAML"}},
		{"config nested value", nil, nil, "name:\n  a: b\n", []string{`setting "name"`, "single value"}},
		{"several at once", []string{"--partitions", "0", "--prefetch", "0"}, nil, "", []string{"--partitions", "--prefetch"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			args := c.args
			if c.file != "" {
				args = append(args, "--config", writeFile(t, "c.yaml", c.file))
			}
			_, err := settingsOf(t, args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, m := range c.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows a password", err)
			}
		})
	}
}

func TestServeHelpDocumentsEverySetting(t *testing.T) {
	var out bytes.Buffer
	if code := MainIO(context.Background(), []string{"sagaflow", "serve", "--help"}, nil, &out, &out); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	for _, f := range engineFlags() {
		name := f.Names()[0]
		for _, want := range []string{"--" + name, envOf(name)} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("serve --help does not mention %s", want)
			}
		}
	}
	if !strings.Contains(out.String(), "second signal") {
		t.Error("serve --help does not explain the shutdown")
	}
}

// TestDataDirBesideAMongoURIIsWarnedAbout: a data directory given beside a
// MongoDB URI (say one from the environment) is unused, and serve says so.
func TestDataDirBesideAMongoURIIsWarnedAbout(t *testing.T) {
	warnings := func(args ...string) string {
		var stderr bytes.Buffer
		cmd := &cli.Command{
			Name: "serve", Flags: engineFlags(), Writer: io.Discard, ErrWriter: io.Discard,
			Action: func(_ context.Context, cmd *cli.Command) error {
				_, err := settingsFrom(cmd, &stderr)
				return err
			},
		}
		if err := cmd.Run(context.Background(), append([]string{"serve"}, args...)); err != nil {
			t.Fatalf("serve %v: %v", args, err)
		}
		return stderr.String()
	}
	if got := warnings("--mongo-uri", "mongodb://127.0.0.1:1/", "--data-dir", t.TempDir()); !strings.Contains(got, "leaves the data directory unused") {
		t.Errorf("both set: stderr %q, want the warning", got)
	}
	if got := warnings("--mongo-uri", "mongodb://127.0.0.1:1/"); strings.Contains(got, "data directory") {
		t.Errorf("only the URI: stderr %q, want no warning", got)
	}
}
