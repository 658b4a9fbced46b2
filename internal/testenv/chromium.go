package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// chromiumNames are the executables Chromium goes by, in the order they
// are tried; Debian's chromium package installs /usr/bin/chromium.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Chromium returns the path of a Chromium (or Chrome) executable for
// browser tests: SAGAFLOW_CHROMIUM when set, otherwise the first of
// chromium, chromium-browser, google-chrome found on PATH. Without one the
// test fails in CI and is skipped elsewhere (scripts/test.sh installs
// Debian's chromium package).
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SAGAFLOW_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			Unavailable(t, "SAGAFLOW_CHROMIUM=%s: %v", p, err)
			return ""
		}
		return p
	}
	for _, name := range chromiumNames {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	Unavailable(t, "no Chromium found (looked for %v on PATH); install it (apt-get install -y chromium; scripts/test.sh does) or set SAGAFLOW_CHROMIUM", chromiumNames)
	return ""
}
