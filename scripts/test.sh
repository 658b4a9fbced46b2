#!/usr/bin/env bash
# Runs every test of sagaflow on a fresh machine: checks formatting and vet,
# then the whole suite with the race detector. It sets up what the tests
# need by itself; today that is only the Go toolchain (the embedded store
# and the in-process transport need no services).
#
# Usage: scripts/test.sh [extra go test flags]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
	if [ -x /usr/local/go/bin/go ]; then
		export PATH="/usr/local/go/bin:$PATH"
	else
		echo "test.sh: Go is not installed (need Go 1.26)" >&2
		exit 1
	fi
fi

echo "== go mod download"
go mod download

echo "== gofmt"
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
if [ -n "$unformatted" ]; then
	echo "these files need gofmt:" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 15m "$@" ./...
