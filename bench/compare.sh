#!/usr/bin/env bash
# Compares `kinode-link compose` with `wasm-tools compose` and `wac plug` on the fixture components
# (app and bigapp, each composed with mathlib's library component), by wall time and peak RSS, and kit's way of
# linking (bench/kit-loop.sh) with `kinode-link link`. Then runs the in-node benchmark (test/benches/node.rs: the
# linker on the release-built test node against `linker_core::link`) and prints every way of linking app and bigapp
# as a ratio to `kinode-link link --stored`. Each timed run writes a new file (the output before is removed, untimed);
# for bigapp a second table times each command writing over the output of the run before.
#
#   bench/compare.sh                  # from the repository root or anywhere
#   RUNS=30 bench/compare.sh          # more runs per command (default 20; bigapp gets RUNS/2, at least 5)
#   BASELINE=<rev> bench/compare.sh   # kinode-link of another revision too, side by side
#
# Environment: CARGO_TARGET_DIR (default <repo>/target); TOOLS_ROOT (where the pinned tools are installed, default
# $CARGO_TARGET_DIR/bench-tools); RUNS; USE_HYPERFINE=0 to time with a plain loop instead of hyperfine.
# Downloads only from crates.io (cargo install) and the Debian archive (apt-get, as root, for hyperfine and GNU time
# when missing). Results: $CARGO_TARGET_DIR/bench-compare/results.md.
set -euo pipefail

# Pinned versions: wasm-tools of the same wasm-tools release family as the workspace's wit-component/wasm-compose
# 0.263, wac-cli of the same release as the workspace's wac-graph 0.12.
WASM_TOOLS_VERSION=1.263.0
WAC_VERSION=0.12.0

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TOOLS_ROOT=${TOOLS_ROOT:-$CARGO_TARGET_DIR/bench-tools}
OUT=$CARGO_TARGET_DIR/bench-compare
RUNS=${RUNS:-20}
BIG_RUNS=$(( RUNS / 2 > 5 ? RUNS / 2 : 5 ))
mkdir -p "$OUT" "$TOOLS_ROOT"
cd "$ROOT"

say() { printf '\n== %s\n' "$*" >&2; }

# --- Tools --------------------------------------------------------------------------------------------------------
installed() { # <binary> <version>: true if $TOOLS_ROOT/bin/<binary> reports <version>
    [[ -x "$TOOLS_ROOT/bin/$1" ]] && "$TOOLS_ROOT/bin/$1" --version 2>/dev/null | grep -qF "$2"
}
# kit's loop needs `wasm-tools component wit` too.
if ! installed wasm-tools "$WASM_TOOLS_VERSION" || ! "$TOOLS_ROOT/bin/wasm-tools" component wit --help >/dev/null 2>&1; then
    say "installing wasm-tools $WASM_TOOLS_VERSION (crates.io)"
    cargo install --locked --root "$TOOLS_ROOT" "wasm-tools@$WASM_TOOLS_VERSION" \
        --no-default-features --features compose,validate,component
fi
if ! installed wac "$WAC_VERSION"; then
    say "installing wac-cli $WAC_VERSION (crates.io, without the registry feature)"
    cargo install --locked --root "$TOOLS_ROOT" "wac-cli@$WAC_VERSION" --no-default-features
fi
WASM_TOOLS=$TOOLS_ROOT/bin/wasm-tools
WAC=$TOOLS_ROOT/bin/wac

apt_install() { # <package>: installs from the Debian archive if we may
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "installing $1 (apt)"
        apt-get install -y "$1" >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y "$1" >/dev/null 2>&1; } || true
    fi
}
[[ ${USE_HYPERFINE:-1} == 1 ]] && ! command -v hyperfine >/dev/null && apt_install hyperfine
have_hyperfine() { [[ ${USE_HYPERFINE:-1} == 1 ]] && command -v hyperfine >/dev/null; }
[[ -x /usr/bin/time ]] || apt_install time
command -v valgrind >/dev/null || apt_install valgrind

