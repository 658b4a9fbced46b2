// Command devmongo is a MongoDB-wire server for sagaflow's tests: FerretDB
// v1.24.0, embedded, on its SQLite backend, with its data in the directory
// it is given and listening on a loopback address. It is a separate module
// so that FerretDB and its dependencies stay out of sagaflow's go.mod.
//
// Build it with build.sh, which patches FerretDB so that lookups by _id use
// the _id index (upstream 1.24 scans the whole collection for them; see
// build.sh and sqlite-id-index.patch). A plain `go build` gives the
// unpatched server, on which the store's tests fail.
//
//	tools/devmongo/build.sh /tmp/devmongo
//	/tmp/devmongo -listen 127.0.0.1:27018 -dir /tmp/devmongo-data
//
// -pprof ADDR serves net/http/pprof on a loopback address, to see where
// the server spends its time.
//
// It prints "ready mongodb://ADDR/" on standard output once it accepts
// connections, and stops cleanly on SIGINT or SIGTERM. FerretDB has no
// multi-document transactions and no change streams; sagaflow needs
// neither (DESIGN.md, invariant I1).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served by -pprof
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27018", "loopback address to listen on")
	dir := flag.String("dir", "", "directory for the SQLite data files (required)")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	pprofAddr := flag.String("pprof", "", "loopback address to serve net/http/pprof on (off when empty), to see where the server spends its time")
	flag.Parse()
	if err := servePprof(*pprofAddr); err != nil {
		fmt.Fprintln(os.Stderr, "devmongo:", err)
		os.Exit(1)
	}
	if err := run(*listen, *dir, *logLevel); err != nil {
		fmt.Fprintln(os.Stderr, "devmongo:", err)
		os.Exit(1)
	}
}

// servePprof serves the net/http/pprof handlers on addr, a loopback
// address, in the background; an empty addr serves nothing.
func servePprof(addr string) error {
	if addr == "" {
		return nil
	}
	if err := checkLoopback(addr); err != nil {
		return fmt.Errorf("-pprof: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("-pprof %q: %w", addr, err)
	}
	go func() { _ = http.Serve(ln, nil) }() // net/http/pprof registers on the default mux
	return nil
}

// checkLoopback refuses an address that is not host:port on loopback.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q: devmongo serves tests and listens on loopback only", addr)
	}
	return nil
}

func run(listen, dir, logLevel string) error {
	if dir == "" {
		return errors.New("-dir is required: the directory for the data files")
	}
	if err := checkLoopback(listen); err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("-dir %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("-dir %q: %w", dir, err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("-log-level %q: want debug, info, warn or error", logLevel)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: listen},
		Handler:   "sqlite",
		SQLiteURL: "file:" + strings.TrimSuffix(abs, "/") + "/",
		Logger:    logger,
	})
	if err != nil {
		return fmt.Errorf("start FerretDB: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", listen, 200*time.Millisecond)
		if err == nil {
			_ = conn.Close()
			break
		}
		select {
		case err := <-done:
			return fmt.Errorf("FerretDB stopped while starting: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("FerretDB did not accept connections on %s within 30s: %w", listen, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("ready mongodb://%s/\n", listen)
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("FerretDB: %w", err)
	}
	return nil
}
