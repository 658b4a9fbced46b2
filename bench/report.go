package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one run measured. It is written as JSON so that
// runs can be compared.
type Report struct {
	// StartedAt is when the run began.
	StartedAt time.Time `json:"started_at"`
	// Seconds is how long the run took.
	Seconds float64 `json:"seconds"`
	// Host describes the machine.
	Host Host `json:"host"`
	// Config is the run's settings.
	Config Config `json:"config"`
	// Raw holds the raw limits.
	Raw RawResults `json:"raw"`
	// Sagas holds one entry per backend, compensation share and load.
	Sagas []SagaResult `json:"sagas,omitempty"`
	// SagaSections says why a saga section did not run, by section.
	SagaSections map[string]string `json:"saga_sections,omitempty"`
	// Memory is the memory section.
	Memory *MemoryResult `json:"memory,omitempty"`
	// Recovery is the recovery section.
	Recovery *RecoveryResult `json:"recovery,omitempty"`
	// Formulas states how the limits are derived.
	Formulas []string `json:"formulas"`
}

// Host describes the machine a run was taken on.
type Host struct {
	// GOOS and GOARCH are the platform.
	GOOS   string `json:"goos"`
	GOARCH string `json:"goarch"`
	// NumCPU and GOMAXPROCS are the logical CPUs and how many Go used.
	NumCPU     int `json:"num_cpu"`
	GOMAXPROCS int `json:"gomaxprocs"`
	// GoVersion is the Go release the harness was built with.
	GoVersion string `json:"go_version"`
	// Hostname names the machine.
	Hostname string `json:"hostname"`
	// StealShare is the share of the machine's CPU time that the
	// hypervisor gave to other guests during the run (Linux; 0 elsewhere).
	StealShare float64 `json:"cpu_steal_share"`
}

func thisHost() Host {
	name, _ := os.Hostname()
	return Host{
		GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, NumCPU: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), Hostname: name,
	}
}

// Status is "ok", or why a measurement has no figure
// ("unavailable: ..." when a service is missing, "error: ..." otherwise).
type Status string

// StatusOK marks a measurement that ran.
const StatusOK Status = "ok"

func unavailable(err error) Status { return Status("unavailable: " + err.Error()) }
func failed(err error) Status      { return Status("error: " + err.Error()) }

// RawResults are the raw limits.
type RawResults struct {
	// RabbitMQ is persistent request/reply through the broker.
	RabbitMQ *RabbitResult `json:"rabbitmq,omitempty"`
	// MongoDB is inserts through the driver.
	MongoDB *MongoResult `json:"mongodb,omitempty"`
	// Embedded is the embedded store's durable commits.
	Embedded *EmbeddedRawResult `json:"embedded_store,omitempty"`
	// Disk is what a durable write costs on the embedded store's disk.
	Disk *DiskRawResult `json:"disk,omitempty"`
}

// DiskRawResult is the time of one durable write on the file system the
// embedded store uses, by its shape.
type DiskRawResult struct {
	Status Status `json:"status"`
	// AppendSmall and AppendLarge are appending 4 KiB and 1 MiB to a file
	// and syncing it (fdatasync): a write-ahead log's group commit.
	AppendSmall Millis `json:"append_4kib_sync_ms"`
	AppendLarge Millis `json:"append_1mib_sync_ms"`
	// ScatteredPages is overwriting Pages 4 KiB pages spread over 64 MiB
	// and syncing: a B+tree transaction such as bbolt's.
	ScatteredPages Millis `json:"scattered_pages_sync_ms"`
	Pages          int    `json:"pages"`
}

// RabbitResult is persistent request/reply with publisher confirms.
type RabbitResult struct {
	Status Status `json:"status"`
	// RoundTrips1 and RoundTrips16 are round trips/s at 1 and 16 in flight.
	RoundTrips1  float64 `json:"round_trips_per_s_1"`
	RoundTrips16 float64 `json:"round_trips_per_s_16"`
	// P50At1 is the median round trip at 1 in flight.
	P50At1 Millis `json:"p50_ms_at_1"`
}

