#!/usr/bin/env bash
# run_fuzz.sh TARGET SEED_CORPUS WORK_DIR: fuzzes for FUZZ_SECONDS (default 20). New inputs go to
# WORK_DIR, never into the kept corpus; a crash leaves its reproducer in WORK_DIR and fails the test.
set -euo pipefail
target=$1 corpus=$2 work=$3
mkdir -p "$work"
cd "$work"
exec "$target" -max_total_time="${FUZZ_SECONDS:-20}" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/" "$work" "$corpus"
