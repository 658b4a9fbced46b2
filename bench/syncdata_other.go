//go:build !linux

package main

import (
	"fmt"
	"os"
)

// syncData flushes f (fsync where there is no fdatasync).
func syncData(f *os.File) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	return nil
}
