package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestStoreLoadFromSamples(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	// The embedded writer: 8 s of a 10 s window in 40 batches of 1,000
	// writes and 512 KiB of log, 6 s of it writing the log and syncing;
	// flushes and compactions wrote 10,240 KiB of tables; 1,280 sagas
	// finished in the window.
	from := &storeSample{at: t0, txs: 10, requests: 100, walBytes: 50 << 10, tableBytes: 7 << 10, busy: time.Second, syncWait: time.Second / 2}
	to := &storeSample{at: t0.Add(10 * time.Second), txs: 50, requests: 40_100, walBytes: (50 + 40*512) << 10, tableBytes: (7 + 10_240) << 10, busy: 9 * time.Second, syncWait: 6*time.Second + time.Second/2}
	got := storeLoad(nil, from, to, nil, 100, 1280)
	want := StoreLoad{WriterBusy: 0.8, TxMillis: 200, SyncShare: 0.75, RequestsPerTx: 1000, WALKiBPerTx: 512, WALKiBPerSaga: 16, TableKiBPerSaga: 8}
	if got == nil || !approxEqual(got.WriterBusy, want.WriterBusy) || !approxEqual(got.TxMillis, want.TxMillis) || !approxEqual(got.SyncShare, want.SyncShare) ||
		got.RequestsPerTx != want.RequestsPerTx || got.WALKiBPerTx != want.WALKiBPerTx || got.Commands != 0 ||
		got.WALKiBPerSaga != want.WALKiBPerSaga || got.TableKiBPerSaga != want.TableKiBPerSaga {
		t.Fatalf("embedded load = %+v, want %+v", got, want)
	}
	if d := got.describe(); !strings.Contains(d, "writer busy 80% of the window; a batch 200.00 ms (75% of it writing the log and syncing), 1000 writes, 512 KiB of log; read amplification 0; a saga wrote 16.0 KiB of log and 8.0 KiB of tables") {
		t.Errorf("described as %q", d)
	}

	// MongoDB: 10 sagas, 300 commands of 2 ms each.
	var c commandCounter
	before := c.sample()
	for range 100 {
		c.add("find", 2*time.Millisecond)
		c.add("insert", 2*time.Millisecond)
		c.add("getMore", 2*time.Millisecond)
	}
	after := c.sample()
	got = storeLoad(&before, nil, nil, &after, 10, 0)
	if got == nil || got.Commands != 30 || got.Finds != 10 || got.Inserts != 10 || got.Updates != 0 || got.Deletes != 0 ||
		!approxEqual(got.CommandMillis, 2) || got.WriterBusy != 0 {
		t.Fatalf("MongoDB load = %+v, want 30 commands per saga (10 finds, 10 inserts, 10 others) of 2 ms", got)
	}

	if got := storeLoad(nil, nil, nil, nil, 10, 10); got != nil {
		t.Errorf("load of an unsampled store = %+v, want nil", got)
	}
}

func approxEqual(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
