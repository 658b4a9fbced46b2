package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"
)

func main() {
	if isChild() {
		os.Exit(childMain())
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	cfg, err := ParseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run runs the selected sections, prints the table to w and writes the
// JSON file. A section that cannot run is reported in the results; run
// fails only when the results cannot be written or the profile taken.
func run(ctx context.Context, cfg Config, w io.Writer) error {
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return fmt.Errorf("create CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	rep := Measure(ctx, cfg)
	if cfg.AllocProfile != "" {
		if err := writeProfile("heap", cfg.AllocProfile); err != nil {
			return err
		}
	}
	rep.PrintTable(w)
	if cfg.Out != "" {
		if err := rep.WriteJSON(cfg.Out); err != nil {
			return err
		}
		slog.Info("results written", "file", cfg.Out)
	}
	return nil
}

// newRunID returns a random name for this run's database and queues.
func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Measure runs the sections cfg selects and returns what they measured.
func Measure(ctx context.Context, cfg Config) *Report {
	started, ticks := time.Now(), readCPUTicks()
	runID := newRunID()
	rep := &Report{StartedAt: started, Host: thisHost(), Config: cfg, Formulas: formulas()}
	slog.Info("sagaflow bench", "run", runID, "sections", cfg.Sections)

	// Services, found once.
	needRabbit := cfg.runs(SectionRaw) || cfg.runs(SectionDistributed)
	var rabbitErr, mongoErr error
	if needRabbit {
		rabbitErr = checkRabbit(cfg.AMQPURL)
	}
	mongoURI := cfg.MongoURI
	if needRabbit { // the same sections need MongoDB
		if mongoURI == "" {
			dm, err := startDevMongo(ctx, cfg.DevMongo)
			if err != nil {
				mongoErr = err
			} else {
				defer dm.stop()
				mongoURI = dm.uri
				slog.Info("devmongo started", "uri", mongoURI)
			}
		}
		if mongoErr == nil {
			mongoErr = checkMongo(ctx, mongoURI)
		}
	}

	if cfg.runs(SectionRaw) && ctx.Err() == nil {
		slog.Info("raw: RabbitMQ request/reply")
		if rabbitErr != nil {
			rep.Raw.RabbitMQ = &RabbitResult{Status: unavailable(rabbitErr)}
		} else {
			rep.Raw.RabbitMQ = rawRabbit{url: cfg.AMQPURL, name: "sfbench-" + runID + "-raw", dur: cfg.RawDuration}.run(ctx)
		}
		slog.Info("raw: MongoDB inserts")
		if mongoErr != nil {
			rep.Raw.MongoDB = &MongoResult{Status: unavailable(mongoErr)}
		} else {
			rep.Raw.MongoDB = rawMongo{uri: mongoURI, db: "sagaflow_bench_raw_" + runID, dur: cfg.RawDuration}.run(ctx)
		}
		slog.Info("raw: embedded store")
		rep.Raw.Embedded = rawEmbedded{dur: cfg.RawDuration, writers: 256}.run(ctx)
		slog.Info("raw: disk")
		rep.Raw.Disk = rawDisk{dur: cfg.RawDuration}.run(ctx)
	}
	rep.SagaSections = map[string]string{}
	if cfg.runs(SectionEmbedded) && ctx.Err() == nil {
		rep.Sagas = append(rep.Sagas, runEmbeddedSagas(ctx, cfg, runID)...)
	}
	if cfg.runs(SectionDistributed) && ctx.Err() == nil {
		switch {
		case rabbitErr != nil:
			rep.SagaSections[BackendDistributed] = string(unavailable(rabbitErr))
		case mongoErr != nil:
			rep.SagaSections[BackendDistributed] = string(unavailable(mongoErr))
		default:
			rep.Sagas = append(rep.Sagas, runDistributedSagas(ctx, cfg, runID, cfg.AMQPURL, mongoURI)...)
		}
	}
	if len(rep.SagaSections) == 0 {
		rep.SagaSections = nil
	}
	if cfg.runs(SectionMemory) && ctx.Err() == nil {
		slog.Info("memory", "actors", cfg.Actors, "idle_timeout", cfg.MemoryIdle)
		rep.Memory = runMemory(cfg, runID)
	}
	if cfg.runs(SectionRecovery) && ctx.Err() == nil {
		slog.Info("recovery", "sagas", cfg.RecoverySagas)
		rep.Recovery = runRecovery(cfg, runID)
	}
	applyLimits(rep)
	rep.Seconds = time.Since(started).Seconds()
	rep.Host.StealShare = stealShare(ticks, readCPUTicks())
	return rep
}
