#!/usr/bin/env bash
# bench/tlsrpt-bomb.sh — what the amplification report of issue 23 costs the daemon.
#
# What it measures
#   The report: one policy on example.org, then 1,390,000 `{}` in "policies" (4.2 MB of JSON,
#   just under the default max_report_bytes; about 4 KB gzipped). For each binary, a fresh
#   `mta-stsd serve` (one domain, a self-signed certificate, [tlsrpt] on tlsrpt.example.org,
#   SQLite in a temporary state dir) gets COPIES (4) of it POSTed at once as
#   application/tlsrpt+gzip. Printed per binary: the answers, the wall time of the four, the
#   daemon's RSS before and its peak during (VmHWM after `5 > clear_refs`), in MiB, and the
#   p50/p99 of policy fetches (GET /.well-known/mta-sts.txt, one TLS connection each, one at
#   a time) for 5 s before the bombs and while they are in flight.
#
# How to run (Linux; curl and python3)
#   bench/tlsrpt-bomb.sh                                  # this tree's debug build
#   BASE=/work/main/target/debug/mta-stsd bench/tlsrpt-bomb.sh   # and a build from before
#   BIN=target/release/mta-stsd NO_BUILD=1 bench/tlsrpt-bomb.sh
set -euo pipefail
cd "$(dirname "$0")/.."

COPIES="${COPIES:-4}"
BIN="${BIN:-target/debug/mta-stsd}"
[ -n "${NO_BUILD:-}" ] || cargo build --bin mta-stsd >&2

TMP=$(mktemp -d)
trap 'kill "${PID:-}" 2>/dev/null || true; rm -rf "$TMP"' EXIT
source bench/lib.sh # the script runs from the repo root

python3 - "$TMP/bomb.gz" <<'EOF'
import gzip, sys
policy = ('{"policy":{"policy-type":"sts","policy-domain":"example.org"},'
          '"summary":{"total-successful-session-count":1,"total-failure-session-count":0}}')
body = ('{"organization-name":"Bomb","date-range":{"start-datetime":"2024-10-01T00:00:00Z",'
        '"end-datetime":"2024-10-01T23:59:59Z"},"report-id":"bomb","policies":['
        + policy + ",{}" * 1_390_000 + "]}")
open(sys.argv[1], "wb").write(gzip.compress(body.encode(), 9))
print(f"report: {len(body)} bytes of JSON, {len(gzip.compress(body.encode(), 9))} gzipped",
      file=sys.stderr)
EOF

cat >"$TMP/fetch.py" <<'EOF'
# Fetches the policy over a new TLS connection each time until STOP exists (or for SECONDS),
# at least 20 times;
# prints p50 and p99 in ms.
import os, socket, ssl, sys, time
port, stop, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
req = b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.org\r\nConnection: close\r\n\r\n"
took, end = [], time.time() + seconds
while len(took) < 20 or (time.time() < end and not os.path.exists(stop)):
    t = time.time()
    try:
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30),
                            server_hostname="mta-sts.example.org")
        s.sendall(req)
        while s.recv(65536): pass
        s.close()
    except OSError:
        pass  # counted: a failed fetch takes its time too
    took.append((time.time() - t) * 1000)
took.sort()
q = lambda p: took[min(len(took) - 1, int(p * len(took)))] if took else float("nan")
print(f"{q(0.5):.0f}/{q(0.99):.0f}")
EOF

mib() { awk -v k="$1" '$1 == k { printf "%.0f", $2 / 1024 }' "/proc/$PID/status"; }

run() {
  local name=$1 bin=$2 p a
  p=$(free_port)
  a=$(free_port)
  mkdir -p "$TMP/$name"
  cat >"$TMP/$name/mta-stsd.toml" <<EOF
[server]
https = ["127.0.0.1:$p"]
admin = "127.0.0.1:$a"

[tls]
self_signed = true

[policy]
mode = "testing"
mx = ["mail.example.org"]

[domains."example.org"]

[tlsrpt]
hosts = ["tlsrpt.example.org"]
EOF
  STATE_DIRECTORY="$TMP/$name" "$bin" --config "$TMP/$name/mta-stsd.toml" serve 2>"$TMP/$name/log" &
  PID=$!
  wait_ready "$TMP/$name/log"
  for _ in $(seq 100); do grep -q "TLS-RPT store open" "$TMP/$name/log" && break; sleep 0.1; done
  local quiet loaded before start codes took peak
  quiet=$(python3 "$TMP/fetch.py" "$p" "$TMP/none" 5)
  rm -f "$TMP/stop"
  python3 "$TMP/fetch.py" "$p" "$TMP/stop" 600 >"$TMP/loaded" &
  local fetcher=$!
  echo 5 >"/proc/$PID/clear_refs"
  before=$(mib VmRSS:)
  start=$(date +%s.%N)
  codes=$(for _ in $(seq "$COPIES"); do
    curl -sk -o /dev/null -w '%{http_code}\n' --max-time 300 \
      --resolve "tlsrpt.example.org:$p:127.0.0.1" \
      -H 'Content-Type: application/tlsrpt+gzip' --data-binary "@$TMP/bomb.gz" \
      "https://tlsrpt.example.org:$p/v1/tlsrpt" &
  done; wait)
  took=$(echo "$(date +%s.%N) - $start" | bc)
  peak=$(mib VmHWM:)
  touch "$TMP/stop"
  wait "$fetcher"
  loaded=$(cat "$TMP/loaded")
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=
  printf '%-6s %-20s %7.1f %8s %9s %13s %13s\n' "$name" "$(echo $codes | tr ' ' ',')" \
    "$took" "$before" "$peak" "$quiet" "$loaded"
}

printf '%-6s %-20s %7s %8s %9s %13s %13s\n' binary answers "time s" "RSS MiB" "peak MiB" \
  "quiet p50/99" "bombs p50/99"
[ -z "${BASE:-}" ] || run before "$BASE"
run after "$BIN"
