package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestStoreLoadFromSamples(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	// The embedded writer: 8 s of a 10 s window in 40 transactions of
	// 1,000 writes and 500 pages, 6 s of it writing pages.
	from := &storeSample{at: t0, txs: 10, requests: 100, pages: 50, busy: time.Second, pageWrite: time.Second / 2}
	to := &storeSample{at: t0.Add(10 * time.Second), txs: 50, requests: 40_100, pages: 20_050, busy: 9 * time.Second, pageWrite: 6*time.Second + time.Second/2}
	got := storeLoad(nil, from, to, nil, 100)
	want := StoreLoad{WriterBusy: 0.8, TxMillis: 200, PageWriteShare: 0.75, RequestsPerTx: 1000, PagesPerTx: 500}
	if got == nil || !approxEqual(got.WriterBusy, want.WriterBusy) || !approxEqual(got.TxMillis, want.TxMillis) || !approxEqual(got.PageWriteShare, want.PageWriteShare) ||
		got.RequestsPerTx != want.RequestsPerTx || got.PagesPerTx != want.PagesPerTx || got.Commands != 0 {
		t.Fatalf("embedded load = %+v, want %+v", got, want)
	}
	if d := got.describe(); !strings.Contains(d, "writer busy 80% of the window; a transaction 200.0 ms (75% of it writing pages and syncing), 1000 writes, 500 pages") {
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
	got = storeLoad(&before, nil, nil, &after, 10)
	if got == nil || got.Commands != 30 || got.Finds != 10 || got.Inserts != 10 || got.Updates != 0 || got.Deletes != 0 ||
		!approxEqual(got.CommandMillis, 2) || got.WriterBusy != 0 {
		t.Fatalf("MongoDB load = %+v, want 30 commands per saga (10 finds, 10 inserts, 10 others) of 2 ms", got)
	}

	if got := storeLoad(nil, nil, nil, nil, 10); got != nil {
		t.Errorf("load of an unsampled store = %+v, want nil", got)
	}
}

func approxEqual(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
