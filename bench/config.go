package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Section names, as -only takes them.
const (
	SectionRaw         = "raw"
	SectionEmbedded    = "embedded"
	SectionDistributed = "distributed"
	SectionMemory      = "memory"
	SectionRecovery    = "recovery"
)

// AllSections lists every section in the order a run takes them.
var AllSections = []string{SectionRaw, SectionEmbedded, SectionDistributed, SectionMemory, SectionRecovery}

// Config is one run's settings. Every loop the harness runs is bounded by
// one of these sizes or durations.
type Config struct {
	// Sections to run (see AllSections).
	Sections []string `json:"sections"`
	// Out is the JSON results file ("" writes none).
	Out string `json:"-"`
	// CPUProfile is the CPU profile file ("" takes none).
	CPUProfile string `json:"-"`
	// AllocProfile is the file of the heap profile written at the end of
	// the run, whose alloc_space and alloc_objects count what the harness
	// process allocated in it ("" writes none).
	AllocProfile string `json:"-"`
	// HalfTrace is the file for a runtime execution trace of the first
	// half-load measurement window on the embedded default ("" takes none):
	// `go tool trace -pprof=sched` on it shows where goroutines waited to
	// run.
	HalfTrace string `json:"-"`
	// MemProfile is the prefix of the memory section's heap profiles
	// (PREFIX-idle.pprof and PREFIX-passivated.pprof; "" takes none).
	MemProfile string `json:"-"`

	// RawDuration is how long each raw measurement runs.
	RawDuration time.Duration `json:"raw_duration"`
	// Warmup runs before each saga measurement and is not counted.
	Warmup time.Duration `json:"warmup"`
	// Duration is each saga measurement's window.
	Duration time.Duration `json:"duration"`
	// Drain bounds the wait for the sagas still in flight after a window.
	Drain time.Duration `json:"drain"`
	// Compensation lists the shares (percent) of sagas whose last step
	// fails.
	Compensation []int `json:"compensation_percent"`
	// WindowEmbedded and WindowDistributed are the sagas kept in flight at
	// full load.
	WindowEmbedded    int `json:"window_embedded"`
	WindowDistributed int `json:"window_distributed"`
	// Starters is the number of goroutines starting sagas at half load
	// (at full load there is one per saga in flight).
	Starters int `json:"starters"`
	// Partitions per queue (the engine's default is 16).
	Partitions int `json:"partitions"`
	// IdleTimeout passivates the saga sections' actors (every saga uses
	// fresh keys, so without it actors pile up).
	IdleTimeout time.Duration `json:"idle_timeout"`

	// Actors is the number of aggregate actors of the memory section.
	Actors int `json:"actors"`
	// MemoryIdle is the memory section's passivation idle timeout.
	MemoryIdle time.Duration `json:"memory_idle"`

	// RecoverySagas is the number of sagas in flight when the recovery
	// section kills the engine.
	RecoverySagas int `json:"recovery_sagas"`
	// RecoveryTimeout bounds the wait for them after the restart.
	RecoveryTimeout time.Duration `json:"recovery_timeout"`

	// AMQPURL is the broker; MongoURI the MongoDB server ("" starts
	// tools/devmongo); DevMongo a prebuilt devmongo binary.
	AMQPURL  string `json:"-"`
	MongoURI string `json:"-"`
	DevMongo string `json:"-"`
	// Verbose logs the engines' warnings.
	Verbose bool `json:"-"`
}

// DefaultConfig is a full run: about 3 minutes on a 2-core machine (plus
// the first build of tools/devmongo).
func DefaultConfig() Config {
	amqpURL := os.Getenv("SAGAFLOW_AMQP_URL")
	if amqpURL == "" {
		amqpURL = "amqp://guest:guest@127.0.0.1:5672/"
	}
	return Config{
		Sections:          slices.Clone(AllSections),
		Out:               "bench-results.json",
		RawDuration:       3 * time.Second,
		Warmup:            2 * time.Second,
		Duration:          8 * time.Second,
		Drain:             60 * time.Second,
		Compensation:      []int{0, 20},
		WindowEmbedded:    1000,
		WindowDistributed: 16,
		Starters:          64,
		Partitions:        16,
		IdleTimeout:       5 * time.Second,
		Actors:            100_000,
		MemoryIdle:        20 * time.Second,
		RecoverySagas:     10_000,
		RecoveryTimeout:   5 * time.Minute,
		AMQPURL:           amqpURL,
		MongoURI:          os.Getenv("SAGAFLOW_MONGO_URI"),
	}
}