// MongoResult is inserts through the Go driver (write concern majority,
// documents of about 1 KiB).
type MongoResult struct {
	Status Status `json:"status"`
	// Single1 and Single16 are single-document inserts/s at 1 and 16 in
	// flight.
	Single1  float64 `json:"single_inserts_per_s_1"`
	Single16 float64 `json:"single_inserts_per_s_16"`
	// Batch1 and Batch4 are documents/s of 100-document insertMany at 1
	// and 4 in flight.
	Batch1 float64 `json:"batch_docs_per_s_1"`
	Batch4 float64 `json:"batch_docs_per_s_4"`
	// Server names the server (its buildInfo version and, for FerretDB,
	// that it is FerretDB).
	Server string `json:"server"`
}

// EmbeddedRawResult is the embedded store's durable commit rate.
type EmbeddedRawResult struct {
	Status Status `json:"status"`
	// Single is commits/s from one writer (each commit its own fsync).
	Single float64 `json:"single_writer_commits_per_s"`
	// Batched is commits/s from Writers writers sharing group commits.
	Batched float64 `json:"batched_commits_per_s"`
	// Writers is the number of concurrent writers of Batched.
	Writers int `json:"writers"`
	// PerBatch is the mean number of commits per transaction in Batched.
	PerBatch float64 `json:"commits_per_batch"`
}

// Millis is a duration reported in milliseconds.
type Millis float64

func millis(d time.Duration) Millis { return Millis(float64(d) / float64(time.Millisecond)) }

// SagaResult is one saga measurement.
type SagaResult struct {
	// Backend is "embedded" or "rabbitmq+mongodb".
	Backend string `json:"backend"`
	// CompensationPercent is the share of sagas whose last step fails.
	CompensationPercent int `json:"compensation_percent"`
	// Load is "full" (a fixed number in flight) or "half" (open loop at
	// half the full-load rate).
	Load   string `json:"load"`
	Status Status `json:"status"`
	// InFlight is the number kept in flight (full load); Offered the
	// start rate asked for (half load).
	InFlight int     `json:"in_flight,omitempty"`
	Offered  float64 `json:"offered_per_s,omitempty"`
	// Rate is sagas finished per second in the window.
	Rate float64 `json:"sagas_per_s"`
	// P50 and P99 are start-to-finish latencies of the sagas started in
	// the window (from their scheduled start at half load).
	P50 Millis `json:"p50_ms"`
	P99 Millis `json:"p99_ms"`
	// P90 and P999 (the 99.9th percentile) are in the JSON only: they
	// show the shape of the tail.
	P90  Millis `json:"p90_ms"`
	P999 Millis `json:"p999_ms"`
	// Sagas counts the sagas started in the window; Compensated those of
	// them that were compensated; Unfinished those not finished after the
	// drain; Late the half-load starts more than 1s behind schedule.
	Sagas       int `json:"sagas"`
	Compensated int `json:"compensated"`
	Unfinished  int `json:"unfinished,omitempty"`
	Late        int `json:"late_starts,omitempty"`
	// StartErrors counts the starts that failed (the sagas were not
	// started); Warnings the warnings the engine logged in the phase.
	StartErrors int `json:"start_errors,omitempty"`
	Warnings    int `json:"engine_warnings,omitempty"`
	// Note names the first start error and the first warning.
	Note string `json:"note,omitempty"`
	// Cost is what a saga cost, averaged over the phase.
	Cost Cost `json:"cost"`
	// Store is what the store did: how busy the embedded store's writer
	// was, or the MongoDB commands a saga cost (nil: not observed).
	Store *StoreLoad `json:"store,omitempty"`
	// StealShare is the share of the machine's CPU time the hypervisor
	// gave to other guests during the phase.
	StealShare float64 `json:"cpu_steal_share"`
	// CPUPerSaga is the harness process's CPU time (user and system) in
	// the measurement window divided by the sagas that finished in it, in
	// milliseconds: on the embedded default the process is the whole
	// engine, store and transport included, so this is what a saga costs
	// and, unlike the rate, it does not move with CPU steal (0: not
	// sampled).
	CPUPerSaga Millis `json:"cpu_per_saga_ms,omitempty"`
	// AllocKiBPerSaga is what the harness process allocated on the Go
	// heap in the window per saga finished in it, in KiB: the work behind
	// the GC's share of CPUPerSaga, and like the bytes the store wrote it
	// does not move with the machine's speed (0: not sampled).
	AllocKiBPerSaga float64 `json:"alloc_kib_per_saga,omitempty"`
	// Limit is the rate the raw limits imply for this cost (0: unknown),
	// and Ratio is Rate/Limit.
	Limit float64 `json:"limit_per_s,omitempty"`
	Ratio float64 `json:"ratio,omitempty"`
	// LimitNote says how Limit was computed, or why it is missing.
	LimitNote string `json:"limit_note,omitempty"`
}

