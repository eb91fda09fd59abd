#!/usr/bin/env bash
# bench/apply-bind.sh — publishing N domains (default 10,000) into one zone on a local BIND.
#
# Measures, in one run against the same BIND build:
#   1. `mta-stsd apply` from scratch: zone discovery (SOA), reads, plan, UPDATEs (3 records a
#      domain: _mta-sts TXT, mta-sts CNAME, _smtp._tls TXT), on a server whose key may
#      transfer the zone;
#   2. `mta-stsd plan` right after: the no-op (discovery, reads, plan), reads by one AXFR;
#   3. the reference: `nsupdate` adding the same records to a fresh copy of the zone, in
#      messages of the same size (one `send` per 200 domains), TSIG-signed with the same key;
#      and nsupdate again with the prerequisites mta-stsd sends (nxrrset per add), on a third;
#   4. `mta-stsd plan` (no-op) against that copy, whose server refuses transfers: reads by
#      pipelined queries;
#   5. the read reference: each of those RRsets asked once, pipelined on one TCP connection
#      (a small Python client), against the copy;
#   6. both plans again with every domain's `zone` given (no discovery): the reads alone, one
#      AXFR against pipelined queries (their ratio is where a transfer stops paying, in records
#      of the zone per name asked: rfc2136/read.rs TRANSFER_MAX_PER_NAME).
# Prints seconds, rates and the ratios against the references.
#
# Run: bench/apply-bind.sh [N]      (needs bind9, bind9-utils, bind9-dnsutils; loopback only)
set -euo pipefail
N=${1:-10000}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v named >/dev/null || PATH="$PATH:/usr/sbin"
for p in named tsig-keygen nsupdate dig python3; do
  command -v "$p" >/dev/null || { echo "missing $p (apt-get install bind9 bind9-utils bind9-dnsutils)" >&2; exit 1; }
done
cargo build --release --locked -q
BIN="$ROOT/target/release/mta-stsd"

TMP=$(mktemp -d)
# Server pids go to a file: start_named runs inside $( ), a subshell.
cleanup() { [ -f "$TMP/pids" ] && while read -r p; do kill "$p" 2>/dev/null || true; done < "$TMP/pids"; rm -rf "$TMP"; }
trap cleanup EXIT

source bench/lib.sh # the script runs from the repo root

start_named() { # $1 = dir, $2 = allow-transfer list
  local dir=$1 transfer=$2 port
  port=$(free_port)
  mkdir -p "$dir"
  cat > "$dir/zone.db" <<EOF
\$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
ns1 IN A 127.0.0.1
EOF
  cat > "$dir/named.conf" <<EOF
include "$TMP/key.conf";
options { directory "$dir"; listen-on port $port { 127.0.0.1; }; listen-on-v6 { none; };
  pid-file "$dir/named.pid"; session-keyfile "$dir/session.key"; recursion no;
  dnssec-validation no; notify no; allow-transfer { $transfer }; };
controls { };
zone "example.org" { type primary; file "$dir/zone.db"; allow-update { key "mta-stsd"; }; };
EOF
  named -g -4 -c "$dir/named.conf" > "$dir/named.log" 2>&1 &
  echo $! >> "$TMP/pids"
  local deadline=$((SECONDS + 20))
  until dig +tcp +short +time=1 +tries=1 -p "$port" @127.0.0.1 example.org SOA | grep -q hostmaster; do
    (( SECONDS < deadline )) || { cat "$dir/named.log"; exit 1; }
    sleep 0.1
  done
  echo "$port"
}

tsig-keygen -a hmac-sha256 mta-stsd > "$TMP/key.conf"
PORT=$(start_named "$TMP/a" 'key "mta-stsd";')
REF_PORT=$(start_named "$TMP/b" 'none;')
PRE_PORT=$(start_named "$TMP/c" 'none;')

python3 - "$TMP" "$N" "$PORT" "$REF_PORT" <<'EOF'
import sys
tmp, n = sys.argv[1], int(sys.argv[2])
# The -zoned configs name each domain's zone: no discovery, so their plans time the reads alone.
for conf, port, zoned in (("mta-stsd.toml", sys.argv[3], False), ("ref.toml", sys.argv[4], False),
                          ("zoned.toml", sys.argv[3], True), ("ref-zoned.toml", sys.argv[4], True)):
    with open(f"{tmp}/{conf}", "w") as f:
        f.write(f'''[server]
https = ["127.0.0.1:0"]
[tls]
self_signed = true
[state]
dir = "state-{conf}"
[policy]
mode = "enforce"
mx = ["mail.example.org"]
[dns]
target = "mail.example.org."
tlsrpt = ["mailto:tlsrpt@example.org"]
provider = "bind"
[providers.bind]
kind = "rfc2136"
server = "127.0.0.1:{port}"
tsig_key = "key.conf"
''')
        zone = 'zone = "example.org"\n' if zoned else ""
        for i in range(n):
            f.write(f'[domains."d{i}.example.org"]\n{zone}')
EOF

