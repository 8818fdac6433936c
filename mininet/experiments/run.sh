#!/usr/bin/env bash
# Runs one experiment of docs/experiments.md (latency, load, throughput, or all), as root:
#   bash mininet/experiments/run.sh NAME [--reps N] [--quick] [--out DIR] [options of run.py]
# It holds the testbed's lock for the whole experiment: a test suite or another experiment that
# holds it is waited for, and none starts while this one runs. It does not build: the binaries it
# measures are the ones in build/ (cmake --build build -j2). Ctrl-C, or SIGINT or SIGTERM to its
# PID, stops it through the testbed's teardown.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The plots; the CSVs are written without it.
if ! /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-matplotlib \
    >/dev/null || echo "experiments: python3-matplotlib not installed; no plot"
fi
lock=/tmp/mqtt_proxy_mininet.lock
# The lock lives on descriptor 9 and the script becomes the Python process (exec), so the PID the
# caller has is the experiment's, and the lock goes with its last descriptor when it exits.
exec 9>>"$lock"
if ! flock -n 9; then
  echo "experiments: waiting for $lock (a test run or another experiment holds it)"
  flock 9
fi
exec /usr/bin/python3 mininet/experiments/run.py "$@"
