#!/usr/bin/env bash
# bench/drift.sh — `mta-stsd drift` over N domains (default 1,000) in one zone on a local BIND,
# the policies served by the local daemon, the MX check on: every domain names the same two MX
# hosts, served by a real Postfix with STARTTLS.
#
# Setup: BIND on 127.0.0.1:<port> with every record `mta-stsd records` prints plus two MX per
# domain (so the world is clean: no findings); a test CA made with openssl, certificates for
# the `mta-sts.dN.example.org` names (so the WebPKI check passes; SANS names each, default 1)
# and one for mx1/mx2.example.org; the daemon serving the policies on 127.0.0.1:<port>; Postfix smtpd on
# 127.0.0.3 and 127.0.0.4:<port>; `[drift]` pointing at all three (resolver, dns_port,
# https_port, smtp_port, ca). Per domain drift asks: SOA, the `_mta-sts` TXT of every
# nameserver, A and AAAA of the policy host, the HTTPS fetch (TCP, TLS handshake, GET),
# `_smtp._tls` TXT, MX (once, for both the coverage and the MX-TLS check); per run, each MX host
# once: A, AAAA, TLSA, banner, EHLO, STARTTLS, certificate. DNS over UDP, sockets shared.
#
# Reference, in the same run against the same BIND: `dig -f` asking the same DNS questions
# (6 per domain) one after another over UDP — the DNS part alone, without HTTPS or SMTP.
# Prints for RUNS rounds (default 3) of both: wall time, domains per second, CPU time (own, and
# the daemon's and BIND's), the median, and the ratios; and the concurrency used
# (CONCURRENCY in src/drift/mod.rs).
#
# BEFORE=/path/to/an/older/mta-stsd runs that binary's `drift` too in every round (same world,
# same daemon), for a before/after ratio from one run. UDP datagrams the kernel dropped for a
# full receive buffer (/proc/net/snmp RcvbufErrors) are counted per run: each costs a resend.
#
# Run: [SANS=100] [BEFORE=bin] [NO_BUILD=1] [BIN=bin] bench/drift.sh [N] [RUNS]
# (needs bind9, bind9-dnsutils, postfix, openssl, python3; root for Postfix; loopback only)
set -euo pipefail
N=${1:-1000}
RUNS=${2:-3}
# Names per policy-host certificate: default 1, as `[acme]` orders them (one per policy host);
# certbot-style SAN certificates hold up to 100 (Let's Encrypt's limit).
SANS=${SANS:-1}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v named >/dev/null || PATH="$PATH:/usr/sbin"
for p in named dig postfix openssl python3; do
  command -v "$p" >/dev/null || { echo "missing $p (apt-get install bind9 bind9-dnsutils postfix openssl python3)" >&2; exit 1; }
done
[ -n "${NO_BUILD:-}" ] || cargo build --release --locked -q
BIN="${BIN:-$ROOT/target/release/mta-stsd}"
BEFORE="${BEFORE:-}"
CONCURRENCY=$(sed -n 's/^pub const CONCURRENCY: usize = \([0-9]*\);/\1/p' src/drift/mod.rs)

