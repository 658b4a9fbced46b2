// Command reliability fills the "Last result" column of docs/RELIABILITY.md
// from the output of a verbose test run.
//
// Run the suite verbosely, keep its output, then fill the table:
//
//	CI=true scripts/test.sh -v 2>&1 | tee /tmp/suite.log
//	go run ./scripts/reliability -log /tmp/suite.log -date 2026-12-01
//
// Every table row names its tests in backticks (`TestX`, `FuzzY`, or
// `TestX/sub`); the last column becomes "pass, N s" (the durations of the
// named tests added up), "FAIL: TestX" when any failed, or "not in the log"
// when the run did not include a named test. Rows without test names keep
// their last column.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// resultLine matches go test -v's verdict lines, at any subtest depth:
// "--- PASS: TestX (1.23s)".
var resultLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+)s\)`)

// testName matches a test or fuzz target named in a table cell.
var testName = regexp.MustCompile("`((?:Test|Fuzz)[A-Za-z0-9_]+(?:/[^`]+)?)`")

// outcome is one test's verdict in the log.
type outcome struct {
	verdict string
	seconds float64
}

func main() {
	logPath := flag.String("log", "", "output of a verbose go test run (required)")
	docPath := flag.String("doc", "docs/RELIABILITY.md", "the document whose table is filled")
	date := flag.String("date", time.Now().UTC().Format("2006-01-02"), "date written into each result")
	flag.Parse()
	if *logPath == "" {
		fmt.Fprintln(os.Stderr, "reliability: -log is required (the output of scripts/test.sh -v)")
		os.Exit(2)
	}
	if err := run(*logPath, *docPath, *date); err != nil {
		slog.Error("reliability: filling the table failed", "err", err)
		os.Exit(1)
	}
}

func run(logPath, docPath, date string) error {
	results, err := readResults(logPath)
	if err != nil {
		return err
	}
	if len(results) == 0 {
		return fmt.Errorf("read %s: no --- PASS/FAIL lines (was the run verbose, -v?)", logPath)
	}
	doc, err := os.ReadFile(docPath)
	if err != nil {
		return fmt.Errorf("read the document: %w", err)
	}
	var out bytes.Buffer
	filled := 0
	for _, line := range strings.SplitAfter(string(doc), "\n") {
		newLine, ok := fillRow(line, results, date)
		if ok {
			filled++
		}
		out.WriteString(newLine)
	}
	if filled == 0 {
		return fmt.Errorf("%s: no table row names a test", docPath)
	}
	if err := os.WriteFile(docPath, out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write the document: %w", err)
	}
	fmt.Printf("filled %d rows of %s from %s\n", filled, docPath, logPath)
	return nil
}

// readResults maps every test name in the log to its verdict. A test that
// ran more than once keeps its worst verdict and its longest duration.
func readResults(path string) (map[string]outcome, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open the log: %w", err)
	}
	defer f.Close()
	results := map[string]outcome{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := resultLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		secs, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			return nil, fmt.Errorf("log line %q: duration: %w", sc.Text(), err)
		}
		prev, seen := results[m[2]]
		if seen && (prev.verdict == "FAIL" || (prev.verdict == m[1] && prev.seconds >= secs)) {
			continue
		}
		results[m[2]] = outcome{verdict: m[1], seconds: secs}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the log: %w", err)
	}
	return results, nil
}

// fillRow rewrites the last cell of a table row that names tests. It
// reports whether the row was one.
func fillRow(line string, results map[string]outcome, date string) (string, bool) {
	trimmed := strings.TrimRight(line, "\n")
	if !strings.HasPrefix(trimmed, "|") || !strings.HasSuffix(trimmed, "|") {
		return line, false
	}
	cells := strings.Split(trimmed, "|")
	// cells[0] and cells[len-1] are empty (outside the pipes).
	if len(cells) < 4 {
		return line, false
	}
	var names []string
	for _, cell := range cells[1 : len(cells)-2] {
		for _, m := range testName.FindAllStringSubmatch(cell, -1) {
			names = append(names, m[1])
		}
	}
	if len(names) == 0 {
		return line, false
	}
	cells[len(cells)-2] = " " + verdict(names, results, date) + " "
	return strings.Join(cells, "|") + strings.TrimPrefix(line, trimmed), true
}

// verdict sums up the named tests' outcomes for one row.
func verdict(names []string, results map[string]outcome, date string) string {
	var failed, missing, skipped []string
	total := 0.0
	for _, name := range names {
		o, ok := results[name]
		switch {
		case !ok:
			missing = append(missing, name)
		case o.verdict == "FAIL":
			failed = append(failed, name)
		case o.verdict == "SKIP":
			skipped = append(skipped, name)
		default:
			total += o.seconds
		}
	}
	switch {
	case len(failed) > 0:
		return fmt.Sprintf("FAIL: %s (%s)", strings.Join(failed, ", "), date)
	case len(skipped) > 0:
		return fmt.Sprintf("skipped: %s (%s)", strings.Join(skipped, ", "), date)
	case len(missing) > 0:
		return fmt.Sprintf("not in the log: %s", strings.Join(missing, ", "))
	default:
		return fmt.Sprintf("pass, %.1f s (%s)", total, date)
	}
}
