#!/usr/bin/env bash
# bench/reconcile-zones.sh — reconciles of N one-domain zones on a local BIND (issue 16 item 2:
# a hosting provider with a zone per customer).
#
# Measures, in one run against one BIND serving N zones (z0.example … ):
#   1. `mta-stsd apply` from scratch (every zone discovered, read and written once);
#   2. `serve` with `[dns] reconcile` every PERIOD seconds, nothing changed: from BIND's query
#      log (millisecond times, the client's port per query), each reconcile round's span from
#      its first query to its last, its queries (all should be SOA) and its connections;
#   3. the reference: the same N SOA questions pipelined on one TCP connection (Python).
# Prints the median round of the idle reconciles and its ratio to the reference, both timed from
# BIND's log (its first query to its last).
#
# Run: bench/reconcile-zones.sh [N]      (default 1000; needs bind9, bind9-utils, python3)
#      BIN=/path/to/mta-stsd bench/reconcile-zones.sh 10000   (another build, no cargo build)
set -euo pipefail
N=${1:-1000}
ROUNDS=${ROUNDS:-3}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v named >/dev/null || PATH="$PATH:/usr/sbin"
for p in named tsig-keygen dig python3; do
  command -v "$p" >/dev/null || { echo "missing $p (apt-get install bind9 bind9-utils bind9-dnsutils)" >&2; exit 1; }
done
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -q
  BIN="$ROOT/target/release/mta-stsd"
fi
# A round must end before the next starts for the rounds to be told apart.
PERIOD=${PERIOD:-$(( N / 1000 + 3 ))}

TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; if [ -n "${KEEP:-}" ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi; }
trap cleanup EXIT
source bench/lib.sh # the script runs from the repo root
PORT=$(free_port)

tsig-keygen -a hmac-sha256 mta-stsd > "$TMP/key.conf"
python3 - "$TMP" "$N" "$PORT" "$PERIOD" <<'EOF'
import os, sys
tmp, n, port, period = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.makedirs(f"{tmp}/zones")
zones = []
for i in range(n):
    with open(f"{tmp}/zones/z{i}.db", "w") as f:
        f.write(f"$TTL 300\n@ IN SOA ns1.z{i}.example. hostmaster 1 3600 600 86400 300\n"
                f"@ IN NS ns1\nns1 IN A 127.0.0.1\n")
    zones.append(f'zone "z{i}.example" {{ type primary; file "{tmp}/zones/z{i}.db"; '
                 f'allow-update {{ key "mta-stsd"; }}; }};\n')
with open(f"{tmp}/named.conf", "w") as f:
    f.write(f'''include "{tmp}/key.conf";
options {{ directory "{tmp}"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};
  pid-file "{tmp}/named.pid"; session-keyfile "{tmp}/session.key"; recursion no;
  dnssec-validation no; notify no; allow-transfer {{ none; }}; querylog yes; }};
controls {{ }};
# -g logs everything, queries too, with times, to stderr (named.log).
''')
    f.write("".join(zones))
with open(f"{tmp}/mta-stsd.toml", "w") as f:
    f.write(f'''[server]
https = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
[tls]
self_signed = true
[state]
dir = "state"
[policy]
mode = "enforce"
mx = ["mail.example.org"]
[dns]
target = "mail.example.org."
tlsrpt = ["mailto:tlsrpt@example.org"]
provider = "bind"
reconcile = "{period}s"
[providers.bind]
kind = "rfc2136"
server = "127.0.0.1:{port}"
tsig_key = "key.conf"
''')
    for i in range(n):
        f.write(f'[domains."z{i}.example"]\n')
EOF
named -g -4 -c "$TMP/named.conf" > "$TMP/named.log" 2>&1 &
pids+=($!)
deadline=$((SECONDS + 120))
# Zones load in no particular order: wait for all of them.
until grep -q "all zones loaded" "$TMP/named.log"; do
  (( SECONDS < deadline )) || { tail -20 "$TMP/named.log"; exit 1; }
  sleep 0.2
done