// ParseFlags reads the command line into a Config.
func ParseFlags(args []string) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	only := fs.String("only", strings.Join(AllSections, ","), "sections to run, comma-separated: "+strings.Join(AllSections, ","))
	comp := fs.String("compensation", "0,20", "percentages of sagas whose last step fails, comma-separated")
	fs.StringVar(&c.Out, "out", c.Out, "write the results as JSON to this file (empty: none)")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of the harness process to this file")
	fs.StringVar(&c.AllocProfile, "allocprofile", "", "write the harness process's heap profile to this file at the end (alloc_space: what the run allocated)")
	fs.StringVar(&c.HalfTrace, "halftrace", "", "write an execution trace of the first half-load window on the embedded default to this file")
	fs.StringVar(&c.MemProfile, "memprofile", "", "write the memory section's heap profiles to PREFIX-idle.pprof and PREFIX-passivated.pprof")
	fs.DurationVar(&c.RawDuration, "raw-duration", c.RawDuration, "length of each raw measurement")
	fs.DurationVar(&c.Warmup, "warmup", c.Warmup, "warm-up before each saga measurement")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "length of each saga measurement window")
	fs.DurationVar(&c.Drain, "drain", c.Drain, "longest wait for the sagas in flight after a window")
	fs.IntVar(&c.WindowEmbedded, "window-embedded", c.WindowEmbedded, "sagas in flight at full load on the embedded default")
	fs.IntVar(&c.WindowDistributed, "window-distributed", c.WindowDistributed, "sagas in flight at full load on RabbitMQ + MongoDB")
	fs.IntVar(&c.Starters, "starters", c.Starters, "goroutines starting sagas at half load (full load has one per saga in flight)")
	fs.IntVar(&c.Partitions, "partitions", c.Partitions, "partitions per queue")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "actor passivation timeout in the saga sections")
	fs.IntVar(&c.Actors, "actors", c.Actors, "idle aggregate actors in the memory section")
	fs.DurationVar(&c.MemoryIdle, "memory-idle", c.MemoryIdle, "passivation timeout in the memory section (must outlast sending the commands)")
	fs.IntVar(&c.RecoverySagas, "recovery-sagas", c.RecoverySagas, "sagas in flight when the recovery section kills the engine")
	fs.DurationVar(&c.RecoveryTimeout, "recovery-timeout", c.RecoveryTimeout, "longest wait for the sagas after the restart")
	fs.StringVar(&c.AMQPURL, "amqp-url", c.AMQPURL, "RabbitMQ URL (env SAGAFLOW_AMQP_URL)")
	fs.StringVar(&c.MongoURI, "mongo-uri", c.MongoURI, "MongoDB URI (env SAGAFLOW_MONGO_URI; empty: build and start tools/devmongo)")
	fs.StringVar(&c.DevMongo, "devmongo", "", "prebuilt tools/devmongo binary to start when no MongoDB URI is given")
	fs.BoolVar(&c.Verbose, "v", false, "log the engines' warnings")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.Sections = nil
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !slices.Contains(AllSections, s) {
			return Config{}, fmt.Errorf("-only: unknown section %q (want %s)", s, strings.Join(AllSections, ","))
		}
		c.Sections = append(c.Sections, s)
	}
	c.Compensation = nil
	for _, p := range strings.Split(*comp, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 100 {
			return Config{}, fmt.Errorf("-compensation: %q is not a percentage from 0 to 100", p)
		}
		c.Compensation = append(c.Compensation, n)
	}
	return c, c.Validate()
}

// Validate names every setting that cannot work.
func (c Config) Validate() error {
	var errs []error
	positive := map[string]time.Duration{
		"raw-duration": c.RawDuration, "duration": c.Duration, "drain": c.Drain,
		"idle-timeout": c.IdleTimeout, "memory-idle": c.MemoryIdle, "recovery-timeout": c.RecoveryTimeout,
	}
	for name, d := range positive {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("-%s %v: must be positive", name, d))
		}
	}
	if c.Warmup < 0 {
		errs = append(errs, fmt.Errorf("-warmup %v: must not be negative", c.Warmup))
	}
	ints := map[string]int{
		"window-embedded": c.WindowEmbedded, "window-distributed": c.WindowDistributed, "starters": c.Starters,
		"partitions": c.Partitions, "actors": c.Actors, "recovery-sagas": c.RecoverySagas,
	}
	for name, n := range ints {
		if n < 1 {
			errs = append(errs, fmt.Errorf("-%s %d: must be at least 1", name, n))
		}
	}
	if len(c.Compensation) == 0 {
		errs = append(errs, errors.New("-compensation: give at least one percentage"))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("bench config: %w", errors.Join(errs...))
}

// runs reports whether section s is selected.
func (c Config) runs(s string) bool { return slices.Contains(c.Sections, s) }