TMP=$(mktemp -d)
# The findings kept between runs go here, not into the machine's /var/lib/mta-stsd.
export STATE_DIRECTORY="$TMP/state"
mkdir -p "$STATE_DIRECTORY"
PIDS=()
cleanup() {
  if [ -f "$TMP/pf/queue/pid/master.pid" ]; then kill "$(cat "$TMP/pf/queue/pid/master.pid")" 2>/dev/null || true; fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

source bench/lib.sh # the script runs from the repo root
DNS_PORT=$(free_port)
HTTPS_PORT=$(free_port)
SMTP_PORT=$(free_port)

# --- the config (no [drift] yet) and the records it wants -------------------------------
python3 - "$TMP" "$N" "$HTTPS_PORT" "$SANS" <<'EOF'
import sys
tmp, n, https, sans = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
certs = ", ".join(f'{{ cert = "leaf{c}.pem", key = "leaf{c}.key" }}' for c in range(0, n, sans))
with open(f"{tmp}/policy.toml", "w") as f:
    f.write(f'''[server]
https = ["127.0.0.1:{https}"]
admin = "127.0.0.1:0"
[tls]
certs = [{certs}]
[policy]
mode = "enforce"
mx = ["mx1.example.org", "mx2.example.org"]
[dns]
target = "mail.example.org."
tlsrpt = ["mailto:tlsrpt@example.org"]
''')
    for i in range(n):
        f.write(f'[domains."d{i}.example.org"]\n')
EOF

# --- a CA, leaves for the mta-sts names (SANS a leaf), one for both MX ---------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=mta-stsd bench CA" -keyout "$TMP/ca.key" -out "$TMP/ca.pem" 2>/dev/null
# One key and request for every leaf (the names come from the extensions file).
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=mta-stsd bench leaf" \
  -keyout "$TMP/leaf.key" -out "$TMP/leaf.csr" 2>/dev/null
for ((c = 0; c < N; c += SANS)); do
  hi=$(( c + SANS < N ? c + SANS : N ))
  { printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName='
    for ((i = c; i < hi; i++)); do printf '%sDNS:mta-sts.d%d.example.org' "$([ $i -gt $c ] && echo ,)" "$i"; done
    echo; } > "$TMP/leaf.ext"
  cp "$TMP/leaf.key" "$TMP/leaf$c.key"
  openssl x509 -req -in "$TMP/leaf.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial \
    -days 30 -extfile "$TMP/leaf.ext" -out "$TMP/leaf$c.pem" 2>/dev/null
done

printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:mx1.example.org,DNS:mx2.example.org\n' > "$TMP/mx.ext"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=mx1.example.org" \
  -keyout "$TMP/mx.key" -out "$TMP/mx.csr" 2>/dev/null
openssl x509 -req -in "$TMP/mx.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial \
  -days 30 -extfile "$TMP/mx.ext" -out "$TMP/mx.pem" 2>/dev/null

cp "$TMP/policy.toml" "$TMP/mta-stsd.toml"
"$BIN" --config "$TMP/mta-stsd.toml" records > "$TMP/records.txt"

# --- the zone: what `records` prints, an MX per domain, and the hosts ---------------------
python3 - "$TMP" <<'EOF'
import sys
tmp = sys.argv[1]
out = ["$TTL 300", "@ IN SOA ns1 hostmaster 1 3600 600 86400 300", "@ IN NS ns1",
       "ns1 IN A 127.0.0.1", "mail IN A 127.0.0.1", "mx1 IN A 127.0.0.3", "mx2 IN A 127.0.0.4"]
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
    out.append(f"{d} 300 IN MX 20 mx2.example.org.")
open(f"{tmp}/zone.db", "w").write("\n".join(out) + "\n")
# The reference: the DNS questions drift asks per domain, for `dig -f`.
with open(f"{tmp}/questions.txt", "w") as f:
    for d in sorted(domains):
        d = d.rstrip(".")
        for q in (f"_mta-sts.{d} SOA", f"_mta-sts.{d} TXT", f"mta-sts.{d} A", f"mta-sts.{d} AAAA",
                  f"_smtp._tls.{d} TXT", f"{d} MX"):
            f.write(q + "\n")
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
NAMED_PID=$!
deadline=$((SECONDS + 20))
until dig +tcp +short +time=1 +tries=1 -p "$DNS_PORT" @127.0.0.1 example.org SOA | grep -q hostmaster; do
  (( SECONDS < deadline )) || { cat "$TMP/named.log"; exit 1; }
  sleep 0.1
done

# --- Postfix: smtpd with STARTTLS on the two MX addresses (config as tests/it/harness/postfix.rs)
PF="$TMP/pf"
mkdir -p "$PF"; chmod 755 "$TMP" "$PF"
cp "$TMP/mx.pem" "$TMP/mx.key" "$PF/"
cat "$TMP/ca.pem" >> "$PF/mx.pem"
: > "$PF/master.cf"
for ip in 127.0.0.3 127.0.0.4; do
  echo "$ip:$SMTP_PORT inet n - n - - smtpd -o smtpd_tls_security_level=may -o smtpd_tls_chain_files=$PF/mx.key,$PF/mx.pem" >> "$PF/master.cf"
done
printf 'tlsmgr unix - - n 1000? 1 tlsmgr\npostlog unix-dgram n - n - 1 postlogd\n' >> "$PF/master.cf"
cat > "$PF/main.cf" <<EOF
compatibility_level = 3.6
config_directory = $PF
queue_directory = $PF/queue
data_directory = $PF/data
mail_owner = postfix
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mx1.example.org
maillog_file = /dev/stdout
smtpd_banner = \$myhostname ESMTP
smtpd_tls_session_cache_database =
local_recipient_maps =
alias_maps =
alias_database =
smtpd_relay_restrictions = reject
EOF
mkdir -p "$PF/queue/pid" "$PF/queue/private" "$PF/queue/public" "$PF/data"
chown postfix "$PF/queue/private" "$PF/data"; chown postfix:postdrop "$PF/queue/public"
chmod 700 "$PF/queue/private" "$PF/data"; chmod 710 "$PF/queue/public"
: > "$PF/queue/quick-start"
postfix -c "$PF" start-fg > "$TMP/postfix.log" 2>&1 &
PIDS+=($!)
for ip in 127.0.0.3 127.0.0.4; do
  deadline=$((SECONDS + 20))
  until python3 -c "import socket,sys; s=socket.create_connection(('$ip',$SMTP_PORT),1); s.settimeout(2); sys.exit(s.recv(3)!=b'220')" 2>/dev/null; do
    (( SECONDS < deadline )) || { cat "$TMP/postfix.log"; exit 1; }
    sleep 0.1
  done
done

cat >> "$TMP/mta-stsd.toml" <<EOF
[drift]
resolver = "127.0.0.1:$DNS_PORT"
dns_port = $DNS_PORT
https_port = $HTTPS_PORT
smtp_port = $SMTP_PORT
ca = "ca.pem"
EOF
"$BIN" --config "$TMP/mta-stsd.toml" check >/dev/null

# --- the daemon; its own first drift run (1 s after start) is waited out ------------------
RUST_LOG=info "$BIN" --config "$TMP/mta-stsd.toml" serve > "$TMP/serve.log" 2>&1 &
PIDS+=($!)
DAEMON_PID=$!
deadline=$((SECONDS + 120))
until grep -q "drift checked" "$TMP/serve.log"; do
  (( SECONDS < deadline )) || { tail -20 "$TMP/serve.log"; exit 1; }
  kill -0 "${PIDS[-1]}" 2>/dev/null || { tail -20 "$TMP/serve.log"; exit 1; }
  sleep 0.2
done

# --- the runs, each followed by the reference ---------------------------------------------
# Reference, against the same BIND: `dig -f` asking the same DNS questions one after another
# over UDP. Each round runs both, so that load from elsewhere weighs on both alike; CPU time
# (drift itself, and the daemon and BIND answering it) is counted too, as load does not change it.
python3 - "$BIN" "$TMP" "$DNS_PORT" "$N" "$RUNS" "$CONCURRENCY" "$DAEMON_PID" "$NAMED_PID" "$SANS" "$BEFORE" <<'EOF'
import json, os, resource, statistics, subprocess, sys, time
bin_, tmp, dns_port, n, runs, conc, daemon, named, sans, before_bin = sys.argv[1:]
n, runs, sans = int(n), int(runs), min(int(sans), int(n))
tick = os.sysconf("SC_CLK_TCK")

def proc_cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick

def idle():
    f = open("/proc/stat").readline().split()
    return (int(f[4]) + int(f[5])) / tick

def rcvbuf_errors():
    lines = [l.split() for l in open("/proc/net/snmp") if l.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])

