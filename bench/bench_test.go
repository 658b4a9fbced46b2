package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/testenv"
)

// The tests run every section at a tiny size to prove the harness works.
// They never assert a speed: only that each section ran and that the
// per-saga costs it counted are the engine's (6 messages and 7 commits
// for a saga that completes).

func TestMain(m *testing.M) {
	if isChild() { // the memory and recovery sections re-execute this binary
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

// tinyConfig is a run of a few seconds.
func tinyConfig(t *testing.T, sections ...string) Config {
	t.Helper()
	c := DefaultConfig()
	c.Sections = sections
	c.Out = filepath.Join(t.TempDir(), "results.json")
	c.RawDuration = 200 * time.Millisecond
	c.Warmup = 100 * time.Millisecond
	c.Duration = 400 * time.Millisecond
	c.Drain = 30 * time.Second
	c.Compensation = []int{0, 50}
	c.WindowEmbedded, c.WindowDistributed, c.Starters = 8, 4, 4
	c.Partitions = 2
	c.IdleTimeout = time.Second
	c.Actors = 300
	c.MemoryIdle = 2 * time.Second
	c.RecoverySagas = 40
	c.RecoveryTimeout = 30 * time.Second
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSectionsWithoutServices(t *testing.T) {
	cfg := tinyConfig(t, SectionEmbedded, SectionMemory, SectionRecovery)
	var out bytes.Buffer
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	rep := readReport(t, cfg.Out)
	checkSagas(t, rep, BackendEmbedded)
	if m := rep.Memory; m == nil || m.Status != StatusOK || m.Actors != cfg.Actors || m.IdleRSS <= 0 || m.PassivatedRSS <= 0 {
		t.Errorf("memory section: %+v", m)
	}
	if rc := rep.Recovery; rc == nil || rc.Status != StatusOK || rc.InFlight != cfg.RecoverySagas ||
		rc.Finished != cfg.RecoverySagas || rc.TerminalSeconds < rc.RunningSeconds {
		t.Errorf("recovery section: %+v", rc)
	}
	for _, want := range []string{"SAGAS (3 steps)", "STORE (", "writer busy", "MEMORY", "RECOVERY", "limit/s ="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestSectionsWithServices(t *testing.T) {
	cfg := tinyConfig(t, SectionRaw, SectionDistributed)
	// The dev server is slow, and slower still on a busy machine (its
	// full load can be one saga a second): a window of several seconds
	// keeps the half-load phase (half the full-load rate, an open loop)
	// from starting no saga in it.
	cfg.Duration, cfg.WindowDistributed = 4*time.Second, 8
	cfg.AMQPURL = testenv.RabbitMQ(t)
	cfg.MongoURI = testenv.MongoDB(t)
	var out bytes.Buffer
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	rep := readReport(t, cfg.Out)
	if r := rep.Raw.RabbitMQ; r == nil || r.Status != StatusOK || r.RoundTrips1 <= 0 || r.RoundTrips16 <= 0 {
		t.Errorf("raw RabbitMQ: %+v", r)
	}
	if r := rep.Raw.MongoDB; r == nil || r.Status != StatusOK || r.Single1 <= 0 || r.Batch4 <= 0 {
		t.Errorf("raw MongoDB: %+v", r)
	}
	if r := rep.Raw.Embedded; r == nil || r.Status != StatusOK || r.Single <= 0 || r.Batched <= 0 {
		t.Errorf("raw embedded store: %+v", r)
	}
	if r := rep.Raw.Disk; r == nil || r.Status != StatusOK || r.AppendSmall <= 0 || r.AppendLarge <= 0 || r.ScatteredPages <= 0 || r.Pages != diskPages {
		t.Errorf("raw disk: %+v", r)
	}
	checkSagas(t, rep, BackendDistributed)
	for _, s := range rep.Sagas {
		if s.Limit <= 0 || s.Ratio <= 0 {
			t.Errorf("%s %d%% %s: no limit computed (%s)", s.Backend, s.CompensationPercent, s.Load, s.LimitNote)
		}
	}
}

func TestMissingServiceIsReportedAndTheRestRuns(t *testing.T) {
	cfg := tinyConfig(t, SectionRaw)
	cfg.AMQPURL = "amqp://guest:guest@127.0.0.1:1/" // nothing listens on port 1
	cfg.MongoURI = "mongodb://127.0.0.1:1/?connectTimeoutMS=500&serverSelectionTimeoutMS=500"
	rep := Measure(context.Background(), cfg)
	if r := rep.Raw.RabbitMQ; r == nil || !strings.HasPrefix(string(r.Status), "unavailable: ") {
		t.Errorf("raw RabbitMQ without a broker: %+v", r)
	}
	if r := rep.Raw.MongoDB; r == nil || !strings.HasPrefix(string(r.Status), "unavailable: ") {
		t.Errorf("raw MongoDB without a server: %+v", r)
	}
	if r := rep.Raw.Embedded; r == nil || r.Status != StatusOK {
		t.Errorf("raw embedded store: %+v", r)
	}
}

// checkSagas checks that every phase of backend ran and counted the
// engine's costs.
func checkSagas(t *testing.T, rep *Report, backend string) {
	t.Helper()
	if why, ok := rep.SagaSections[backend]; ok {
		t.Fatalf("%s section did not run: %s", backend, why)
	}
	phases := 0
	for _, s := range rep.Sagas {
		if s.Backend != backend {
			continue
		}
		phases++
		if s.Status != StatusOK || s.Sagas == 0 || s.Rate <= 0 || s.P99 < s.P50 || s.Unfinished != 0 {
			t.Errorf("%s %d%% %s: %+v", backend, s.CompensationPercent, s.Load, s)
			continue
		}
		if s.CompensationPercent == 0 && (s.Cost.Messages != 6 || s.Cost.Commits != 7 || s.Compensated != 0) {
			t.Errorf("%s 0%% %s: cost %+v, %d compensated; want 6 messages and 7 commits per saga, none compensated", backend, s.Load, s.Cost, s.Compensated)
		}
		if s.CompensationPercent == 0 && backend == BackendEmbedded && (s.Cost.Loads < 3 || s.Cost.Loads > 3.5) {
			t.Errorf("%s 0%% %s: %.2f stream loads per saga, want 3 (the participants'; the saga's actor takes its first version from the handoff)", backend, s.Load, s.Cost.Loads)
		}
		if s.CompensationPercent == 50 && s.Compensated == 0 {
			t.Errorf("%s 50%% %s: no saga was compensated", backend, s.Load)
		}
		checkStoreLoad(t, s)
	}
	if phases != 4 {
		t.Errorf("%s: %d phases, want 4 (2 compensation shares x full and half load)", backend, phases)
	}
}

// checkStoreLoad checks that a phase says what its store did: how busy
// the embedded store's writer was, or the MongoDB commands per saga.
func checkStoreLoad(t *testing.T, s SagaResult) {
	t.Helper()
	l := s.Store
	if l == nil {
		t.Errorf("%s %d%% %s: no store figures", s.Backend, s.CompensationPercent, s.Load)
		return
	}
	switch s.Backend {
	case BackendEmbedded:
		if runtime.GOOS == "linux" && s.CPUPerSaga <= 0 {
			t.Errorf("%s %d%% %s: no process CPU per saga", s.Backend, s.CompensationPercent, s.Load)
		}
		if s.AllocKiBPerSaga <= 0 || l.WALKiBPerSaga <= 0 {
			t.Errorf("%s %d%% %s: allocated %.1f KiB and wrote %.1f KiB of log per saga, want both above 0",
				s.Backend, s.CompensationPercent, s.Load, s.AllocKiBPerSaga, l.WALKiBPerSaga)
		}
		if l.WriterBusy <= 0 || l.TxMillis <= 0 || l.RequestsPerTx < 1 || l.WALKiBPerTx <= 0 || l.SyncShare <= 0 || l.SyncShare > 1 || l.Commands != 0 {
			t.Errorf("%s %d%% %s: store figures %+v, want the writer's busy share, sync share, writes and log bytes per batch", s.Backend, s.CompensationPercent, s.Load, *l)
		}
	case BackendDistributed:
		// Commits are inserted (a group commit inserts several in one
		// command), and every actor that starts reads its stream.
		if l.Inserts <= 0 || l.Finds <= 0 || l.Finds+l.Inserts+l.Updates+l.Deletes > l.Commands+1e-9 || l.CommandMillis <= 0 || l.WriterBusy != 0 {
			t.Errorf("%s %d%% %s: store figures %+v, want inserts, finds and the commands by kind", s.Backend, s.CompensationPercent, s.Load, *l)
		}
	}
}

func readReport(t *testing.T, path string) *Report {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("results file: %v", err)
	}
	return &rep
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{args: nil},
		{args: []string{"-only", "raw,memory", "-compensation", "0,20,50", "-out", ""}},
		{args: []string{"-only", "raw,bogus"}, wantErr: `unknown section "bogus"`},
		{args: []string{"-compensation", "120"}, wantErr: "not a percentage"},
		{args: []string{"-duration", "0s"}, wantErr: "-duration 0s: must be positive"},
		{args: []string{"-actors", "0"}, wantErr: "-actors 0: must be at least 1"},
		{args: []string{"extra"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := ParseFlags(tt.args)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPercentileAndFailShare(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	if got := percentile(lat, 0.5); got != 50*time.Millisecond {
		t.Errorf("p50 = %v, want 50ms", got)
	}
	if got := percentile(lat, 0.99); got != 99*time.Millisecond {
		t.Errorf("p99 = %v, want 99ms", got)
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("p50 of nothing = %v, want 0", got)
	}
	for _, pct := range []int{0, 20, 100} {
		n := 0
		for i := range int64(1000) {
			if fails(i, pct) {
				n++
			}
		}
		if n != pct*10 {
			t.Errorf("fails at %d%%: %d of 1000", pct, n)
		}
	}
}