// Cost is what the engine did per saga, counted at the store interface.
type Cost struct {
	// Messages is the number of messages published (and consumed) per saga:
	// every outbox entry of its commits and of its participants' commits.
	Messages float64 `json:"messages"`
	// Commits is the number of store appends (each one atomic write: I1).
	Commits float64 `json:"commits"`
	// Loads is the number of stream reads (store Load calls): an actor
	// reads its stream when it starts.
	Loads float64 `json:"loads"`
	// Marks is the number of MarkDispatched calls (outbox clean-up).
	Marks float64 `json:"dispatch_marks"`
	// MongoDocs is the number of MongoDB documents a saga's writes touch
	// in store/mongo's layout: per commit the commit, its handled markers,
	// outbox entries, timers set and cancelled, and its stream head; plus
	// one outbox deletion per dispatched message. Group-commit journal
	// entries (two per batch, shared by the batch) are not counted.
	MongoDocs float64 `json:"mongo_documents"`
}

// MemoryResult is the memory section.
type MemoryResult struct {
	Status Status `json:"status"`
	// Actors is the number of aggregates that each handled one command.
	Actors int `json:"actors"`
	// BaselineRSS is the engine's RSS before the first command, with its
	// anonymous and file-backed parts and the Go heap in use.
	BaselineRSS  MiB `json:"baseline_rss_mib"`
	BaselineAnon MiB `json:"baseline_rss_anon_mib"`
	BaselineFile MiB `json:"baseline_rss_file_mib"`
	BaselineHeap MiB `json:"baseline_heap_mib"`
	// IdleRSS is the RSS with every actor alive and idle; IdleAnon its
	// anonymous part (heap, stacks) and IdleFile the part that maps files
	// (the bbolt file).
	IdleRSS  MiB `json:"idle_rss_mib"`
	IdleAnon MiB `json:"idle_rss_anon_mib"`
	IdleFile MiB `json:"idle_rss_file_mib"`
	// IdleHeap is the Go heap in use then, and IdleStacks the goroutine
	// stacks.
	IdleHeap   MiB `json:"idle_heap_mib"`
	IdleStacks MiB `json:"idle_stacks_mib"`
	// IdleStoreCache and IdleStoreMemTables are what the embedded store's
	// Pebble block cache holds and its memtables reserve at the idle
	// figure: memory outside the Go heap, part of the anonymous RSS.
	IdleStoreCache     MiB `json:"idle_store_cache_mib"`
	IdleStoreMemTables MiB `json:"idle_store_memtables_mib"`
	// AnonPerActor is the growth of the anonymous RSS from the baseline
	// to the idle figure per actor, in bytes: what one idle actor costs
	// (the file-backed part grows with the data stored, not the actors).
	AnonPerActor float64 `json:"idle_anon_bytes_per_actor"`
	// StoreFile is the size of the embedded store's files at the idle figure.
	StoreFile MiB `json:"store_file_mib"`
	// PassivatedRSS, PassivatedAnon, PassivatedFile and PassivatedHeap
	// are the same after the actors were passivated.
	PassivatedRSS  MiB `json:"passivated_rss_mib"`
	PassivatedAnon MiB `json:"passivated_rss_anon_mib"`
	PassivatedFile MiB `json:"passivated_rss_file_mib"`
	PassivatedHeap MiB `json:"passivated_heap_mib"`
	// Sampled aggregates got a second command after the passivated figure;
	// SampledPassivated of them loaded their stream again, so their actor
	// had been passivated (the others were still alive).
	Sampled           int `json:"sampled"`
	SampledPassivated int `json:"sampled_passivated"`
	// SendSeconds is how long sending and handling the commands took.
	SendSeconds float64 `json:"send_seconds"`
	// Note qualifies the figures.
	Note string `json:"note,omitempty"`
}

// MiB is a size in mebibytes.
type MiB float64

func mib(bytes uint64) MiB { return MiB(float64(bytes) / (1 << 20)) }

