#!/usr/bin/env bash
# check_exports.sh PLUGIN.so...: each plugin defines exactly one dynamic symbol,
# mqtt_proxy_plugin_entry (built with -fvisibility=hidden; plugins/CMakeLists.txt).
set -euo pipefail
command -v nm >/dev/null || { echo "nm not found (binutils)"; exit 77; }
status=0
for so in "$@"; do
  # Defined symbols of the dynamic table, without the linker's own (_init, _fini, _edata...).
  symbols=$(nm -D --defined-only "$so" | awk '{print $NF}' |
            grep -Ev '^(_init|_fini|_edata|_end|__bss_start)$' || true)
  if [[ "$symbols" != "mqtt_proxy_plugin_entry" ]]; then
    echo "$so exports more than mqtt_proxy_plugin_entry:" >&2
    echo "$symbols" >&2
    status=1
  else
    echo "$so: mqtt_proxy_plugin_entry only"
  fi
done
exit $status
