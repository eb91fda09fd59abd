#!/usr/bin/env bash
# bench/drift.sh — `mta-stsd drift` over N domains (default 1,000) in one zone on a local BIND,
# the policies served by the local daemon.
#
# Setup: BIND on 127.0.0.1:<port> with every record `mta-stsd records` prints plus an MX per
# domain (so the world is clean: no findings); a test CA made with openssl and one certificate
# whose SANs are all N `mta-sts.dN.example.org` names (so the WebPKI check passes); the daemon
# serving them on 127.0.0.1:<port>; `[drift]` pointing at both (resolver, dns_port, https_port,
# ca). Per domain drift asks: SOA, the `_mta-sts` TXT of every nameserver, A and AAAA of the
# policy host, the HTTPS fetch (TCP, TLS handshake, GET), `_smtp._tls` TXT, MX — every DNS
# question on its own TCP connection.
#
# Prints the wall time of RUNS runs (default 3), domains per second, and the concurrency used
# (CONCURRENCY in src/drift/mod.rs).
#
# Run: bench/drift.sh [N] [RUNS]   (needs bind9, bind9-dnsutils, openssl, python3; loopback only)
set -euo pipefail
N=${1:-1000}
RUNS=${2:-3}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v named >/dev/null || PATH="$PATH:/usr/sbin"
for p in named dig openssl python3; do
  command -v "$p" >/dev/null || { echo "missing $p (apt-get install bind9 bind9-dnsutils openssl python3)" >&2; exit 1; }
done
cargo build --release --locked -q
BIN="$ROOT/target/release/mta-stsd"
CONCURRENCY=$(sed -n 's/^pub const CONCURRENCY: usize = \([0-9]*\);/\1/p' src/drift/mod.rs)

TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DNS_PORT=$(free_port)
HTTPS_PORT=$(free_port)

# --- the config (no [drift] yet) and the records it wants -------------------------------
python3 - "$TMP" "$N" "$HTTPS_PORT" <<'EOF'
import sys
tmp, n, https = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(f"{tmp}/policy.toml", "w") as f:
    f.write(f'''[server]
https = ["127.0.0.1:{https}"]
[tls]
certs = [{{ cert = "leaf.pem", key = "leaf.key" }}]
[policy]
mode = "enforce"
mx = ["mx1.example.org"]
[dns]
target = "mail.example.org."
tlsrpt = ["mailto:tlsrpt@example.org"]
''')
    for i in range(n):
        f.write(f'[domains."d{i}.example.org"]\n')
EOF

# --- a CA and one leaf for every mta-sts name --------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=mta-stsd bench CA" -keyout "$TMP/ca.key" -out "$TMP/ca.pem" 2>/dev/null
python3 - "$TMP" "$N" <<'EOF'
import sys
tmp, n = sys.argv[1], int(sys.argv[2])
with open(f"{tmp}/leaf.ext", "w") as f:
    f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    f.write("subjectAltName=" + ",".join(f"DNS:mta-sts.d{i}.example.org" for i in range(n)) + "\n")
EOF
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=mta-sts.d0.example.org" \
  -keyout "$TMP/leaf.key" -out "$TMP/leaf.csr" 2>/dev/null
openssl x509 -req -in "$TMP/leaf.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial \
  -days 30 -extfile "$TMP/leaf.ext" -out "$TMP/leaf.pem" 2>/dev/null

cp "$TMP/policy.toml" "$TMP/mta-stsd.toml"
"$BIN" --config "$TMP/mta-stsd.toml" records > "$TMP/records.txt"

# --- the zone: what `records` prints, an MX per domain, and the hosts ---------------------
python3 - "$TMP" <<'EOF'
import sys
tmp = sys.argv[1]
out = ["$TTL 300", "@ IN SOA ns1 hostmaster 1 3600 600 86400 300", "@ IN NS ns1",
       "ns1 IN A 127.0.0.1", "mail IN A 127.0.0.1", "mx1 IN A 127.0.0.1"]
