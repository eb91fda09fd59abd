#!/usr/bin/env bash
# Runs each fuzz target for a given time and reports executions and crashes.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     (default: 60 s each, every target)
#   RUNS=10000000 fuzz/run.sh 3600 http1  (stops at RUNS executions or SECONDS, the first)
#   SEED=1 RUNS=200000 fuzz/run.sh 60     (the same inputs every time, as scripts/test.sh runs it)
#
# Stable Rust only: cargo-fuzz (libFuzzer) with `--sanitizer none`, which needs no nightly
# (`cargo install cargo-fuzz --version 0.13.2 --locked` once). The targets' assertions live in
# src/fuzzing.rs, so a wrong answer is a crash as well as a panic is. Runs at `nice -n 19` (NICE=…);
# corpora grow in fuzz/corpus/<target> (seeded from fuzz/seeds/<target>), crashes land in
# fuzz/artifacts/<target>. Exits 1 if any target crashed. A crash found becomes a regression
# test: copy the input's bytes into a test beside the parser it broke.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(http1 config drift_text dns_answer tlsrpt_json tlsrpt_mail)

command -v cargo-fuzz >/dev/null || {
  echo "cargo-fuzz not found: cargo install cargo-fuzz --version 0.13.2 --locked" >&2
  exit 1
}

# Inputs long enough to reach each parser's limits (the HTTP head limit is 8 KiB).
max_len() {
  case $1 in
    http1) echo 20000 ;;
    config) echo 8192 ;;
    dns_answer) echo 4096 ;;
    tlsrpt_json | tlsrpt_mail) echo 16384 ;;
    *) echo 1024 ;;
  esac
}

nice -n "${NICE:-19}" cargo fuzz build --sanitizer none >&2
bin=target/x86_64-unknown-linux-gnu/release
# The config target writes its files per input: on tmpfs that is 4x as fast as on disk.
[ -w /dev/shm ] && export TMPDIR=/dev/shm
failed=0
printf '%-12s %14s %10s %8s\n' target executions exec/s crashes
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log=$(mktemp)
  rc=0
  # The binary cargo fuzz built, run directly: `cargo fuzz run` would check the build again.
  nice -n "${NICE:-19}" "$bin/$t" "corpus/$t" "seeds/$t" -max_total_time="$secs" -runs="${RUNS:--1}" -seed="${SEED:-0}" \
    -max_len="$(max_len "$t")" -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
    >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  crashes=$(find "artifacts/$t" -type f | wc -l)
  printf '%-12s %14s %10s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "$crashes"
  if ((rc != 0)) || ((crashes > 0)); then
    failed=1
    echo "--- $t (exit $rc), last lines of its log:" >&2
    tail -n 30 "$log" >&2
  fi
  rm -f "$log"
done
exit "$failed"