# kinode-link as README "kinode-link" installs it: the dist profile and, on Linux with glibc, statically linked (no
# dynamic loader at start, and only the part of libc it uses resident). Symbol names are kept (not loaded at run
# time) so that callgrind can attribute SHA-256. Sets BUILT to the binary.
HOST=$(rustc -vV | sed -n 's/^host: //p')
install_build() { # <profile> [cargo arguments]
    local profile=$1
    shift
    if [[ $HOST == *-linux-gnu ]]; then
        RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_DIST_STRIP=debuginfo \
            cargo build --profile "$profile" --locked -p kinode-link --target "$HOST" "$@" >&2
        BUILT=$CARGO_TARGET_DIR/$HOST/$profile/kinode-link
    else
        CARGO_PROFILE_DIST_STRIP=debuginfo cargo build --profile "$profile" --locked -p kinode-link "$@" >&2
        BUILT=$CARGO_TARGET_DIR/$profile/kinode-link
    fi
}

# BASELINE=<git revision>: the same figures for kinode-link built from that revision the same way, side by side (its
# binary is built first, from a worktree, in the same target directory, and kept as $OUT/kinode-link-baseline).
BASELINE_LINK=
if [[ -n ${BASELINE:-} ]]; then
    say "building kinode-link at $BASELINE (baseline)"
    rm -rf "$OUT/baseline-src"
    git worktree prune
    git worktree add --detach "$OUT/baseline-src" "$BASELINE" >&2
    profile=dist
    grep -q '^\[profile.dist\]' "$OUT/baseline-src/Cargo.toml" || profile=release
    install_build "$profile" --manifest-path "$OUT/baseline-src/Cargo.toml"
    cp "$BUILT" "$OUT/kinode-link-baseline"
    git worktree remove --force "$OUT/baseline-src"
    BASELINE_LINK=$OUT/kinode-link-baseline
fi

say "building kinode-link (as it is installed)"
install_build dist
KINODE_LINK=$BUILT

# --- Inputs -------------------------------------------------------------------------------------------------------
say "building the fixtures"
cargo run --release --locked -p linker-fixtures >"$OUT/fixtures.txt"
# `cargo run -p linker-fixtures` prints "<name>:test.os" then "  package  <zip>" and "  api      <zip>".
fixture() { # <name> <package|api>
    awk -v id="$1:test.os" -v kind="$2" '$0 == id { found = 1; next } found && $1 == kind { print $2; exit }' \
        "$OUT/fixtures.txt"
}
APP_ZIP=$(fixture app package)
BIGAPP_ZIP=$(fixture bigapp package)
MATHLIB_API_ZIP=$(fixture mathlib api)
IN=$OUT/in
rm -rf "$IN" && mkdir -p "$IN"
# Every component of each package: a link composes them all, so a peer's share of the same work is its compose of
# each (app: app.wasm and calc.wasm; bigapp: bigapp.wasm).
unzip -o -q -j "$APP_ZIP" '*.wasm' -d "$IN"
unzip -o -q -j "$BIGAPP_ZIP" '*.wasm' -d "$IN"
others() { # <package zip> <root>: the package's components besides <root>.wasm, by name
    unzip -Z1 "$1" '*.wasm' | sed 's/\.wasm$//' | grep -vx "$2" || true
}
# wasm-tools compose names a definition after its file, so the file name must be kebab case: mathlib-api.wasm.
unzip -o -q -j "$MATHLIB_API_ZIP" mathlib-api.wasm -d "$IN"
ls -l "$IN" >&2

# --- Sanity: every tool composes, and the results validate ----------------------------------------------------------
for root in app bigapp; do
    "$WASM_TOOLS" compose "$IN/$root.wasm" -d "$IN/mathlib-api.wasm" -o "$OUT/$root.wasm-tools.wasm" >&2
    "$WAC" plug "$IN/$root.wasm" --plug "$IN/mathlib-api.wasm" -o "$OUT/$root.wac.wasm" >&2
    "$KINODE_LINK" compose "$IN/$root.wasm" --dep "$IN/mathlib-api.wasm" -o "$OUT/$root.kinode-link.wasm" >&2
    for tool in wasm-tools wac kinode-link; do
        "$WASM_TOOLS" validate "$OUT/$root.$tool.wasm"
    done
