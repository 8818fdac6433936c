#!/usr/bin/env bash
# Runs the benchmarks: the pure-core microbenchmarks, then the TCP comparison with Mosquitto in the
# reference Mininet testbed. Extra arguments go to bench/tcp_bench.py (see its --help). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh >/dev/null
echo "=== core microbenchmarks (build/bench/bench_core)"
build/bench/bench_core --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
echo "=== TCP: mqtt_proxy and Mosquitto in the testbed (bench/tcp_bench.py)"
exec /usr/bin/python3 bench/tcp_bench.py "$@"
