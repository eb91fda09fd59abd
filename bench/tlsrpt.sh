#!/usr/bin/env bash
# bench/tlsrpt.sh — TLS reports ingested per second over HTTPS, and what it does to policy fetches
#
# What it measures
#   A release `mta-stsd serve` on loopback with one `testing` domain and a `[tlsrpt]` host,
#   first with the SQLite store (in its [state] dir), then with a PostgreSQL store (a fresh
#   cluster made here with initdb/pg_ctl, fsync on, as in production). Per store:
#     1. policy fetches alone for DURATION s: one client on a keep-alive TLS connection GETs
#        /.well-known/mta-sts.txt every 5 ms; latency p50/p99/max;
#     2. the same fetches while WORKERS clients (processes, one keep-alive TLS connection each)
#        POST distinct gzip reports (application/tlsrpt+gzip, a Google-shaped report of one
#        policy with one failure detail) as fast as they are answered, for DURATION s.
#   Printed: reports stored per second (201s), non-201 answers, fetch latency in both phases and
#   their ratio (during / alone), and the rows in the store afterwards (every 201 is a row).
#   The clients share the machine's cores with the daemon (and PostgreSQL): the figures are
#   what this machine does with all of it on one box.
#
# How to run (as root for PostgreSQL: the server runs as the postgres user)
#   bench/tlsrpt.sh
#   DURATION=10 WORKERS=8 NO_BUILD=1 BIN=/path/to/mta-stsd bench/tlsrpt.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
WORKERS="${WORKERS:-4}"
BIN="${BIN:-target/release/mta-stsd}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"

[ -n "${NO_BUILD:-}" ] || cargo build --release --locked --bin mta-stsd >&2
[ -x "$PGBIN/initdb" ] || { echo "$PGBIN/initdb not found: apt-get install postgresql" >&2; exit 1; }

