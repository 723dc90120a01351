#!/usr/bin/env bash
# Kit's way of linking a package (KINODE.md 2.3, 2.4), for bench/compare.sh to time: unzip the package and the API
# zips, copy workers into the package, read every component's imports and every library's exports with `wasm-tools component wit`, run one
# `wasm-tools compose <importer> -d <exporter> -o <importer>` per matched import, and zip the result.
#
#   bench/kit-loop.sh <wasm-tools> <package.zip> <out.zip> <api.zip>...
set -euo pipefail

WASM_TOOLS=$1 PACKAGE=$2 OUT=$3
shift 3
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/pkg" "$WORK/api"
unzip -q "$PACKAGE" -d "$WORK/pkg"
for api in "$@"; do unzip -q -o "$api" -d "$WORK/api"; done

# kit's regexes over `wasm-tools component wit`: `import <name>;` and `export <name>;` lines of the world.
names() { # <import|export> <component>
    "$WASM_TOOLS" component wit "$2" | sed -n "s/^ *$1 \([a-z0-9:/@.-]*\);$/\1/p" | grep -v '^wasi:\|/standard@' || true
}
declare -A exporters
for lib in "$WORK"/api/*.wasm; do
    exports=$(names export "$lib")
    # A library that exports nothing (a worker) is copied into the package, as kit does.
    [[ -z $exports ]] && cp "$lib" "$WORK/pkg/"
    for name in $exports; do exporters[$name]=$lib; done
done
for wasm in "$WORK"/pkg/*.wasm; do
    for name in $(names import "$wasm"); do
        "$WASM_TOOLS" compose -q "$wasm" -d "${exporters[$name]}" -o "$wasm"
    done
done
rm -f "$OUT"
(cd "$WORK/pkg" && zip -q -r -X "$OUT" .)