now() { date +%s.%N; }
t0=$(now); "$BIN" --config "$TMP/mta-stsd.toml" apply > "$TMP/apply.out"; t1=$(now)

# The reference: every zone's SOA, pipelined on one connection.
ref_lines=$(wc -l < "$TMP/named.log")
REF=$(python3 - "$N" "$PORT" <<'EOF'
import socket, struct, sys, time
n, port = int(sys.argv[1]), int(sys.argv[2])
t0 = time.time()
s = socket.create_connection(("127.0.0.1", port))
out = bytearray()
for i in range(n):
    wire = b"".join(bytes([len(l)]) + l.encode() for l in f"z{i}.example".split(".")) + b"\0"
    m = struct.pack(">HHHHHH", i & 0xffff, 0, 1, 0, 0, 0) + wire + struct.pack(">HH", 6, 1)
    out += struct.pack(">H", len(m)) + m
s.sendall(out)
f = s.makefile("rb")
for _ in range(n):
    (k,) = struct.unpack(">H", f.read(2))
    f.read(k)
print(f"{time.time() - t0:.3f}")
EOF
)

start_lines=$(wc -l < "$TMP/named.log")
(cd "$TMP" && exec "$BIN" --config "$TMP/mta-stsd.toml" serve > "$TMP/serve.log" 2>&1) &
pids+=($!)
# The first round reads everything (a fresh daemon knows no serial); then ROUNDS idle ones.
sleep $(( PERIOD * (ROUNDS + 1) + 2 ))

python3 - "$TMP/named.log" "$ref_lines" "$start_lines" "$N" "$REF" "$t0" "$t1" "$PERIOD" <<'EOF'
import datetime, statistics, sys
log, ref_skip, skip, n, ref, t0, t1, period = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), sys.argv[8]
lines = open(log).read().splitlines()
def when(line):
    date, time_ = line.split(" ", 2)[:2]
    return datetime.datetime.strptime(f"{date} {time_}", "%d-%b-%Y %H:%M:%S.%f").timestamp()
# The reference as the server saw it: its first query to its last.
ref_q = [when(l) for l in lines[ref_skip:skip] if ": query: " in l]
ref_span = ref_q[-1] - ref_q[0]
qs = []
for line in lines[skip:]:
    if ": query: " not in line:
        continue
    date, time_, rest = line.split(" ", 2)
    at = datetime.datetime.strptime(f"{date} {time_}", "%d-%b-%Y %H:%M:%S.%f").timestamp()
    client, q = rest.split(": query: ", 1)
    peer = next(w for w in client.split() if "#" in w)
    name, _cls, rtype = q.split()[:3]
    qs.append((at, peer, rtype))
# Rounds: bursts separated by a second or more of quiet.
rounds, cur = [], []
for q in qs:
    if cur and q[0] - cur[-1][0] >= 1.0:
        rounds.append(cur)
        cur = []
    cur.append(q)
if cur:
    rounds.append(cur)
print(f"{n} one-domain zones, local BIND, reconcile every {period} s")
print(f"  mta-stsd apply (from scratch):        {t1 - t0:7.2f} s")
for i, r in enumerate(rounds):
    soa = sum(1 for q in r if q[2] == "SOA")
    print(f"  round {i + 1}: {r[-1][0] - r[0][0]:7.3f} s, {len(r)} queries ({soa} SOA), "
          f"{len({q[1] for q in r})} connections")
idle = [r for r in rounds[1:] if all(q[2] == "SOA" for q in r) and len(r) >= n]
if not idle:
    sys.exit("no idle reconcile round seen")
span = statistics.median(r[-1][0] - r[0][0] for r in idle)
print(f"  idle reconcile (median of {len(idle)}): {span:7.3f} s, "
      f"{statistics.median(len({q[1] for q in r}) for r in idle):.0f} connections")
print(f"  pipelined SOA read (1 conn):          {ref_span:7.3f} s at the server ({ref:.3f} s at the client)")
print(f"  ratio idle reconcile / pipelined read: {span / ref_span:6.2f}  (both first to last query at the server)")
EOF
