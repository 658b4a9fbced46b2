package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// checkRabbit returns nil when an AMQP connection to url succeeds.
func checkRabbit(url string) error {
	c, err := dialAMQP(url, "sagaflow-bench-check")
	if err != nil {
		return fmt.Errorf("RabbitMQ at %s: %w", redact(url), err)
	}
	return c.Close()
}

// checkMongo returns nil when the server at uri answers a ping.
func checkMongo(ctx context.Context, uri string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(10 * time.Second))
	if err != nil {
		return fmt.Errorf("MongoDB at %s: %w", redact(uri), err)
	}
	defer func() { _ = c.Disconnect(context.WithoutCancel(ctx)) }()
	if err := c.Ping(ctx, nil); err != nil {
		return fmt.Errorf("MongoDB at %s: %w", redact(uri), err)
	}
	return nil
}

func redact(u string) string {
	if pu, err := url.Parse(u); err == nil {
		return pu.Redacted()
	}
	return "(unparsable URL)"
}

// devMongo is a tools/devmongo server the harness started.
type devMongo struct {
	cmd *exec.Cmd
	dir string
	uri string
}

// startDevMongo builds tools/devmongo (unless bin names a binary), starts
// it on a free loopback port with its data in a temporary directory, and
// waits for its "ready mongodb://..." line, as scripts/test.sh does.
func startDevMongo(ctx context.Context, bin string) (*devMongo, error) {
	dir, err := os.MkdirTemp("", "sagaflow-bench-devmongo-")
	if err != nil {
		return nil, fmt.Errorf("devmongo: %w", err)
	}
	d := &devMongo{dir: dir}
	fail := func(err error) (*devMongo, error) {
		d.stop()
		return nil, err
	}
	if bin == "" {
		src, err := findDevMongoSource()
		if err != nil {
			return fail(err)
		}
		bin = filepath.Join(dir, "devmongo")
		slog.Info("building tools/devmongo (FerretDB on SQLite); the first build takes a minute or two", "dir", src)
		bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		build := exec.CommandContext(bctx, "bash", filepath.Join(src, "build.sh"), bin)
		out, err := build.CombinedOutput()
		cancel()
		if err != nil {
			return fail(fmt.Errorf("build tools/devmongo in %s: %w: %s", src, err, strings.TrimSpace(string(out))))
		}
	}
	port, err := freePort()
	if err != nil {
		return fail(fmt.Errorf("devmongo: %w", err))
	}
	d.cmd = exec.Command(bin, "-listen", fmt.Sprintf("127.0.0.1:%d", port), "-dir", filepath.Join(dir, "data"))
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		return fail(fmt.Errorf("devmongo: %w", err))
	}
	stderr := &limitedWriter{left: 8 << 10}
	d.cmd.Stderr = stderr
	if err := d.cmd.Start(); err != nil {
		return fail(fmt.Errorf("start devmongo %s: %w", bin, err))
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if uri, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
				ready <- strings.TrimSpace(uri)
			}
		}
		close(ready)
	}()
	select {
	case uri, ok := <-ready:
		if !ok {
			return fail(fmt.Errorf("devmongo exited before it was ready: %s", strings.TrimSpace(stderr.String())))
		}
		d.uri = uri
		return d, nil
	case <-time.After(60 * time.Second):
		return fail(errors.New("devmongo not ready within 60s"))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

// stop stops the server (SIGTERM, then SIGKILL after 10s) and removes its
// data.
func (d *devMongo) stop() {
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = d.cmd.Process.Kill()
			<-done
		}
	}
	_ = os.RemoveAll(d.dir)
}

// findDevMongoSource finds tools/devmongo from the working directory up,
// and next to this source file.
func findDevMongoSource() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			cand := filepath.Join(dir, "tools", "devmongo")
			if _, err := os.Stat(filepath.Join(cand, "go.mod")); err == nil {
				return cand, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("tools/devmongo not found (run from the sagaflow repository, or set SAGAFLOW_MONGO_URI or -devmongo)")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// limitedWriter keeps the first left bytes written to it.
type limitedWriter struct {
	mu   sync.Mutex
	b    strings.Builder
	left int
}

// Write implements io.Writer; it never fails.
func (l *limitedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if k := min(len(p), l.left); k > 0 {
		l.b.Write(p[:k])
		l.left -= k
	}
	return len(p), nil
}

// String returns what was kept.
func (l *limitedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
