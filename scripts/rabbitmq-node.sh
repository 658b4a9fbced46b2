#!/usr/bin/env bash
# Starts a private RabbitMQ node beside the machine's broker, for work that
# disturbs a broker (close_all_connections, stop_app, memory watermark,
# consumer timeout) without disturbing anyone else's tests.
#
# Usage: scripts/rabbitmq-node.sh N      (N from 1 to 9)
#
# The node is rabbitN@localhost, AMQP on 127.0.0.1:(5672+N), distribution
# port 25672+N, its data under /tmp/rmqN. The script prints the two
# variables to export: with RABBITMQ_NODENAME set, rabbitmqctl (and so
# internal/testenv.RabbitMQCtl) acts on this node only. To stop it:
# RABBITMQ_NODENAME=rabbitN@localhost rabbitmqctl stop
set -euo pipefail
n="${1:?usage: scripts/rabbitmq-node.sh N (1 to 9)}"
case "$n" in [1-9]) ;; *) echo "rabbitmq-node.sh: N must be 1 to 9, not $n" >&2; exit 2 ;; esac
port=$((5672 + n))
dir="/tmp/rmq$n"
export RABBITMQ_NODENAME="rabbit$n@localhost"
exports="export RABBITMQ_NODENAME=$RABBITMQ_NODENAME SAGAFLOW_AMQP_URL=amqp://guest:guest@127.0.0.1:$port/"
if rabbitmqctl -q status >/dev/null 2>&1; then
	echo "$exports"
	exit 0
fi
mkdir -p "$dir/mnesia" "$dir/log"
echo "listeners.tcp.local = 127.0.0.1:$port" >"$dir/rabbitmq.conf"
chown -R rabbitmq:rabbitmq "$dir" 2>/dev/null || true
export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_DIST_PORT=$((25672 + n)) \
	RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/pid"
# Quorum queues hold files open: give the node the hard descriptor limit.
(ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; cd /tmp && rabbitmq-server -detached)
sleep 5
rabbitmqctl -q await_startup --timeout 120
echo "$exports"