domains = set()
for line in open(f"{tmp}/records.txt"):
    if line.startswith(";") or not line.strip():
        continue
    name, ttl, klass, rtype, data = line.rstrip("\n").split("\t", 4)
    out.append(f"{name} {ttl} {klass} {rtype} {data}")
    if name.startswith("_mta-sts."):
        domains.add(name[len("_mta-sts."):])
for d in sorted(domains):
    out.append(f"{d} 300 IN MX 10 mx1.example.org.")
open(f"{tmp}/zone.db", "w").write("\n".join(out) + "\n")
EOF

cat > "$TMP/named.conf" <<EOF
options { directory "$TMP"; listen-on port $DNS_PORT { 127.0.0.1; }; listen-on-v6 { none; };
  pid-file "$TMP/named.pid"; session-keyfile "$TMP/session.key"; recursion no;
  dnssec-validation no; notify no; allow-transfer { none; }; };
controls { };
zone "example.org" { type primary; file "$TMP/zone.db"; };
EOF
named -g -4 -c "$TMP/named.conf" > "$TMP/named.log" 2>&1 &
PIDS+=($!)
deadline=$((SECONDS + 20))
until dig +tcp +short +time=1 +tries=1 -p "$DNS_PORT" @127.0.0.1 example.org SOA | grep -q hostmaster; do
  (( SECONDS < deadline )) || { cat "$TMP/named.log"; exit 1; }
  sleep 0.1
done

cat >> "$TMP/mta-stsd.toml" <<EOF
[drift]
resolver = "127.0.0.1:$DNS_PORT"
dns_port = $DNS_PORT
https_port = $HTTPS_PORT
ca = "ca.pem"
EOF
"$BIN" --config "$TMP/mta-stsd.toml" check >/dev/null

# --- the daemon; its own first drift run (1 s after start) is waited out ------------------
RUST_LOG=info "$BIN" --config "$TMP/mta-stsd.toml" serve > "$TMP/serve.log" 2>&1 &
PIDS+=($!)
deadline=$((SECONDS + 120))
until grep -q "drift checked" "$TMP/serve.log"; do
  (( SECONDS < deadline )) || { tail -20 "$TMP/serve.log"; exit 1; }
  kill -0 "${PIDS[-1]}" 2>/dev/null || { tail -20 "$TMP/serve.log"; exit 1; }
  sleep 0.2
done

# --- the runs ------------------------------------------------------------------------------
now() { date +%s.%N; }
TIMES=()
for r in $(seq 1 "$RUNS"); do
  t0=$(now)
  set +e; "$BIN" --config "$TMP/mta-stsd.toml" drift --format json > "$TMP/drift.json"; rc=$?; set -e
  t1=$(now)
  TIMES+=("$t0" "$t1")
  if [ "$rc" -ne 0 ]; then
    echo "run $r: drift exited $rc (findings appear in the numbers; first ones:)" >&2
    "$BIN" --config "$TMP/mta-stsd.toml" drift --format text | head -5 >&2 || true
  fi
done

python3 - "$N" "$CONCURRENCY" "$TMP/drift.json" "${TIMES[@]}" <<'EOF'
import json, statistics, sys
n, conc, report = int(sys.argv[1]), sys.argv[2], json.load(open(sys.argv[3]))
t = list(map(float, sys.argv[4:]))
secs = [t[i + 1] - t[i] for i in range(0, len(t), 2)]
c = report["counts"]
print(f"{n} domains, one zone, local BIND + local daemon (HTTPS, one certificate with {n} SANs)")
print(f"  concurrency (src/drift/mod.rs CONCURRENCY): {conc}")
print(f"  last report: status {report['status']}, {c['critical']} critical, {c['warning']} warning, "
      f"{c['unknown']} could not check")
for i, s in enumerate(secs, 1):
    print(f"  run {i}: {s:6.2f} s  {n / s:8.0f} domains/s")
med = statistics.median(secs)
print(f"  median: {med:6.2f} s  {n / med:8.0f} domains/s")
EOF