// RecoveryResult is the recovery section.
type RecoveryResult struct {
	Status Status `json:"status"`
	// InFlight is the number of unfinished sagas in the store after the
	// kill.
	InFlight int `json:"in_flight"`
	// ReadySeconds is from the restart (exec) until the engine was ready
	// (store open, unfinished sagas sent their resume).
	ReadySeconds float64 `json:"ready_seconds"`
	// RunningSeconds is until every unfinished saga had committed a step
	// again (its command re-sent).
	RunningSeconds float64 `json:"running_seconds"`
	// TerminalSeconds is until every one had finished.
	TerminalSeconds float64 `json:"terminal_seconds"`
	// Finished counts the sagas that finished; Compensated those of them
	// that were compensated.
	Finished    int `json:"finished"`
	Compensated int `json:"compensated"`
}

// WriteJSON writes r to path.
func (r *Report) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results to %s: %w", path, err)
	}
	return nil
}

// PrintTable writes r as tables to w.
func (r *Report) PrintTable(w io.Writer) {
	fmt.Fprintf(w, "sagaflow bench, %s, %d CPUs (GOMAXPROCS %d), %s, %.0fs, CPU steal %.1f%%\n\n",
		r.StartedAt.Format(time.RFC3339), r.Host.NumCPU, r.Host.GOMAXPROCS, r.Host.GoVersion, r.Seconds, 100*r.Host.StealShare)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if r.Raw.RabbitMQ != nil || r.Raw.MongoDB != nil || r.Raw.Embedded != nil || r.Raw.Disk != nil {
		fmt.Fprintln(tw, "RAW LIMITS\t\t")
	}
	if rr := r.Raw.RabbitMQ; rr != nil {
		row(tw, "rabbitmq req/reply, persistent+confirms, 1 in flight", rr.Status, fmt.Sprintf("%.0f round trips/s (p50 %.2f ms)", rr.RoundTrips1, rr.P50At1))
		row(tw, "rabbitmq req/reply, persistent+confirms, 16 in flight", rr.Status, fmt.Sprintf("%.0f round trips/s", rr.RoundTrips16))
	}
	if mr := r.Raw.MongoDB; mr != nil {
		row(tw, "mongodb single inserts, 1 in flight"+server(mr.Server), mr.Status, fmt.Sprintf("%.0f docs/s", mr.Single1))
		row(tw, "mongodb single inserts, 16 in flight", mr.Status, fmt.Sprintf("%.0f docs/s", mr.Single16))
		row(tw, "mongodb 100-doc insertMany, 1 in flight", mr.Status, fmt.Sprintf("%.0f docs/s", mr.Batch1))
		row(tw, "mongodb 100-doc insertMany, 4 in flight", mr.Status, fmt.Sprintf("%.0f docs/s", mr.Batch4))
	}
	if er := r.Raw.Embedded; er != nil {
		row(tw, "embedded store, 1 writer (fsync per commit)", er.Status, fmt.Sprintf("%.0f commits/s", er.Single))
		row(tw, fmt.Sprintf("embedded store, %d writers (group commit)", er.Writers), er.Status, fmt.Sprintf("%.0f commits/s (%.0f per fsync)", er.Batched, er.PerBatch))
	}
	if d := r.Raw.Disk; d != nil {
		row(tw, "disk, append 4 KiB + fdatasync", d.Status, fmt.Sprintf("%.2f ms", d.AppendSmall))
		row(tw, "disk, append 1 MiB + fdatasync", d.Status, fmt.Sprintf("%.2f ms", d.AppendLarge))
		row(tw, fmt.Sprintf("disk, %d scattered 4 KiB page writes + fdatasync", d.Pages), d.Status, fmt.Sprintf("%.2f ms", d.ScatteredPages))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)

	if len(r.Sagas) > 0 || len(r.SagaSections) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "SAGAS (3 steps)\tcomp\tload\tin flight/offered\tsagas/s\tp50 ms\tp99 ms\tmsgs\tcommits\tloads\tmongo docs\tlimit/s\tratio\t")
		for _, s := range r.Sagas {
			load := fmt.Sprintf("%d", s.InFlight)
			if s.Load == "half" {
				load = fmt.Sprintf("%.0f/s", s.Offered)
			}
			if s.Status != StatusOK {
				fmt.Fprintf(tw, "%s\t%d%%\t%s\t%s\t%s\t\t\t\t\t\t\t\t\t\n", s.Backend, s.CompensationPercent, s.Load, load, s.Status)
				continue
			}
			limit, ratio := "-", "-"
			if s.Limit > 0 {
				limit, ratio = fmt.Sprintf("%.0f", s.Limit), fmt.Sprintf("%.0f%%", 100*s.Ratio)
			}
			fmt.Fprintf(tw, "%s\t%d%%\t%s\t%s\t%.0f\t%.1f\t%.1f\t%.2f\t%.2f\t%.2f\t%.1f\t%s\t%s\t\n",
				s.Backend, s.CompensationPercent, s.Load, load, s.Rate, s.P50, s.P99,
				s.Cost.Messages, s.Cost.Commits, s.Cost.Loads, s.Cost.MongoDocs, limit, ratio)
		}
		for name, why := range r.SagaSections {
			fmt.Fprintf(tw, "%s\t\t\t\t%s\t\t\t\t\t\t\t\t\t\n", name, why)
		}
		_ = tw.Flush()
		fmt.Fprintln(w)
	}
	r.printStoreLoad(w)
	if m := r.Memory; m != nil {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "MEMORY (engine in a child process)\t\t")
		row(tw, "RSS before any actor", m.Status, fmt.Sprintf("%.1f MiB (anon %.1f, file %.1f; Go heap %.1f)",
			m.BaselineRSS, m.BaselineAnon, m.BaselineFile, m.BaselineHeap))
		row(tw, fmt.Sprintf("RSS with %d idle aggregate actors", m.Actors), m.Status,
			fmt.Sprintf("%.1f MiB (anon %.1f, file %.1f; Go heap %.1f, stacks %.1f, store cache %.1f, memtables %.1f); anon %.0f B per actor; store file %.1f MiB",
				m.IdleRSS, m.IdleAnon, m.IdleFile, m.IdleHeap, m.IdleStacks, m.IdleStoreCache, m.IdleStoreMemTables, m.AnonPerActor, m.StoreFile))
		row(tw, "RSS after passivation", m.Status,
			fmt.Sprintf("%.1f MiB (anon %.1f, file %.1f; Go heap %.1f); %d of %d sampled actors had been passivated",
				m.PassivatedRSS, m.PassivatedAnon, m.PassivatedFile, m.PassivatedHeap, m.SampledPassivated, m.Sampled))
		_ = tw.Flush()
		fmt.Fprintln(w)
	}
	if rc := r.Recovery; rc != nil {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RECOVERY (SIGKILL, restart on the same data)\t\t")
		row(tw, "sagas in flight at the kill", rc.Status, fmt.Sprintf("%d", rc.InFlight))
		row(tw, "restart to engine ready", rc.Status, fmt.Sprintf("%.2f s", rc.ReadySeconds))
		row(tw, "restart to all running again", rc.Status, fmt.Sprintf("%.2f s", rc.RunningSeconds))
		row(tw, "restart to all finished", rc.Status, fmt.Sprintf("%.2f s (%d finished, %d compensated)", rc.TerminalSeconds, rc.Finished, rc.Compensated))
		_ = tw.Flush()
		fmt.Fprintln(w)
	}
	for _, f := range r.Formulas {
		fmt.Fprintln(w, f)
	}
}

// printStoreLoad prints what the store did in each saga phase.
func (r *Report) printStoreLoad(w io.Writer) {
	var lines []string
	for _, s := range r.Sagas {
		if s.Status == StatusOK && s.Store != nil {
			lines = append(lines, fmt.Sprintf("%s\t%d%%\t%s\t%s; process CPU %.2f ms and %.0f KiB allocated per saga; CPU steal %.0f%%",
				s.Backend, s.CompensationPercent, s.Load, s.Store.describe(), s.CPUPerSaga, s.AllocKiBPerSaga, 100*s.StealShare))
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "STORE (what the store did in each saga phase)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, l := range lines {
		fmt.Fprintln(tw, "  "+l)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
}

func row(w io.Writer, what string, st Status, value string) {
	if st != StatusOK {
		value = string(st)
	}
	fmt.Fprintf(w, "  %s\t%s\t\n", what, value)
}

func server(s string) string {
	if s == "" {
		return ""
	}
	return " [" + strings.TrimSpace(s) + "]"
}
