package main

import (
	"fmt"
	"os"
	"syscall"
)

// syncData flushes f's data (fdatasync, as bbolt does on Linux).
func syncData(f *os.File) error {
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("fdatasync: %w", err)
	}
	return nil
}
