package engine

import "testing"

// FuzzParseAggregateAt: the version and at query parameters of GET
// /v1/aggregates/{service}/{id} give a point or an error, never a panic,
// never both a version and a time.
func FuzzParseAggregateAt(f *testing.F) {
	f.Add("3", "")
	f.Add("", "2026-03-01T12:00:00Z")
	f.Add("1", "2026-03-01T12:00:00Z")
	f.Add("-1", "yesterday")
	f.Add("18446744073709551616", "")
	f.Fuzz(func(t *testing.T, version, at string) {
		p, err := parseAggregateAt(version, at)
		if err != nil {
			return
		}
		if p.Version != 0 && !p.Time.IsZero() {
			t.Fatalf("parseAggregateAt(%q, %q) = %+v: both a version and a time", version, at, p)
		}
		if version != "" && p.Version == 0 {
			t.Fatalf("parseAggregateAt(%q, %q) accepted version 0", version, at)
		}
	})
}
