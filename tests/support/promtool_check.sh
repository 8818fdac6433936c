#!/bin/sh
# metrics.promtool: `promtool check metrics` on a full exposition (telemetry_exposition).
# Exit 77 (skipped) where promtool is not installed.
command -v promtool >/dev/null 2>&1 || { echo "promtool not installed: skipped"; exit 77; }
out=$("$1") || { echo "telemetry_exposition failed"; exit 1; }
# promtool prints lint findings and exits nonzero on any; show them.
printf '%s\n' "$out" | promtool check metrics
