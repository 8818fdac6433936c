#!/usr/bin/env bash
# out_of_tree.sh SOURCE_DIR BUILD_DIR [CC [CMAKE]]: a plugin built outside the tree, as
# docs/plugins.md tells a plugin author: install the plugin header to a prefix of its own, compile
# examples/plugins/hello.c with a plain C compiler against it, and load the result the way the
# proxy does (load_plugin.c: entry point, API version, init, on_connect, cleanup).
set -euo pipefail
src=$1 build=$2 cc=${3:-cc} cmake=${4:-cmake}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$cmake" --install "$build" --prefix "$tmp/prefix" --component plugin_dev
test -f "$tmp/prefix/include/mqtt_proxy/plugin.h"

cflags=(-std=c11 -Wall -Wextra -Wpedantic -Werror -I "$tmp/prefix/include")
"$cc" "${cflags[@]}" -shared -fPIC "$src/examples/plugins/hello.c" -o "$tmp/hello.so"
"$cc" "${cflags[@]}" "$src/tests/plugins/load_plugin.c" -o "$tmp/load_plugin" -ldl

# Exported: the entry point (everything else in hello.c is static).
nm -D --defined-only "$tmp/hello.so" | grep -q ' T mqtt_proxy_plugin_entry$'

out=$("$tmp/load_plugin" "$tmp/hello.so")
echo "$out"
grep -qx 'plugin hello: api_version [0-9]*, struct_size [0-9]*' <<<"$out"
grep -qx 'log 2: hi, c1 (connection 1)' <<<"$out"
grep -qx 'log 2: 1 connections' <<<"$out"
echo "out-of-tree plugin: built and loaded"