TMP=$(mktemp -d)
chmod 755 "$TMP" # the postgres user reaches its cluster inside
PID=
cleanup() {
  [ -z "$PID" ] || kill "$PID" 2>/dev/null || true
  [ ! -d "$TMP/pg/data" ] || as_pg "$PGBIN/pg_ctl" -D "$TMP/pg/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
source bench/lib.sh # the script runs from the repo root

cat >"$TMP/load.py" <<'EOF'
import gzip, http.client, json, multiprocessing as mp, ssl, sys, time

port, workers, duration = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
POLICY_HOST, REPORT_HOST = "mta-sts.example.org", "tlsrpt.example.org"
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
day = time.strftime("%Y-%m-%d", time.gmtime())

def connect(host):
    import socket
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    # As http.client's own connect() does: its head and body go out in two writes.
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
    c.sock = ctx.wrap_socket(raw, server_hostname=host)
    return c

def report(worker, n):
    return gzip.compress(json.dumps({
        "organization-name": "Bench Inc.",
        "date-range": {"start-datetime": day + "T00:00:00Z", "end-datetime": day + "T23:59:59Z"},
        "contact-info": "tlsrpt@bench.example",
        "report-id": "bench-%d-%d-%d" % (worker, n, time.time_ns()),
        "policies": [{
            "policy": {"policy-type": "sts", "policy-string": ["version: STSv1", "mode: testing",
                       "mx: mail.example.org", "max_age: 86400"], "policy-domain": "example.org"},
            "summary": {"total-successful-session-count": 41, "total-failure-session-count": 2},
            "failure-details": [{"result-type": "certificate-host-mismatch",
                                 "sending-mta-ip": "192.0.2.1", "receiving-ip": "192.0.2.25",
                                 "receiving-mx-hostname": "mail.example.org",
                                 "failed-session-count": 2}]}]}).encode())

def ingest(worker, start, stop, out):
    c = connect(REPORT_HOST)
    created = other = 0
    while time.time() < start:
        time.sleep(0.001)
    i = 0
    while time.time() < stop:
        c.request("POST", "/v1/tlsrpt", body=report(worker, i),
                  headers={"Content-Type": "application/tlsrpt+gzip"})
        r = c.getresponse()
        r.read()
        if r.status == 201:
            created += 1
        else:
            other += 1
        i += 1
    out.put((created, other))

def fetch(seconds):
    c = connect(POLICY_HOST)
    lat = []
    end = time.time() + seconds
    while time.time() < end:
        t = time.perf_counter()
        c.request("GET", "/.well-known/mta-sts.txt")
        r = c.getresponse()
        body = r.read()
        lat.append(time.perf_counter() - t)
        assert r.status == 200 and b"version: STSv1" in body, r.status
        time.sleep(0.005)
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    return q(0.5), q(0.99), lat[-1] * 1000, len(lat)

alone = fetch(duration)
out = mp.Queue()
start = time.time() + 1  # every worker connected
procs = [mp.Process(target=ingest, args=(w, start, start + duration, out)) for w in range(workers)]
for p in procs:
    p.start()
while time.time() < start:
    time.sleep(0.01)
during = fetch(duration)
results = [out.get() for _ in procs]
for p in procs:
    p.join()
created = sum(r[0] for r in results)
other = sum(r[1] for r in results)
print(created, other, "%.0f" % (created / duration), *("%.2f" % x for x in alone[:3]),
      *("%.2f" % x for x in during[:3]), "%.2f" % (during[0] / alone[0]), "%.2f" % (during[1] / alone[1]))
EOF

count() { # rows in the store's report table after the run
  local q="SELECT count(*) FROM tlsrpt_reports"
  if [ "$1" = sqlite ]; then
    python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' \
      "$TMP/sqlite/state/tlsrpt.sqlite" "$q"
  else
    psql -h 127.0.0.1 -p "$pgport" -U mta -At -c "$q" mtasts
  fi
}

run() { # store name, [tlsrpt] store lines, env...
  local name=$1 store=$2
  shift 2
  local p a
  p=$(free_port)
  a=$(free_port)
  mkdir -p "$TMP/$name/state"
  cat >"$TMP/$name/mta-stsd.toml" <<EOF
[server]
https = ["127.0.0.1:$p"]
admin = "127.0.0.1:$a"

[tls]
self_signed = true

[policy]
mode = "testing"
mx = ["mail.example.org"]
max_age = 86400

[domains."example.org"]

[tlsrpt]
hosts = ["tlsrpt.example.org"]
path = "/v1/tlsrpt"
$store
EOF
  env "$@" STATE_DIRECTORY="$TMP/$name/state" "$BIN" --config "$TMP/$name/mta-stsd.toml" serve \
    2>"$TMP/$name/log" &
  PID=$!
  wait_ready "$TMP/$name/log"
  read -r created other rate a50 a99 amax d50 d99 dmax r50 r99 < <(python3 "$TMP/load.py" "$p" "$WORKERS" "$DURATION")
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=
  local rows
  rows=$(count "$name")
  printf '%-9s %9s %7s %9s | %6s %6s %7s | %6s %6s %7s | %5s %5s\n' "$name" "$rate" "$other" "${rows:-?}" \
    "$a50" "$a99" "$amax" "$d50" "$d99" "$dmax" "$r50" "$r99"
  [ "$rows" = "$created" ] || { echo "$created reports answered 201, $rows in the store" >&2; exit 1; }
  ((created > 0)) || { echo "no report was stored:" >&2; tail -n 20 "$TMP/$name/log" >&2; exit 1; }
}

echo "reports: $WORKERS clients, ${DURATION}s; fetches: one keep-alive client, a GET every 5 ms; ms"
printf '%-9s %9s %7s %9s | %-22s | %-22s | %s\n' store reports/s non-201 stored "fetch alone p50/p99/max" \
  "fetch during p50/p99/max" "ratio p50/p99"
pgport=
run sqlite 'store = "sqlite"'

mkdir -p "$TMP/pg"
[ "$(id -u)" != 0 ] || chown postgres:postgres "$TMP/pg"
as_pg "$PGBIN/initdb" -D "$TMP/pg/data" -U mta --auth=trust -E UTF8 >/dev/null
pgport=$(free_port)
as_pg "$PGBIN/pg_ctl" -D "$TMP/pg/data" -l "$TMP/pg/log" -w \
  -o "-p $pgport -k $TMP/pg -c listen_addresses=127.0.0.1" start >/dev/null
as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$pgport" -U mta mtasts
run postgres $'store = "postgres"\nurl_env = "BENCH_PG_URL"' BENCH_PG_URL="postgres://mta@127.0.0.1:$pgport/mtasts"
