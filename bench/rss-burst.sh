#!/usr/bin/env bash
# bench/rss-burst.sh — does mta-stsd give memory back after a burst of connections?
#
# What it measures
#   For each allocator, a fresh `mta-stsd serve` (release build, one self-signed domain, TLS
#   1.3) on loopback; its VmRSS (from /proc/PID/status) when idle, then with BURST (10000) TLS
#   connections open (each did one GET and stays idle), then SETTLE (10) s after the client
#   closed them all. Printed per allocator: the three figures and the share of the burst's
#   growth still held afterwards (lower is better).
#
#   Allocators: glibc malloc (what the binary links; the daemon trims it when it holds over
#   32 MiB unused, src/daemon/trim.rs), jemalloc and mimalloc loaded in its place with
#   LD_PRELOAD (Debian's libjemalloc2 and libmimalloc2.0; the same allocators as the
#   tikv-jemallocator and mimalloc crates), and, with BASE=path, an older build (one without
#   the trim, say) on glibc for before/after.
#
# How to run (as root: raises `ulimit -n`; may apt-get install libjemalloc2 libmimalloc2.0)
#   bench/rss-burst.sh
#   BURST=2000 NO_BUILD=1 bench/rss-burst.sh
#   BASE=/tmp/mta-stsd-before NO_BUILD=1 bench/rss-burst.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BURST="${BURST:-10000}"
SETTLE="${SETTLE:-10}"
BIN="${BIN:-target/release/mta-stsd}"

[ -n "${NO_BUILD:-}" ] || cargo build --release --locked --bin mta-stsd >&2
for lib in libjemalloc.so.2 libmimalloc.so.2; do
  [ -e "/usr/lib/x86_64-linux-gnu/$lib" ] ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjemalloc2 libmimalloc2.0 >&2
done
ulimit -n "$((BURST + 1024))" # per process: the daemon and the client each hold BURST

TMP=$(mktemp -d)
trap 'kill "${PID:-}" 2>/dev/null || true; rm -rf "$TMP"' EXIT

source bench/lib.sh # the script runs from the repo root

cat >"$TMP/burst.py" <<'EOF'
import socket, ssl, sys, time
port, n, pid, settle = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
host = "mta-sts.example.org"
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
req = ("GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode()

def rss():
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def connect():
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname=host)
    s.sendall(req)
    buf = b""
    while b"version: STSv1" not in buf or not buf.endswith(b"\r\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("closed before the answer")
        buf += chunk
    return s

for s in [connect() for _ in range(20)]:
    s.close()
time.sleep(1)
idle = rss()
conns = [connect() for _ in range(n)]
time.sleep(1)
peak = rss()
for s in conns:
    s.close()
time.sleep(settle)
print(idle, peak, rss())
EOF

run() { # name, binary, env...
  local name=$1 bin=$2
  shift 2
  local p a
  p=$(free_port)
  a=$(free_port)
  mkdir -p "$TMP/$name"
  cat >"$TMP/$name/mta-stsd.toml" <<EOF
[server]
https = ["127.0.0.1:$p"]
admin = "127.0.0.1:$a"
idle_timeout = "300s"
max_connections = $((BURST + 100))
max_connections_per_ip = $((BURST + 100))

[tls]
self_signed = true

[policy]
mode = "enforce"
mx = ["mail.example.org"]

[domains."example.org"]
EOF
  env "$@" STATE_DIRECTORY="$TMP/$name" "$bin" --config "$TMP/$name/mta-stsd.toml" serve 2>"$TMP/$name/log" &
  PID=$!
  wait_ready "$TMP/$name/log"
  read -r idle peak after < <(python3 "$TMP/burst.py" "$p" "$BURST" "$PID" "$SETTLE")
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=
  printf '%-10s %10s %10s %10s %8s%%\n' "$name" "$idle" "$peak" "$after" \
    "$(( (after - idle) * 100 / (peak - idle > 0 ? peak - idle : 1) ))"
}

printf '%-10s %10s %10s %10s %9s\n' allocator "idle kB" "peak kB" "after kB" "kept"
[ -z "${BASE:-}" ] || run base "$BASE"
run glibc "$BIN"
run jemalloc "$BIN" LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
run mimalloc "$BIN" LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2
echo "burst: $BURST TLS connections, one GET each, held, closed; VmRSS $SETTLE s after"
