package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// rawDisk measures what a durable write costs on the file system the
// embedded store uses (the temporary directory's): appending to a file
// and syncing it, as a write-ahead log's group commit does (the embedded
// store's Pebble), and overwriting scattered pages and syncing, as a
// B+tree transaction such as bbolt's does (stored format 1; kept as the
// figure that says why the store moved). They bound any embedded store on
// this disk: a commit is durable only after a sync.
type rawDisk struct {
	dur time.Duration
}

// Sizes of the disk measurements.
const (
	diskSmallAppend = 4 << 10
	diskLargeAppend = 1 << 20
	diskPages       = 512 // about what one bbolt transaction wrote at full load
	diskPageSize    = 4 << 10
	diskPageSpan    = 16384 // pages of the file the page writes land in (64 MiB)
)

func (r rawDisk) run(ctx context.Context) *DiskRawResult {
	res := &DiskRawResult{Status: StatusOK, Pages: diskPages}
	dir, err := os.MkdirTemp("", "sagaflow-bench-disk-")
	if err != nil {
		res.Status = failed(err)
		return res
	}
	defer os.RemoveAll(dir)
	f, err := os.Create(dir + "/disk")
	if err != nil {
		res.Status = failed(err)
		return res
	}
	defer f.Close()
	each := r.dur / 3
	small := make([]byte, diskSmallAppend)
	large := make([]byte, diskLargeAppend)
	page := make([]byte, diskPageSize)
	steps := []struct {
		out  *Millis
		step func(i int) error
	}{
		{&res.AppendSmall, func(int) error { return appendSync(f, small) }},
		{&res.AppendLarge, func(int) error { return appendSync(f, large) }},
		{&res.ScatteredPages, func(i int) error {
			// A different spread of pages each time, over 64 MiB, in
			// ascending order (bbolt writes a transaction's pages sorted).
			for p := range diskPages {
				off := int64((p*diskPageSpan/diskPages+i*7919)%diskPageSpan) * diskPageSize
				if _, err := f.WriteAt(page, off); err != nil {
					return fmt.Errorf("write page: %w", err)
				}
			}
			return syncData(f)
		}},
	}
	for _, s := range steps {
		ms, err := timeEach(ctx, each, s.step)
		if err != nil {
			res.Status = failed(err)
			return res
		}
		*s.out = ms
	}
	return res
}

// appendSync appends b to f and syncs f's data.
func appendSync(f *os.File, b []byte) error {
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("append: %w", err)
	}
	return syncData(f)
}

// timeEach runs step again and again for d (at least 3 times, at most
// 100,000) and returns the mean time of one.
func timeEach(ctx context.Context, d time.Duration, step func(i int) error) (Millis, error) {
	start := time.Now()
	n := 0
	for ; n < 100_000 && (n < 3 || time.Since(start) < d); n++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := step(n); err != nil {
			return 0, err
		}
	}
	return millis(time.Since(start) / time.Duration(n)), nil
}
