#!/usr/bin/env bash
# Runs every test of sagaflow on a fresh machine: formatting, vet, and the
# whole suite with the race detector. It sets up what the tests need:
#
#   - RabbitMQ: SAGAFLOW_AMQP_URL when set; otherwise the broker on
#     127.0.0.1:5672 (guest/guest), started with `rabbitmq-server -detached`
#     when it is down and installed with apt-get where it is missing.
#   - MongoDB: SAGAFLOW_MONGO_URI when set; otherwise it builds
#     tools/devmongo (FerretDB on SQLite), starts it on a free loopback port
#     with its data in a temporary directory, and stops it afterwards.
#   - Chromium (the web console's browser test): SAGAFLOW_CHROMIUM when
#     set, otherwise chromium on PATH, installed with apt-get where missing.
#
# With CI=true a service that cannot be reached fails the run; tests never
# skip silently there.
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

workdir="$(mktemp -d)"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$workdir"
}
trap cleanup EXIT

# port_free PORT: nothing accepts connections on 127.0.0.1:PORT.
port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_devmongo() {
	echo "== building tools/devmongo (FerretDB on SQLite, patched: tools/devmongo/build.sh)"
	tools/devmongo/build.sh "$workdir/devmongo"
	# The test that kills a MongoDB server starts its own from this binary.
	export SAGAFLOW_DEVMONGO_BIN="$workdir/devmongo"
	local port
	for port in $(seq 27018 27099); do
		if port_free "$port"; then
			break
		fi
	done
	"$workdir/devmongo" -listen "127.0.0.1:$port" -dir "$workdir/mongo-data" >"$workdir/devmongo.out" 2>"$workdir/devmongo.err" &
	pids+=("$!")
	for _ in $(seq 1 600); do
		if grep -q '^ready ' "$workdir/devmongo.out" 2>/dev/null; then
			export SAGAFLOW_MONGO_URI="mongodb://127.0.0.1:$port/"
			echo "== devmongo ready at $SAGAFLOW_MONGO_URI"
			return 0
		fi
		if ! kill -0 "${pids[-1]}" 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	echo "test.sh: devmongo did not start:" >&2
	cat "$workdir/devmongo.err" >&2
	return 1
}

ensure_rabbitmq() {
	if [ -n "${SAGAFLOW_AMQP_URL:-}" ]; then
		return 0
	fi
	if ! port_free 5672; then
		export SAGAFLOW_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/"
		return 0
	fi
	if ! command -v rabbitmq-server >/dev/null 2>&1; then
		echo "== installing rabbitmq-server with apt-get"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null || return 1
	fi
	echo "== starting rabbitmq-server"
	# Every partition is a quorum queue, which holds files open: with the
	# usual soft limit of 1,024 descriptors a broker that has a few hundred
	# queues (a few interrupted runs) stops answering new connections. Raise
	# the limit for the broker we start, up to the hard limit.
	(ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 20000 2>/dev/null || true
		rabbitmq-server -detached >/dev/null 2>&1) || true
	for _ in $(seq 1 120); do
		if ! port_free 5672; then
			rabbitmqctl await_startup >/dev/null 2>&1 || true
			export SAGAFLOW_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/"
			echo "== rabbitmq ready"
			return 0
		fi
		sleep 1
	done
	echo "test.sh: rabbitmq-server did not come up on 127.0.0.1:5672 within 120s" >&2
	return 1
}

ensure_chromium() {
	if [ -n "${SAGAFLOW_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; then
		return 0
	fi
	echo "== installing chromium with apt-get"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

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
(cd tools/devmongo && go vet ./...)

if [ -z "${SAGAFLOW_MONGO_URI:-}" ]; then
	if ! start_devmongo; then
		if [ "${CI:-}" = "true" ]; then
			echo "test.sh: no MongoDB for the tests, and CI=true: failing" >&2
			exit 1
		fi
		echo "test.sh: no MongoDB; the MongoDB tests will skip (set SAGAFLOW_MONGO_URI)" >&2
	fi
fi

if ! ensure_rabbitmq; then
	if [ "${CI:-}" = "true" ]; then
		echo "test.sh: no RabbitMQ for the tests, and CI=true: failing" >&2
		exit 1
	fi
	echo "test.sh: no RabbitMQ; the RabbitMQ tests will skip (set SAGAFLOW_AMQP_URL)" >&2
fi

if ! ensure_chromium; then
	if [ "${CI:-}" = "true" ]; then
		echo "test.sh: no Chromium for the console's browser test, and CI=true: failing" >&2
		exit 1
	fi
	echo "test.sh: no Chromium; the console's browser test will skip (set SAGAFLOW_CHROMIUM)" >&2
fi

# One package at a time (-p 1): the RabbitMQ recovery tests stop and start
# the broker and close every connection, and the MongoDB tests share one dev
# server; packages running side by side would disturb each other.
echo "== go test -race"
go test -race -count=1 -p 1 -timeout 60m "$@" ./...

# A short bounded run of every fuzz target (issue 11 item 13): one target
# per go test invocation, as go test -fuzz requires. SAGAFLOW_FUZZTIME
# sets the time per target (default 5s); failing inputs are written to the
# package's testdata/fuzz and then run by every go test.
fuzztime="${SAGAFLOW_FUZZTIME:-5s}"
echo "== go test -fuzz ($fuzztime per target)"
for target in \
	"./message/ FuzzUnmarshalEnvelope" \
	"./message/ FuzzRegistryDecode" \
	"./internal/recordjson/ FuzzUnmarshalEnvelope" \
	"./workflows/ FuzzSagaInput" \
	"./engine/ FuzzDecodeBody" \
	"./engine/ FuzzAdminHandlers" \
	"./engine/ FuzzParseAggregateAt" \
	"./shred/ FuzzOpen"; do
	set -- $target
	# Go 1.26's fuzz coordinator can fail a target with a bare "context
	# deadline exceeded" when -fuzztime ends while a worker is busy, having
	# found nothing (go.dev/issue/75804, fixed in Go 1.27). Such a run
	# writes no failing input: it is run once more. A run that writes a
	# failing input fails at once.
	corpus="$1testdata/fuzz/$2"
	before="$(ls "$corpus" 2>/dev/null | wc -l || true)"
	if ! go test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" "$1"; then
		if [ "$(ls "$corpus" 2>/dev/null | wc -l || true)" != "$before" ]; then
			echo "test.sh: $2 wrote a failing input to $corpus" >&2
			exit 1
		fi
		echo "== $2 failed without a failing input (go.dev/issue/75804); running it once more"
		go test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" "$1"
	fi
done
