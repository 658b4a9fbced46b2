package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFillRowSumsPassesAndNamesFailures(t *testing.T) {
	results := map[string]outcome{
		"TestA":       {"PASS", 1.5},
		"TestB":       {"PASS", 2},
		"TestC":       {"FAIL", 3},
		"TestD/mongo": {"SKIP", 0},
	}
	cases := []struct{ row, want string }{
		{"| 1 | x | `engine` `TestA`, `TestB` | old |\n", "| 1 | x | `engine` `TestA`, `TestB` | pass, 3.5 s (d) |\n"},
		{"| 2 | x | `TestA` `TestC` | old |\n", "| 2 | x | `TestA` `TestC` | FAIL: TestC (d) |\n"},
		{"| 3 | x | `TestZ` | old |\n", "| 3 | x | `TestZ` | not in the log: TestZ |\n"},
		{"| 4 | x | `TestD/mongo` | old |\n", "| 4 | x | `TestD/mongo` | skipped: TestD/mongo (d) |\n"},
	}
	for _, c := range cases {
		got, ok := fillRow(c.row, results, "d")
		if !ok || got != c.want {
			t.Errorf("fillRow(%q) = %q, %v; want %q", c.row, got, ok, c.want)
		}
	}
	for _, row := range []string{"| # | Scenario | Test | Last result |\n", "text `TestA`\n", "|---|---|---|---|\n"} {
		if got, ok := fillRow(row, results, "d"); ok || got != row {
			t.Errorf("fillRow(%q) changed a row that names no test: %q", row, got)
		}
	}
}

func TestRunFillsTheDocumentFromAVerboseLog(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "suite.log")
	docPath := filepath.Join(dir, "doc.md")
	log := "=== RUN   TestA\n--- PASS: TestA (0.50s)\n=== RUN   TestB\n    --- FAIL: TestB/sub (1.00s)\n"
	doc := "# t\n\n| # | s | test | result |\n|---|---|---|---|\n| 1 | a | `TestA` | - |\n| 2 | b | `TestB/sub` | - |\n"
	if err := os.WriteFile(logPath, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(docPath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(logPath, docPath, "d"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(docPath)
	for _, want := range []string{"| `TestA` | pass, 0.5 s (d) |", "| `TestB/sub` | FAIL: TestB/sub (d) |"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("document lacks %q:\n%s", want, got)
		}
	}
	if err := os.WriteFile(logPath, []byte("ok  pkg 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(logPath, docPath, "d"); err == nil || !strings.Contains(err.Error(), "-v") {
		t.Errorf("a log without verdict lines: err %v, want one asking for -v", err)
	}
}
