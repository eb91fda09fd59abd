#!/usr/bin/env bash
# bench/check-scale.sh — how `mta-stsd check` scales with the number of mail domains.
#
# What it measures
#   For each size (default 10,000, 100,000 and 1,000,000 domains) it generates a config in a
#   temporary directory — a main `mta-stsd.toml` with [server], [tls] self_signed, [policy],
#   [dns] and `include = ["domains.d/*.toml"]`, plus 1,000 domains per included file (10, 100
#   and 1,000 files) — and runs `mta-stsd --config <main> check` under GNU `/usr/bin/time -v`.
#   About 1 domain in 10 overrides something (alternately `mode = "testing"` and its own `mx`);
#   the rest are bare `[domains."d123456.example"]` tables. Each size is run RUNS times (3)
#   and the median wall-clock time, CPU time (user+sys) and peak RSS are reported. The exit
#   status must be 0 every time; otherwise the first stderr lines are shown and the script fails.
#
#   Goal (SPEC: hosting providers with up to 1,000,000 domains): 1M domains checked in under
#   10 s wall clock and under 1 GiB peak RSS on the 2-core dev machine.
#
# How to run
#   bench/check-scale.sh                   # all three sizes
#   bench/check-scale.sh 10000 100000      # pick sizes (also "10000,100000"); any positive count
#   RUNS=5 bench/check-scale.sh 1000000    # more repetitions
#   NO_BUILD=1 bench/check-scale.sh        # skip `cargo build` (use the existing binary)
#   KEEP=1 bench/check-scale.sh 100000     # keep the generated configs (path printed) for profiling
#
#   Runs from any directory; needs cargo, python3 and GNU time. No network access is used.
#   The exit status is 0 when every run succeeded (meeting the goal is reported, not enforced).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RUNS="${RUNS:-3}"
PER_FILE=1000
GOAL_SECS=10
GOAL_MIB=1024

# --- arguments ---------------------------------------------------------------------------------
sizes=()
if [ "$#" -eq 0 ]; then
    sizes=(10000 100000 1000000)
else
    for arg in "$@"; do
        for s in ${arg//,/ }; do
            s="${s//_/}"
            if ! [[ "$s" =~ ^[1-9][0-9]*$ ]]; then
                echo "usage: $0 [SIZE...]   (SIZE: number of domains, e.g. 10000 100000 1000000)" >&2
                exit 64
            fi
            sizes+=("$s")
        done
    done
fi

for tool in cargo python3; do
    command -v "$tool" >/dev/null || { echo "$0: $tool is required" >&2; exit 69; }
done
[ -x /usr/bin/time ] || { echo "$0: GNU time (/usr/bin/time) is required" >&2; exit 69; }

# --- build -------------------------------------------------------------------------------------
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/mta-stsd"
if [ -z "${NO_BUILD:-}" ]; then
    echo "== building: cargo build --release --locked" >&2
    cargo build --release --locked --quiet
fi
[ -x "$BIN" ] || { echo "$0: no binary at $BIN" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mta-stsd-bench.XXXXXX")"
if [ -n "${KEEP:-}" ]; then
    echo "== keeping generated configs in $WORK" >&2
else
    trap 'rm -rf "$WORK"' EXIT
fi

# --- config generator --------------------------------------------------------------------------
# gen DIR DOMAINS: writes DIR/mta-stsd.toml and DIR/domains.d/part-NNNN.toml, 1,000 domains each.
gen() {
    python3 "$ROOT/bench/gen-config.py" "$1" "$2" "$PER_FILE"
}

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

# --- runs --------------------------------------------------------------------------------------
# time -v prints "Elapsed (wall clock) time (h:mm:ss or m:ss): 0:01.23".
parse_time='
/Elapsed \(wall clock\)/ { n = split($NF, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; wall = s }
/User time \(seconds\)/   { cpu += $NF }
/System time \(seconds\)/ { cpu += $NF }
/Maximum resident set size/ { rss = $NF }
END { printf "%.2f %.2f %.1f\n", wall, cpu, rss / 1024 }'

rows=()
fail=0
for size in "${sizes[@]}"; do
    dir="$WORK/$size"
    t0=$(date +%s%N)
    gen "$dir" "$size"
    files=$(find "$dir/domains.d" -name '*.toml' | wc -l)
    mb=$(du -sm "$dir" | cut -f1)
    gen_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    printf '== %s domains in %s files (%s MB), generated in %d.%02d s\n' \
        "$size" "$files" "$mb" $((gen_ms / 1000)) $((gen_ms % 1000 / 10)) >&2

    walls=(); cpus=(); rsss=()
    for run in $(seq 1 "$RUNS"); do
        status=0
        r0=$(date +%s%N)
        /usr/bin/time -v -o "$dir/time.txt" "$BIN" --config "$dir/mta-stsd.toml" check \
            >"$dir/stdout.txt" 2>"$dir/stderr.txt" || status=$?
        run_ms=$(( ($(date +%s%N) - r0) / 1000000 ))
        if [ "$status" -ne 0 ]; then
            echo "!! $size domains, run $run: mta-stsd check exited $status; first stderr lines:" >&2
            head -n 20 "$dir/stderr.txt" >&2
            grep -E 'Command (terminated|exited)|signal' "$dir/time.txt" >&2 || true
            fail=1
            break
        fi
        # Wall clock from our own ns timer (time -v rounds to 10 ms); CPU and RSS from time -v.
        read -r _ cpu rss < <(awk "$parse_time" "$dir/time.txt")
        wall=$(printf '%d.%03d' $((run_ms / 1000)) $((run_ms % 1000)))
        printf '   run %d: %7.3f s wall, %6.2f s cpu, %7.1f MiB peak RSS   (%s)\n' \
            "$run" "$wall" "$cpu" "$rss" "$(head -c 200 "$dir/stdout.txt" | sed 's/.*: ok: /ok: /')" >&2
        walls+=("$wall"); cpus+=("$cpu"); rsss+=("$rss")
    done
    [ "$fail" -eq 0 ] || break
    rows+=("$size $files $(median "${walls[@]}") $(median "${cpus[@]}") $(median "${rsss[@]}")")
    [ -n "${KEEP:-}" ] || rm -rf "$dir"
done

# --- report ------------------------------------------------------------------------------------
echo
echo "mta-stsd check scale ($(nproc) cores, median of $RUNS runs, $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
printf '%10s %7s %8s %8s %14s\n' domains files "wall s" "cpu s" "peak RSS MiB"
for row in "${rows[@]}"; do
    # shellcheck disable=SC2086
    printf '%10s %7s %8.3f %8.2f %14.1f\n' $row
done
echo "goal: 1,000,000 domains in < ${GOAL_SECS} s wall and < 1 GiB (${GOAL_MIB} MiB) peak RSS on a 2-core machine"
for row in "${rows[@]}"; do
    read -r size _ wall _ rss <<<"$row"
    if [ "$size" -eq 1000000 ]; then
        verdict=$(awk -v w="$wall" -v r="$rss" -v gw="$GOAL_SECS" -v gr="$GOAL_MIB" 'BEGIN {
            t = (w < gw) ? "time OK" : "time MISSED"; m = (r < gr) ? "memory OK" : "memory MISSED";
            print t ", " m }')
        echo "1M result: $verdict"
    fi
done
if [ "$fail" -ne 0 ]; then
    echo "FAILED: mta-stsd check did not exit 0 (see the stderr lines above)"
fi
exit "$fail"
