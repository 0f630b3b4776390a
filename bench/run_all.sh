#!/usr/bin/env bash
# Every benchmark at full size; prints each one's table and the command that produced it.
#   ./pgpush.sh bench
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
echo "== decode throughput (one core) =="
"$build/bench/decode_bench" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
echo
echo "== matching throughput (one core) =="
"$build/bench/match_bench" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
echo
echo "== end-to-end drain vs pg_recvlogical =="
"$build/tests/pg_sandbox" -- "$here/drain_bench.sh" "$build"
echo
echo "== the cost of durability: ingest with the change log on vs off =="
"$build/tests/pg_sandbox" -- "$here/log_bench.sh" "$build"
echo
echo "== WebSocket load: N clients, commit -> client latency, RSS per connection =="
"$build/tests/pg_sandbox" -- "$here/load_bench.sh" "$build"