def timed(cmd, out):
    drops = rcvbuf_errors()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    servers = proc_cpu(daemon) + proc_cpu(named)
    i0, t0 = idle(), time.monotonic()
    rc = subprocess.run(cmd, stdout=open(out, "w")).returncode
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rc, wall, own, proc_cpu(daemon) + proc_cpu(named) - servers, idle() - i0, rcvbuf_errors() - drops

questions = sum(1 for _ in open(f"{tmp}/questions.txt"))
drift_cmd = [bin_, "--config", f"{tmp}/mta-stsd.toml", "drift", "--format", "json"]
dig_cmd = ["dig", "-p", dns_port, "@127.0.0.1", "+notcp", "+time=2", "+tries=1", "+noall",
           "+answer", "-f", f"{tmp}/questions.txt"]
old_cmd = [before_bin] + drift_cmd[1:]
drift, old, ref = [], [], []
for r in range(1, runs + 1):
    rc, *m = timed(drift_cmd, f"{tmp}/drift.json")
    if rc != 0:
        print(f"run {r}: drift exited {rc}: findings weigh on the numbers", file=sys.stderr)
    drift.append(m)
    if before_bin:
        rc, *m = timed(old_cmd, f"{tmp}/drift-before.json")
        if rc != 0:
            print(f"run {r}: the older drift exited {rc}", file=sys.stderr)
        old.append(m)
    rc, *m = timed(dig_cmd, f"{tmp}/dig.out")
    ref.append(m)
report = json.load(open(f"{tmp}/drift.json"))
c = report["counts"]
print(f"{n} domains, one zone, local BIND + local daemon (HTTPS, certificates of {sans} SANs)"
      f" + Postfix (2 MX hosts, STARTTLS); {os.cpu_count()} cores")
print(f"  concurrency (src/drift/mod.rs CONCURRENCY): {conc}")
print(f"  last report: status {report['status']}, {c['critical']} critical, {c['warning']} warning, "
      f"{c['unknown']} could not check")
def show(name, rows, unit):
    print(name)
    for i, (wall, own, servers, idle_s, drops) in enumerate(rows, 1):
        print(f"  run {i}: {wall:6.2f} s  {n / wall:7.0f} domains/s   CPU: {own:5.2f} s own, "
              f"{servers:5.2f} s daemon+BIND; cores idle meanwhile {idle_s:5.2f} s; "
              f"{drops} UDP datagrams dropped{unit}")
    wall = statistics.median(r[0] for r in rows)
    cpu = statistics.median(r[1] + r[2] for r in rows)
    print(f"  median: {wall:6.2f} s  {n / wall:7.0f} domains/s   {n / cpu:7.0f} domains per CPU-second")
    return wall, cpu
dw, dc = show("drift (every check: DNS over UDP, HTTPS fetch, SMTP STARTTLS):", drift, "")
rw, rc_ = show(f"reference: dig -f, the same {questions} DNS questions ({questions // n} a domain), "
               "one at a time over UDP:", ref, "")
print(f"ratio drift / reference: {rw / dw:.2f}x the domains per second (wall), "
      f"{rc_ / dc:.2f}x the domains per CPU-second")
if before_bin:
    ow, oc = show(f"before ({before_bin}):", old, "")
    print(f"ratio drift / before: {ow / dw:.2f}x the domains per second (wall), "
          f"{oc / dc:.2f}x the domains per CPU-second")
EOF
