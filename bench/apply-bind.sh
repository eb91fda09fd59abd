#!/usr/bin/env bash
# bench/apply-bind.sh — publishing N domains (default 10,000) into one zone on a local BIND.
#
# Measures, in one run against the same BIND build:
#   1. `mta-stsd apply` from scratch: zone discovery (SOA), reads, plan, UPDATEs (3 records a
#      domain: _mta-sts TXT, mta-sts CNAME, _smtp._tls TXT);
#   2. `mta-stsd plan` right after: the no-op (reads and plan only);
#   3. the reference: `nsupdate` adding the same records to a fresh copy of the zone, in
#      messages of the same size (one `send` per 200 domains), TSIG-signed with the same key.
# Prints seconds, records/s and the ratio mta-stsd apply / nsupdate.
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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_named() { # $1 = dir
  local dir=$1 port
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
  dnssec-validation no; notify no; allow-transfer { none; }; };
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
PORT=$(start_named "$TMP/a")
REF_PORT=$(start_named "$TMP/b")

python3 - "$TMP" "$N" "$PORT" <<'EOF'
import sys
tmp, n, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(f"{tmp}/mta-stsd.toml", "w") as f:
    f.write(f'''[server]
https = ["127.0.0.1:0"]
[tls]
self_signed = true
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
    for i in range(n):
        f.write(f'[domains."d{i}.example.org"]\n')
EOF

"$BIN" --config "$TMP/mta-stsd.toml" records > "$TMP/records.txt"
# The same records as nsupdate commands, one `send` per 200 domains (as mta-stsd packs them).
python3 - "$TMP" "$REF_PORT" <<'EOF'
import sys
tmp, port = sys.argv[1], sys.argv[2]
out = [f"server 127.0.0.1 {port}", "zone example.org"]
domains = 0
for line in open(f"{tmp}/records.txt"):
    if line.startswith(";") or not line.strip():
        if line.startswith("; d"):
            domains += 1
            if domains % 200 == 0:
                out.append("send")
        continue
    name, ttl, _in, rtype, data = line.rstrip("\n").split("\t", 4)
    out.append(f"update add {name} {ttl} {rtype} {data}")
out.append("send")
open(f"{tmp}/nsupdate.txt", "w").write("\n".join(out) + "\n")
EOF
RECORDS=$(grep -c '^[^;]' "$TMP/records.txt" || true)

now() { date +%s.%N; }
t0=$(now); "$BIN" --config "$TMP/mta-stsd.toml" apply > "$TMP/apply.out"; t1=$(now)
t2=$(now); set +e; "$BIN" --config "$TMP/mta-stsd.toml" plan > "$TMP/plan.out"; rc=$?; set -e; t3=$(now)
[ "$rc" -eq 0 ] || { echo "plan after apply exited $rc:"; tail -5 "$TMP/plan.out"; exit 1; }
t4=$(now); nsupdate -y "$(awk '/secret/ {gsub(/[";]/,"",$2); print "hmac-sha256:mta-stsd:" $2}' "$TMP/key.conf")" "$TMP/nsupdate.txt"; t5=$(now)

python3 - "$N" "$RECORDS" "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" <<'EOF'
import sys
n, rec = int(sys.argv[1]), int(sys.argv[2])
t = list(map(float, sys.argv[3:]))
apply, plan, ref = t[1]-t[0], t[3]-t[2], t[5]-t[4]
print(f"{n} domains, {rec} records, one zone, local BIND")
print(f"  mta-stsd apply (from scratch): {apply:7.2f} s  {rec/apply:9.0f} records/s")
print(f"  mta-stsd plan (no-op):         {plan:7.2f} s  {n/plan:9.0f} domains/s")
print(f"  nsupdate (same adds, batched): {ref:7.2f} s  {rec/ref:9.0f} records/s")
print(f"  ratio apply / nsupdate time:   {apply/ref:7.2f}  (reads + plan + prerequisites included in apply)")
EOF
