#!/usr/bin/env bash
# bench/busy-attacks.sh — policy fetches from a new sender while busy connections hold the cap
# (issue 23 item 1)
#
# What it measures
#   A `mta-stsd serve` on loopback (one domain, a `[tlsrpt]` host, self-signed certificates,
#   max_connections = CONNS, handshake_timeout = 3s). Three phases of DURATION s each:
#     1. alone:  policy fetches only;
#     2. drip:   CONNS TLS connections from 127.0.0.2-5 (CONNS/4 each) POST a report whose body
#                comes one byte every 100 ms (Content-Length 100000);
#     3. h2ping: CONNS HTTP/2 connections from the same addresses send only PINGs, every 100 ms.
#   The attacker keeps the pressure on: a connection that is closed is opened again at once.
#   Meanwhile a sender at 127.0.0.6 fetches the policy in a loop, a new TLS connection per fetch
#   (as a sender does, once per max_age), each bounded at 10 s. Printed per phase: fetches,
#   failures (timeouts, resets), latency p50/p99/max in ms, the connections the daemon evicted,
#   and p50/p99 against the phase alone. The attacker (one Python thread), the sender and the
#   daemon share the machine: the figures are this machine's with all of it on one box; the
#   load average is printed first.
#
# How to run
#   bench/busy-attacks.sh
#   DURATION=10 CONNS=200 NO_BUILD=1 BIN=target/debug/mta-stsd bench/busy-attacks.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-20}"
CONNS="${CONNS:-200}"
BIN="${BIN:-target/release/mta-stsd}"

[ -n "${NO_BUILD:-}" ] || cargo build --release --locked --bin mta-stsd >&2

TMP=$(mktemp -d)
PID=
cleanup() {
  [ -z "$PID" ] || kill "$PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
source bench/lib.sh # the script runs from the repo root

cat >"$TMP/load.py" <<'EOF'
import socket, ssl, sys, threading, time

port, conns, duration, mode = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
POLICY_HOST, REPORT_HOST = "mta-sts.example.org", "tlsrpt.example.org"
SOURCES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]

def ctx(alpn):
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.set_alpn_protocols([alpn])
    return c

H1, H2 = ctx("http/1.1"), ctx("h2")

def frame(kind, flags, stream, payload):  # RFC 9113 §4.1
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload

if mode == "drip":
    HOST, TLS = REPORT_HOST, H1
    BEGIN = ("POST /v1/tlsrpt HTTP/1.1\r\nHost: %s\r\nContent-Type: application/tlsrpt+json\r\n"
             "Content-Length: 100000\r\n\r\n{" % REPORT_HOST).encode()
    TICK = b" "
else:
    HOST, TLS = POLICY_HOST, H2
    BEGIN = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"")
    TICK = frame(6, 0, 0, b"\x07" * 8)

def attacker_conn(src):
    raw = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0))
    s = TLS.wrap_socket(raw, server_hostname=HOST)
    s.sendall(BEGIN)
    s.setblocking(False)
    return s

def attack(stop, opened):
    held = [None] * conns
    while not stop.is_set():
        t = time.monotonic()
        for i in range(conns):
            try:
                if held[i] is None:
                    held[i] = attacker_conn(SOURCES[i % 4])
                    opened[0] += 1
                else:
                    try:
                        while held[i].recv(65536):
                            pass
                    except (ssl.SSLWantReadError, BlockingIOError):
                        pass
                    held[i].send(TICK)
            except (OSError, ssl.SSLError):
                held[i] = None
            if stop.is_set():
                break
        time.sleep(max(0, 0.1 - (time.monotonic() - t)))
    for s in held:
        if s is not None:
            s.close()

def fetch_once():
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.6", 0))
    raw.settimeout(10)
    s = H1.wrap_socket(raw, server_hostname=POLICY_HOST)
    s.sendall(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
              % POLICY_HOST.encode())
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out.startswith(b"HTTP/1.1 200 ") and b"version: STSv1" in out

stop, opened = threading.Event(), [0]
if mode != "alone":
    threading.Thread(target=attack, args=(stop, opened), daemon=True).start()
    time.sleep(3)  # the cap reached
lat, failed = [], 0
end = time.time() + duration
while time.time() < end:
    t = time.perf_counter()
    try:
        ok = fetch_once()
    except (OSError, ssl.SSLError):
        ok = False
    if ok:
        lat.append(time.perf_counter() - t)
    else:
        failed += 1
    time.sleep(0.02)
stop.set()
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
print(len(lat), failed, "%.1f" % q(0.5), "%.1f" % q(0.99), "%.1f" % (lat[-1] * 1000 if lat else float("nan")),
      opened[0])
EOF

p=$(free_port)
a=$(free_port)
mkdir -p "$TMP/state"
cat >"$TMP/mta-stsd.toml" <<EOF
[server]
https = ["127.0.0.1:$p"]
admin = "127.0.0.1:$a"
max_connections = $CONNS
handshake_timeout = "3s"

[tls]
self_signed = true

[state]
dir = "$TMP/state"

[policy]
mode = "testing"
mx = ["mail.example.org"]
max_age = 86400

[domains."example.org"]

[tlsrpt]
hosts = ["tlsrpt.example.org"]
path = "/v1/tlsrpt"
EOF
"$BIN" --config "$TMP/mta-stsd.toml" serve 2>"$TMP/log" &
PID=$!
wait_ready "$TMP/log"

evicted() { python3 -c 'import sys, urllib.request
for l in urllib.request.urlopen(sys.argv[1]).read().decode().splitlines():
    if l.startswith("mta_stsd_connections_evicted_total "): print(int(float(l.split()[1])))' \
  "http://127.0.0.1:$a/metrics"; }

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs); $CONNS busy connections, ${DURATION}s a phase; ms"
printf '%-7s %7s %6s | %7s %7s %8s | %8s %8s | %s\n' phase fetches failed p50 p99 max evicted opened "p50/p99 vs alone"
base50= base99=
for mode in alone drip h2ping; do
  before=$(evicted)
  read -r n failed p50 p99 max opened < <(python3 "$TMP/load.py" "$p" "$CONNS" "$DURATION" "$mode")
  after=$(evicted)
  if [ "$mode" = alone ]; then base50=$p50 base99=$p99; fi
  ratio=$(python3 -c "import sys; a,b,c,d=map(float,sys.argv[1:]); print('%.1fx %.1fx' % (a/c, b/d))" \
    "$p50" "$p99" "$base50" "$base99")
  printf '%-7s %7s %6s | %7s %7s %8s | %8s %8s | %s\n' "$mode" "$n" "$failed" "$p50" "$p99" "$max" \
    "$((after - before))" "$opened" "$ratio"
  sleep 2 # the attacker's connections closed before the next phase
done
