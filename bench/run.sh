#!/usr/bin/env bash
# Runs the benchmarks (root; sets the machine up first):
#   bash bench/run.sh            everything below
#   bash bench/run.sh core       the pure-core microbenchmarks (build/bench/bench_core)
#   bash bench/run.sh tcp        TCP: mqtt_proxy and Mosquitto on h1 (bench/tcp_bench.py)
#   bash bench/run.sh compare    mqtt_proxy on h1+h4 against two bridged Mosquittos (bench/compare.py)
#   bash bench/run.sh soak       30 minutes of load and client churn through h1+h4 (bench/soak.py);
#                                only when named, not part of everything
# Extra arguments go to the Python script of the part named.
set -euo pipefail
cd "$(dirname "$0")/.."
part=${1:-all}
shift || true
bash scripts/setup.sh
# The comparison's plot; everything else runs without it.
if ! dpkg-query -W -f='${Status}' python3-matplotlib 2>/dev/null | grep -q "install ok installed"; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-matplotlib \
    >/dev/null || echo "bench: python3-matplotlib not installed; no plot"
fi
bash scripts/build.sh >/dev/null
if [[ $part == all || $part == core ]]; then
  echo "=== core microbenchmarks (build/bench/bench_core)"
  build/bench/bench_core --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
fi
if [[ $part == all || $part == tcp ]]; then
  echo "=== TCP: mqtt_proxy and Mosquitto in the testbed (bench/tcp_bench.py)"
  /usr/bin/python3 bench/tcp_bench.py "$@"
fi
if [[ $part == all || $part == compare ]]; then
  echo "=== mqtt_proxy against bridged Mosquitto (bench/compare.py)"
  /usr/bin/python3 bench/compare.py "$@"
fi
if [[ $part == soak ]]; then
  echo "=== soak: load and client churn through mqtt_proxy on h1+h4 (bench/soak.py)"
  /usr/bin/python3 bench/soak.py "$@"
fi
