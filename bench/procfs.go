package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// memSample is a process's resident memory, from /proc/self/status, and
// the Go heap in use.
type memSample struct {
	RSS, Anon, File, Heap, Stacks uint64 // bytes
}

// sampleMemory collects garbage, returns freed memory to the OS (so that
// RSS reflects what is live, not what the runtime kept for later) and
// reads the process's memory.
func sampleMemory() (memSample, error) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s, err := readStatus("/proc/self/status")
	if err != nil {
		return memSample{}, err
	}
	s.Heap, s.Stacks = ms.HeapInuse, ms.StackInuse
	return s, nil
}

// readStatus reads VmRSS, RssAnon and RssFile from a /proc status file.
func readStatus(path string) (memSample, error) {
	f, err := os.Open(path)
	if err != nil {
		return memSample{}, fmt.Errorf("read memory of the process: %w", err)
	}
	defer f.Close()
	var s memSample
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch key {
		case "VmRSS":
			dst = &s.RSS
		case "RssAnon":
			dst = &s.Anon
		case "RssFile":
			dst = &s.File
		default:
			continue
		}
		fields := strings.Fields(rest) // "12345 kB"
		if len(fields) == 0 {
			continue
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return memSample{}, fmt.Errorf("parse %s in %s: %w", key, path, err)
		}
		*dst = kb << 10
	}
	if err := sc.Err(); err != nil {
		return memSample{}, fmt.Errorf("read %s: %w", path, err)
	}
	if s.RSS == 0 {
		return memSample{}, fmt.Errorf("no VmRSS in %s (not Linux?)", path)
	}
	return s, nil
}