done
say "output sizes (bytes)"
wc -c "$IN"/*.wasm "$OUT"/*.wasm-tools.wasm "$OUT"/*.wac.wasm "$OUT"/*.kinode-link.wasm | tee "$OUT/sizes.txt" >&2

# --- Commands -----------------------------------------------------------------------------------------------------
# NAMES[i] is the label of CMDS[i]; each command writes to $OUT/out.wasm or $OUT/linked.zip.
setup() { # <root> <package zip>: the three composers on <root>.wasm + mathlib-api.wasm, kinode-link link, kit's loop
    NAMES=(
        "wasm-tools compose"
        "wac plug"
        "kinode-link compose"
        "kinode-link link (zip, deflate 1)"
        "kinode-link link (zip, --stored)"
        "kit's loop (unzip, wit, compose per import, zip)"
    )
    CMDS=(
        "$WASM_TOOLS compose $IN/$1.wasm -d $IN/mathlib-api.wasm -o $OUT/out.wasm"
        "$WAC plug $IN/$1.wasm --plug $IN/mathlib-api.wasm -o $OUT/out.wasm"
        "$KINODE_LINK compose $IN/$1.wasm --dep $IN/mathlib-api.wasm -o $OUT/out.wasm"
        "$KINODE_LINK link $2 --api $MATHLIB_API_ZIP -o $OUT/linked.zip"
        "$KINODE_LINK link $2 --api $MATHLIB_API_ZIP --stored -o $OUT/linked.zip"
        "bash $ROOT/bench/kit-loop.sh $WASM_TOOLS $2 $OUT/kit.zip $MATHLIB_API_ZIP"
    )
    local other
    for other in $(others "$2" "$1"); do
        NAMES+=("wasm-tools compose ($other.wasm)" "wac plug ($other.wasm)")
        CMDS+=(
            "$WASM_TOOLS compose $IN/$other.wasm -d $IN/mathlib-api.wasm -o $OUT/out.wasm"
            "$WAC plug $IN/$other.wasm --plug $IN/mathlib-api.wasm -o $OUT/out.wasm"
        )
    done
    if [[ -n $BASELINE_LINK ]]; then
        NAMES+=("kinode-link compose (baseline $BASELINE)" "kinode-link link (zip, --stored, baseline $BASELINE)")
        CMDS+=(
            "$BASELINE_LINK compose $IN/$1.wasm --dep $IN/mathlib-api.wasm -o $OUT/out.wasm"
            "$BASELINE_LINK link $2 --api $MATHLIB_API_ZIP --stored -o $OUT/linked.zip"
        )
    fi
}

# --- Instructions ---------------------------------------------------------------------------------------------------
instructions() { # callgrind's instruction count of each composer (and kinode-link link) on CMDS, and SHA-256's share
    local i total sha
    echo "| Command | Instructions | of which SHA-256 |"
    echo "|:---|---:|---:|"
    for i in "${!CMDS[@]}"; do
        [[ ${NAMES[$i]} == kit* ]] && continue
        valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" ${CMDS[$i]} >/dev/null 2>&1
        total=$(awk '/^totals:/ { print $2 }' "$OUT/callgrind.out")
        sha=$(callgrind_annotate "$OUT/callgrind.out" 2>/dev/null | awk '/sha2::sha256/ { gsub(",", "", $1); s += $1 } END { print s + 0 }')
        awk -v c="\`${NAMES[$i]}\`" -v t="$total" -v s="$sha" \
            'BEGIN { printf "| %s | %.1f M | %.1f M (%.0f %%) |\n", c, t / 1e6, s / 1e6, 100 * s / t }'
    done
}

# --- Wall time ----------------------------------------------------------------------------------------------------
# Every timed run writes a new file: the outputs of the run before are removed first, untimed. Replacing a file
# costs its writer what the filesystem does about the old one (on ext4, truncating or renaming over a file makes the
# kernel write the new data out at once), which is not the tool's work; `replacing` below times that case apart.
FRESH="$OUT/out.wasm $OUT/linked.zip $OUT/kit.zip"
time_all() { # <label> <runs>: times CMDS
    local label=$1 runs=$2 i
    if have_hyperfine; then
        local args=()
        for i in "${!CMDS[@]}"; do args+=(--command-name "${NAMES[$i]}" "${CMDS[$i]}"); done
        hyperfine --shell=none --warmup 3 --runs "$runs" --style basic --prepare "rm -f $FRESH" \
            --export-markdown "$OUT/time-$label.md" --export-csv "$OUT/time-$label.csv" "${args[@]}" >&2
        # command,mean,stddev,median,user,system,min,max in seconds, rows in CMDS order (a name may hold commas).
        # The median is what the ratios use: the machine is shared, and a mean follows its bursts.
        echo "| Command | Median [ms] | Mean ± σ [ms] | Min [ms] | Max [ms] |"
        echo "|:---|---:|---:|---:|---:|"
        awk -F, 'NR > 1 { printf "%.2f\t%.2f ± %.2f\t%.2f\t%.2f\n", $(NF - 4) * 1000, $(NF - 6) * 1000, $(NF - 5) * 1000, $(NF - 1) * 1000, $NF * 1000 }' \
            "$OUT/time-$label.csv" | paste <(printf '`%s`\n' "${NAMES[@]}") - |
            awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }'
        awk -F, 'NR > 1 { printf "%.3f\n", $(NF - 4) * 1000 }' "$OUT/time-$label.csv" |
            paste <(printf '%s\n' "${NAMES[@]}") - >"$OUT/time-$label.tsv"
    else
        echo "| Command | Mean [ms] | Min [ms] | Max [ms] |"
        echo "|:---|---:|---:|---:|"
        local r start end all
        : >"$OUT/time-$label.tsv"
        for i in "${!CMDS[@]}"; do
            ${CMDS[$i]} >/dev/null 2>&1 # warm-up
            all=()
            for ((r = 0; r < runs; r++)); do
                rm -f $FRESH
                start=$(date +%s%N)
                ${CMDS[$i]} >/dev/null 2>&1
                end=$(date +%s%N)
                all+=($(( (end - start) / 1000 )))
            done
            printf '%s\n' "${all[@]}" | sort -n | awk -v c="\`${NAMES[$i]}\`" \
                '{ v[NR] = $1; s += $1 } END { printf "| %s | %.1f | %.1f | %.1f |\n", c, s / NR / 1000, v[1] / 1000, v[NR] / 1000 }'
            printf '%s\n' "${all[@]}" | sort -n | awk -v c="${NAMES[$i]}" \
                '{ v[NR] = $1 } END { printf "%s\t%.3f\n", c, (v[int((NR + 1) / 2)] + v[int(NR / 2) + 1]) / 2 / 1000 }' \
                >>"$OUT/time-$label.tsv"
        done
    fi
}

replacing() { # <runs>: bigapp's peers and kinode-link writing over the output of the run before
    local picked=() names=() i
    for i in "${!CMDS[@]}"; do
        case ${NAMES[$i]} in
        "wasm-tools compose" | "wac plug" | "kinode-link compose" | "kinode-link link (zip, --stored"*)
            picked+=(--command-name "${NAMES[$i]} (replacing)" "${CMDS[$i]}")
            names+=("${NAMES[$i]}")
            ;;
        esac
    done
    if ! have_hyperfine; then
        echo "(needs hyperfine)"
        return
    fi
    hyperfine --shell=none --warmup 3 --runs "$1" --style basic --export-csv "$OUT/replacing.csv" "${picked[@]}" >&2
    echo "| Command | Median [ms] | Min [ms] | Max [ms] |"
    echo "|:---|---:|---:|---:|"
    awk -F, 'NR > 1 { printf "%.2f\t%.2f\t%.2f\n", $(NF - 4) * 1000, $(NF - 1) * 1000, $NF * 1000 }' "$OUT/replacing.csv" |
        paste <(printf '`%s`\n' "${names[@]}") - | awk -F'\t' '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }'
}

# --- Peak RSS -----------------------------------------------------------------------------------------------------
peak_rss() { # the median of 5 runs' "Maximum resident set size" (GNU time), in KiB, for CMDS
    local i r
    echo "| Command | Peak RSS [KiB], median of 5 |"
    echo "|:---|---:|"
    for i in "${!CMDS[@]}"; do
        for ((r = 0; r < 5; r++)); do
            /usr/bin/time -v ${CMDS[$i]} 2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/ { print $2 }'
        done | sort -n | sed -n 3p | awk -v c="\`${NAMES[$i]}\`" '{ printf "| %s | %d |\n", c, $1 }'
    done
}

# --- Ratios -------------------------------------------------------------------------------------------------------
ratio_rows() { # one row per way: "<ms> ms (<ratio>×)" for app and bigapp, from time-*.tsv and node.tsv
    local base_app base_big
    base_app=$(awk -F'\t' '$1 == "kinode-link link (zip, --stored)" { print $2 }' "$OUT/time-app.tsv")
    base_big=$(awk -F'\t' '$1 == "kinode-link link (zip, --stored)" { print $2 }' "$OUT/time-bigapp.tsv")
    row() { # <label> <app ms> <bigapp ms>
        awk -v l="$1" -v a="$2" -v b="$3" -v ba="$base_app" -v bb="$base_big" \
            'BEGIN { printf "| %s | %.2f ms (%.2f×) | %.2f ms (%.2f×) |\n", l, a, a / ba, b, b / bb }'
    }
    node() { awk -F'\t' -v id="$1:test.os" -v col="$2" '$1 == id { print $col }' "$OUT/node.tsv"; }
    row "\`linker_core::link\`, in-process (stored)" "$(node app 3)" "$(node bigapp 3)"
    row "in-node install, request to answer" "$(node app 4)" "$(node bigapp 4)"
    local i name
    setup app "$APP_ZIP"
    for i in "${!NAMES[@]}"; do
        name=${NAMES[$i]}
        [[ $name == *".wasm)" ]] && continue # a component only app's package has
        row "\`$name\`" \
            "$(awk -F'\t' -v n="$name" '$1 == n { print $2 }' "$OUT/time-app.tsv")" \
            "$(awk -F'\t' -v n="$name" '$1 == n { print $2 }' "$OUT/time-bigapp.tsv")"
    done
}

every_component() { # <root> <package zip>: link --stored against each peer's compose of every component, summed
    local tsv=$OUT/time-$1.tsv peer sum link
    link=$(awk -F'\t' '$1 == "kinode-link link (zip, --stored)" { print $2 }' "$tsv")
    for peer in "wasm-tools compose" "wac plug"; do
        sum=$(awk -F'\t' -v p="$peer" '$1 == p || index($1, p " (") == 1 { s += $2 } END { printf "%.3f", s }' "$tsv")
        awk -v r="$1" -v p="$peer" -v s="$sum" -v l="$link" -v n="$(( $(others "$2" "$1" | wc -l) + 1 ))" \
            'BEGIN { printf "| %s | `%s` of %d component(s) | %.2f ms | %.2f ms | %.2f× |\n", r, p, n, s, l, l / s }'
    done
}

{
    echo "# bench/compare.sh results"
    echo
    echo "wasm-tools $WASM_TOOLS_VERSION, wac-cli $WAC_VERSION, $("$KINODE_LINK" --version)$(have_hyperfine && echo ", $(hyperfine --version)")"
    echo
    for root in app bigapp; do
        if [[ $root == app ]]; then zip=$APP_ZIP runs=$RUNS; else zip=$BIGAPP_ZIP runs=$BIG_RUNS; fi
        setup "$root" "$zip"
        echo "## $root + mathlib-api: wall time ($runs runs)"
        echo
        time_all "$root" "$runs"
        echo
        echo "## $root + mathlib-api: peak RSS"
        echo
        peak_rss
        echo
        if [[ $root == bigapp ]]; then
            echo "## bigapp + mathlib-api: wall time, each writing over the output of the run before ($runs runs)"
            echo
            replacing "$runs"
            echo
        fi
        if command -v valgrind >/dev/null; then
            echo "## $root + mathlib-api: instructions (valgrind --tool=callgrind; SHA-256 without the CPU's SHA extensions, as in Wasm)"
            echo
            instructions
            echo
        fi
    done
    say "the in-node benchmark (release build of the test host)"
    LINKER_BENCH_NODE_TSV=$OUT/node.tsv cargo bench --locked -p linker-tests --bench node -- app >"$OUT/node.md"
    echo "## In the node: install request to answer against \`linker_core::link\` (cargo bench --bench node)"
    echo
    cat "$OUT/node.md"
    echo
    echo "## \`kinode-link link --stored\` of the package zip against each peer's compose of every component in it"
    echo
    echo "| package | peer | peer's composes, summed (medians) | link (median) | link ÷ peer |"
    echo "|:---|:---|---:|---:|---:|"
    every_component app "$APP_ZIP"
    every_component bigapp "$BIGAPP_ZIP"
    echo
    echo "## Every way, as a ratio to \`kinode-link link --stored\` (median wall time of the whole command)"
    echo
    echo "| way | app | bigapp |"
    echo "|:---|---:|---:|"
    ratio_rows
    echo
    echo "Commands:"
    echo
    for root in app bigapp; do
        if [[ $root == app ]]; then zip=$APP_ZIP; else zip=$BIGAPP_ZIP; fi
        setup "$root" "$zip"
        printf -- '- `%s`\n' "${CMDS[@]}"
    done
} | tee "$OUT/results.md"
say "results in $OUT/results.md"