"$BIN" --config "$TMP/mta-stsd.toml" records > "$TMP/records.txt"
# The same records as nsupdate commands, one `send` per 200 domains (as mta-stsd packs them);
# and again, to a third server, each add after the prerequisite mta-stsd sends with it (RFC 2136
# §2.4.3: no RRset of that type there yet).
python3 - "$TMP" "$REF_PORT" "$PRE_PORT" <<'EOF'
import sys
tmp, port, pre_port = sys.argv[1], sys.argv[2], sys.argv[3]
out = [f"server 127.0.0.1 {port}", "zone example.org"]
pre = [f"server 127.0.0.1 {pre_port}", "zone example.org"]
domains = 0
for line in open(f"{tmp}/records.txt"):
    if line.startswith(";") or not line.strip():
        if line.startswith("; d"):
            domains += 1
            if domains % 200 == 0:
                out.append("send")
                pre.append("send")
        continue
    name, ttl, _in, rtype, data = line.rstrip("\n").split("\t", 4)
    out.append(f"update add {name} {ttl} {rtype} {data}")
    pre.append(f"prereq nxrrset {name} {rtype}")
    pre.append(f"update add {name} {ttl} {rtype} {data}")
out.append("send")
pre.append("send")
open(f"{tmp}/nsupdate.txt", "w").write("\n".join(out) + "\n")
open(f"{tmp}/nsupdate-pre.txt", "w").write("\n".join(pre) + "\n")
EOF
RECORDS=$(grep -c '^[^;]' "$TMP/records.txt" || true)

now() { date +%s.%N; }
plan() { # $1 = config; fails unless plan finds nothing to do
  local rc
  set +e; "$BIN" --config "$1" plan > "$TMP/plan.out"; rc=$?; set -e
  [ "$rc" -eq 0 ] || { echo "plan on $1 exited $rc:"; tail -5 "$TMP/plan.out"; exit 1; }
}
t0=$(now); "$BIN" --config "$TMP/mta-stsd.toml" apply > "$TMP/apply.out"; t1=$(now)
t2=$(now); plan "$TMP/mta-stsd.toml"; t3=$(now)
KEY="$(awk '/secret/ {gsub(/[";]/,"",$2); print "hmac-sha256:mta-stsd:" $2}' "$TMP/key.conf")"
t4=$(now); nsupdate -y "$KEY" "$TMP/nsupdate.txt"; t5=$(now)
t12=$(now); nsupdate -y "$KEY" "$TMP/nsupdate-pre.txt"; t13=$(now)
t6=$(now); plan "$TMP/ref.toml"; t7=$(now)
t8=$(now); plan "$TMP/zoned.toml"; t9=$(now)
t10=$(now); plan "$TMP/ref-zoned.toml"; t11=$(now)
# The read reference: each (name, type) of records.txt asked once, pipelined on one connection.
READ=$(python3 - "$TMP" "$REF_PORT" <<'EOF'
import socket, struct, sys, time
tmp, port = sys.argv[1], int(sys.argv[2])
types = {"TXT": 16, "CNAME": 5}
qs = []
for line in open(f"{tmp}/records.txt"):
    if line.startswith(";") or not line.strip():
        continue
    name, _ttl, _in, rtype, _ = line.split("\t", 4)
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    qs.append((wire, types[rtype]))
t0 = time.time()
s = socket.create_connection(("127.0.0.1", port))
out = bytearray()
for i, (wire, t) in enumerate(qs):
    m = struct.pack(">HHHHHH", i & 0xffff, 0, 1, 0, 0, 0) + wire + struct.pack(">HH", t, 1)
    out += struct.pack(">H", len(m)) + m
s.sendall(out)
f = s.makefile("rb")
for _ in qs:
    (n,) = struct.unpack(">H", f.read(2))
    f.read(n)
print(f"{time.time() - t0:.3f} {len(qs)}")
EOF
)

python3 - "$N" "$RECORDS" $READ "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" "$t6" "$t7" "$t8" "$t9" "$t10" "$t11" "$t12" "$t13" <<'EOF'
import sys
n, rec, read, asked = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
t = list(map(float, sys.argv[5:]))
apply, plan, ref, plan_q = t[1]-t[0], t[3]-t[2], t[5]-t[4], t[7]-t[6]
zoned, zoned_q, pre = t[9]-t[8], t[11]-t[10], t[13]-t[12]
print(f"{n} domains, {rec} records, one zone, local BIND")
print(f"  mta-stsd apply (from scratch):         {apply:7.2f} s  {rec/apply:9.0f} records/s")
print(f"  mta-stsd plan (no-op, one AXFR):       {plan:7.2f} s  {n/plan:9.0f} domains/s")
print(f"  mta-stsd plan (no-op, queries):        {plan_q:7.2f} s  {n/plan_q:9.0f} domains/s")
print(f"  nsupdate (same adds, batched):         {ref:7.2f} s  {rec/ref:9.0f} records/s")
print(f"  pipelined read ({asked} RRsets, 1 conn): {read:7.2f} s")
print(f"  nsupdate, same prerequisites too:      {pre:7.2f} s  {rec/pre:9.0f} records/s")
print(f"  ratio apply / nsupdate:                {apply/ref:7.2f}  (discovery, reads, plan, prerequisites included)")
print(f"  ratio apply / nsupdate+prerequisites:  {apply/pre:7.2f}")
print(f"  ratio plan (AXFR) / pipelined read:    {plan/read:7.2f}  (process start, config, discovery included)")
print(f"  ratio plan (queries) / pipelined read: {plan_q/read:7.2f}")
print(f"  zones given (no discovery): plan by AXFR {zoned:.2f} s, by queries {zoned_q:.2f} s,"
      f" ratio {zoned_q/zoned:.2f}")
EOF
