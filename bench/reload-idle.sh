#!/usr/bin/env bash
# Idle work around one change: starts `serve` on N domains, reads the config (cat, `check`),
# makes one edit, and counts reloads and CPU time over the next seconds. A correct daemon
# reloads exactly once; one that reacts to its own reads (the bug fixed by "reload only on
# change") keeps reloading and burning CPU.
#   bench/reload-idle.sh [BINARY] [DOMAINS] [SECONDS]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bin=${1:-target/release/mta-stsd}
n=${2:-5000}
secs=${3:-3}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$((20000 + RANDOM % 20000))
{
  printf '[server]\nhttps = []\nhttp = ["127.0.0.1:0"]\nadmin = "127.0.0.1:%s"\n' "$port"
  printf '[tls]\nself_signed = true\n[policy]\nmode = "testing"\nmx = ["mail.example.org"]\n'
  for i in $(seq 1 "$n"); do printf '[domains."d%s.example"]\n' "$i"; done
} >"$dir/c.toml"
STATE_DIRECTORY="$dir/state" "$bin" --config "$dir/c.toml" serve 2>"$dir/log" &
pid=$!
wait_ready "$dir/log"
reloads() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^mta_stsd_config_reloads_total\{result="ok"\}/ {print $2}'; }
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
r0=$(reloads); c0=$(cpu)
cat "$dir/c.toml" >/dev/null
"$bin" --config "$dir/c.toml" check >/dev/null 2>&1 || true
echo "# one edit" >>"$dir/c.toml"
sleep "$secs"
r1=$(reloads); c1=$(cpu)
tck=$(getconf CLK_TCK)
echo "domains=$n window=${secs}s reloads=$((r1 - r0)) cpu_seconds=$(echo "scale=2; ($c1 - $c0) / $tck" | bc)"
