#!/usr/bin/env bash
# Runs the B customers email campaign as separate processes: the customer,
# classification, campaign and mailer services (and an SMTP sink for the
# mailer) over RabbitMQ and MongoDB; seeds demo data, waits for the
# campaigns' reports, prints them and stops everything it started.
#
#   examples/emailcampaign/run-distributed.sh            # 200 customers, 2 campaigns
#   CUSTOMERS=1000 CAMPAIGNS=3 examples/emailcampaign/run-distributed.sh
#
# RabbitMQ: SAGAFLOW_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/).
# MongoDB: SAGAFLOW_MONGO_URI, or else tools/devmongo (FerretDB on SQLite),
# built and started on a free loopback port like scripts/test.sh does.
# Every run names its RabbitMQ topology and its MongoDB databases uniquely
# and deletes the topology afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."

export SAGAFLOW_AMQP_URL="${SAGAFLOW_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
run="ec$(date +%s)$RANDOM"
export EMAILCAMPAIGN_TOPOLOGY="$run" EMAILCAMPAIGN_DATABASE="$run" EMAILCAMPAIGN_PARTITIONS=4
work="$(mktemp -d)"
pids=()

cleanup() {
	local status=$?
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	if [[ -x "$work/bin/emailcampaign" ]]; then
		"$work/bin/emailcampaign" teardown >/dev/null 2>&1 || echo "run-distributed: could not delete topology $run" >&2
	fi
	if [[ $status -ne 0 ]]; then
		echo "run-distributed: failed; the services' logs:" >&2
		tail -n 20 "$work"/*.log >&2 2>/dev/null || true
	fi
	rm -rf "$work"
	exit $status
}
trap cleanup EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for FILE PATTERN PID: until FILE has a line matching PATTERN (60s).
wait_for() {
	for _ in $(seq 1 600); do
		if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
		if ! kill -0 "$3" 2>/dev/null; then break; fi
		sleep 0.1
	done
	echo "run-distributed: $1: no '$2'" >&2
	return 1
}

echo "== building the services"
mkdir -p "$work/bin"
go build -o "$work/bin/" ./examples/emailcampaign/cmd/...

if [[ -z "${SAGAFLOW_MONGO_URI:-}" ]]; then
	echo "== building and starting tools/devmongo"
	tools/devmongo/build.sh "$work/devmongo"
	for port in $(seq 27100 27199); do port_free "$port" && break; done
	"$work/devmongo" -listen "127.0.0.1:$port" -dir "$work/mongo-data" >"$work/devmongo.log" 2>&1 &
	pids+=("$!")
	wait_for "$work/devmongo.log" '^ready ' "${pids[-1]}"
	export SAGAFLOW_MONGO_URI="mongodb://127.0.0.1:$port/"
fi

echo "== starting the SMTP sink and the services (topology $run)"
"$work/bin/emailcampaign" sink -sink-addr 127.0.0.1:0 >"$work/sink.out" 2>"$work/sink.log" &
sink_pid=$!
pids+=("$sink_pid")
wait_for "$work/sink.log" '^ready SMTP sink' "${pids[-1]}"
export EMAILCAMPAIGN_SMTP="$(sed -n 's/^ready SMTP sink on \([^ ]*\).*/\1/p' "$work/sink.log")"

for svc in customers classification campaigns mailer; do
	admin=off
	[[ $svc == campaigns ]] && admin=127.0.0.1:0
	EMAILCAMPAIGN_ADMIN_ADDR=$admin "$work/bin/$svc" >"$work/$svc.log" 2>&1 &
	pids+=("$!")
	wait_for "$work/$svc.log" 'msg=ready' "${pids[-1]}"
done
admin_url="$(sed -n 's/.*msg=ready.* admin=\([^ ]*\).*/\1/p' "$work/campaigns.log" | head -n 1)"
echo "== services ready; campaign service admin API $admin_url"

"$work/bin/emailcampaign" seed -campaigns-admin "$admin_url" -customers "${CUSTOMERS:-200}" -campaigns "${CAMPAIGNS:-2}"

# Stop the sink first: it prints what it received.
kill -TERM "$sink_pid" && wait "$sink_pid" || true
cat "$work/sink.out"
