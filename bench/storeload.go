package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/sagaflow/sagaflow/store/embedded"
)

// StoreLoad is what the store behind the engine did in a saga phase, the
// figures that say what limited it. The embedded store has one writer
// goroutine, so how much of the measurement window it spent in write
// transactions says how close the store was to its limit; MongoDB's
// figure is the server commands the store sent (each one a round trip and
// work on the server), per saga.
type StoreLoad struct {
	// WriterBusy is the share of the measurement window the embedded
	// store's writer spent on write batches. A group commit's writer
	// is busy whenever commits keep coming (each batch takes what arrived
	// during the one before), so near 1 it says the load was continuous;
	// TxMillis, what each commit waits for, says what it cost.
	WriterBusy float64 `json:"writer_busy,omitempty"`
	// TxMillis is the mean time of one write batch: a commit waits for
	// the rest of the one under way and then its own.
	TxMillis float64 `json:"transaction_ms,omitempty"`
	// SyncShare is the share of that time spent writing the batch to the
	// write-ahead log and syncing it; the rest is checking and applying
	// the requests.
	SyncShare float64 `json:"sync_share,omitempty"`
	// RequestsPerTx is the writes (commits and outbox marks) in an average
	// batch of the window, and WALKiBPerTx the log bytes it wrote.
	RequestsPerTx float64 `json:"requests_per_transaction,omitempty"`
	WALKiBPerTx   float64 `json:"wal_kib_per_transaction,omitempty"`
	// WALKiBPerSaga and TableKiBPerSaga are what the store wrote in the
	// window per saga finished in it: to its write-ahead log, and to its
	// tables by flushes and compactions. Unlike times, they do not move
	// with the machine's speed.
	WALKiBPerSaga   float64 `json:"wal_kib_per_saga,omitempty"`
	TableKiBPerSaga float64 `json:"table_kib_per_saga,omitempty"`
	// ReadAmp is the embedded store's read amplification at the window's
	// end: the places a lookup of a missing key probes.
	ReadAmp int `json:"read_amp,omitempty"`

	// Commands is the MongoDB server commands per saga over the phase,
	// and Finds, Inserts, Updates and Deletes the commands of each kind
	// (the rest are aggregates, counts and the like).
	Commands float64 `json:"db_commands_per_saga,omitempty"`
	Finds    float64 `json:"db_finds_per_saga,omitempty"`
	Inserts  float64 `json:"db_inserts_per_saga,omitempty"`
	Updates  float64 `json:"db_updates_per_saga,omitempty"`
	Deletes  float64 `json:"db_deletes_per_saga,omitempty"`
	// CommandMillis is a command's mean round trip as the store saw it.
	CommandMillis float64 `json:"db_command_ms,omitempty"`
}

// storeSample is the store's running totals at one moment.
type storeSample struct {
	at time.Time
	// The embedded store's writer.
	txs, requests, walBytes, tableBytes int64
	busy, syncWait                      time.Duration
	readAmp                             int
	// The machine's CPU time, and the harness process's (user and system;
	// the process hosts the engine) and the bytes it has allocated.
	cpu       cpuTicks
	process   time.Duration
	allocated uint64
	// The MongoDB store's server commands.
	commands commandTotals
}

// embeddedSampler samples st's writer.
func embeddedSampler(st *embedded.Store) func() storeSample {
	return func() storeSample {
		s := st.Stats()
		return storeSample{
			at: time.Now(), txs: int64(s.Batches), requests: int64(s.Requests), walBytes: int64(s.WALBytes),
			tableBytes: int64(s.TableBytes),
			busy:       s.Busy, syncWait: s.SyncWait, readAmp: s.ReadAmp,
		}
	}
}

// commandKinds are the command names counted on their own.
var commandKinds = [...]string{"find", "insert", "update", "delete"}

// commandCounter counts the commands a MongoDB client sends, by kind, and
// their round trips. Its Monitor goes to mongo.WithCommandMonitor.
type commandCounter struct {
	byKind [len(commandKinds) + 1]atomic.Int64 // the last: every other command
	nanos  atomic.Int64
}

// commandTotals is a copy of a commandCounter's counts.
type commandTotals struct {
	byKind [len(commandKinds) + 1]int64
	time   time.Duration
}

