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

// cpuTicks is the machine's CPU time from /proc/stat, in clock ticks: all
// of it, and the part stolen by the hypervisor for other guests.
type cpuTicks struct{ total, steal uint64 }

// readCPUTicks reads the first line of /proc/stat. On a system without it
// the ticks are zero (and stealShare reports nothing).
func readCPUTicks() cpuTicks {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTicks{}
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return cpuTicks{}
	}
	var t cpuTicks
	// user nice system idle iowait irq softirq steal [guest guest_nice,
	// which user and nice already count]
	for i, f := range fields[1:9] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return cpuTicks{}
		}
		t.total += n
		if i == 7 {
			t.steal = n
		}
	}
	return t
}

// stealShare is the share of the machine's CPU time the hypervisor gave
// to other guests between from and to: on a shared virtual machine, a run
// with a high share measured a slower machine.
func stealShare(from, to cpuTicks) float64 {
	if to.total <= from.total {
		return 0
	}
	return float64(to.steal-from.steal) / float64(to.total-from.total)
}