func (t commandTotals) total() int64 {
	var n int64
	for _, k := range t.byKind {
		n += k
	}
	return n
}

// Monitor returns the driver monitor that feeds c.
func (c *commandCounter) Monitor() *event.CommandMonitor {
	return &event.CommandMonitor{
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) { c.add(e.CommandName, e.Duration) },
		Failed:    func(_ context.Context, e *event.CommandFailedEvent) { c.add(e.CommandName, e.Duration) },
	}
}

func (c *commandCounter) add(name string, d time.Duration) {
	i := len(commandKinds)
	for k, kind := range commandKinds {
		if strings.EqualFold(name, kind) {
			i = k
			break
		}
	}
	c.byKind[i].Add(1)
	c.nanos.Add(int64(d))
}

// sample returns c's totals now.
func (c *commandCounter) sample() storeSample {
	s := storeSample{at: time.Now()}
	for i := range c.byKind {
		s.commands.byKind[i] = c.byKind[i].Load()
	}
	s.commands.time = time.Duration(c.nanos.Load())
	return s
}

// storeLoad computes a phase's StoreLoad: the writer's figures from the
// samples at the window's start and end (over windowSagas, the sagas
// finished in the window), the commands per saga from the samples at the
// phase's start and end, over sagas finished sagas. Nil when the store was
// not sampled.
func storeLoad(phaseFrom, winFrom, winTo, phaseTo *storeSample, sagas, windowSagas int) *StoreLoad {
	var l StoreLoad
	if winFrom != nil && winTo != nil {
		if span := winTo.at.Sub(winFrom.at); span > 0 && winTo.txs > winFrom.txs {
			busy := winTo.busy - winFrom.busy
			txs := float64(winTo.txs - winFrom.txs)
			l.WriterBusy = busy.Seconds() / span.Seconds()
			l.TxMillis = busy.Seconds() * 1000 / txs
			if busy > 0 {
				l.SyncShare = (winTo.syncWait - winFrom.syncWait).Seconds() / busy.Seconds()
			}
			l.RequestsPerTx = float64(winTo.requests-winFrom.requests) / txs
			l.WALKiBPerTx = float64(winTo.walBytes-winFrom.walBytes) / 1024 / txs
			l.ReadAmp = winTo.readAmp
		}
		if windowSagas > 0 {
			l.WALKiBPerSaga = float64(winTo.walBytes-winFrom.walBytes) / 1024 / float64(windowSagas)
			l.TableKiBPerSaga = float64(winTo.tableBytes-winFrom.tableBytes) / 1024 / float64(windowSagas)
		}
	}
	if phaseFrom != nil && phaseTo != nil && sagas > 0 {
		n := phaseTo.commands.total() - phaseFrom.commands.total()
		per := func(i int) float64 {
			return float64(phaseTo.commands.byKind[i]-phaseFrom.commands.byKind[i]) / float64(sagas)
		}
		if n > 0 {
			l.Commands = float64(n) / float64(sagas)
			l.Finds, l.Inserts, l.Updates, l.Deletes = per(0), per(1), per(2), per(3)
			l.CommandMillis = (phaseTo.commands.time - phaseFrom.commands.time).Seconds() * 1000 / float64(n)
		}
	}
	if l == (StoreLoad{}) {
		return nil
	}
	return &l
}

// describe is l as one line of the table.
func (l *StoreLoad) describe() string {
	var parts []string
	if l.RequestsPerTx > 0 {
		parts = append(parts, fmt.Sprintf("writer busy %.0f%% of the window; a batch %.2f ms (%.0f%% of it writing the log and syncing), %.0f writes, %.0f KiB of log; read amplification %d; a saga wrote %.1f KiB of log and %.1f KiB of tables",
			100*l.WriterBusy, l.TxMillis, 100*l.SyncShare, l.RequestsPerTx, l.WALKiBPerTx, l.ReadAmp, l.WALKiBPerSaga, l.TableKiBPerSaga))
	}
	if l.Commands > 0 {
		parts = append(parts, fmt.Sprintf("%.1f server commands per saga (find %.1f, insert %.1f, update %.1f, delete %.1f), %.2f ms each on average",
			l.Commands, l.Finds, l.Inserts, l.Updates, l.Deletes, l.CommandMillis))
	}
	return strings.Join(parts, "; ")
}
