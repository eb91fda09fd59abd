#!/usr/bin/env bash
# bench/million.sh — `serve` with a million domains (issue "hosting", item 5).
#
# What it measures, in one run on one generated config (1,000 include files of 1,000 domains,
# `[tls] self_signed`, the generator of bench/check-scale.sh):
#   1. `check`: wall clock and peak RSS (GNU time);
#   2. `serve` from a fresh state directory: time from the start to the first policy answered
#      over HTTPS (a client polling every 10 ms), VmRSS and VmHWM then;
#   3. EDITS times: one include file edited (one domain's mode toggled between `testing` and
#      `enforce`), saved the way editors and config management do (a new file renamed over
#      the old; EDIT=inplace rewrites it in place instead, which waits for the writer to be
#      quiet, see src/daemon/settle.rs), and the time until that domain's new policy is served;
#      meanwhile two clients fetch policies in a loop over keep-alive (the edited domain, and
#      one in another file), and every non-200 answer or connection error is counted;
#   4. VmRSS and VmHWM after the last swap (and 6 s of quiet, so the trimmer has run).
#   Goals (issue 16): check < 5 s; first answer < 5 s at < 512 MiB; an edit live < 1.5 s; no
#   failed request; < 768 MiB after.
#
# How to run
#   bench/million.sh [DOMAINS]        # default 1,000,000 (1,000 domains per include file)
#   EDITS=5 bench/million.sh          # more edits (the median is reported)
#   BIN=/path/to/mta-stsd bench/million.sh   # another build (default: release in the target dir)
#   NO_BUILD=1, KEEP=1 as in bench/check-scale.sh.
#   STORE=postgres bench/million.sh   # the store ([state] url_env) on a throwaway PostgreSQL 15
#                                     # (initdb/pg_ctl in the work dir, as tests/it/harness does;
#                                     # run as root, postgres runs as user postgres); default
#                                     # STORE=sqlite. Compare both from one sitting:
#   for s in sqlite postgres; do STORE=$s NO_BUILD=1 bench/million.sh; done
#   Loopback only; needs python3 and GNU time. Run it under `nice -n 10` on a shared machine.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

N="${1:-1000000}"
N="${N//_/}"
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [DOMAINS]" >&2; exit 64; }
EDITS="${EDITS:-3}"
STORE="${STORE:-sqlite}"
case "$STORE" in sqlite|postgres) ;; *) echo "$0: STORE is sqlite or postgres" >&2; exit 64;; esac
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
EDIT="${EDIT:-rename}"
PER_FILE=1000

command -v python3 >/dev/null || { echo "$0: python3 is required" >&2; exit 69; }
[ -x /usr/bin/time ] || { echo "$0: GNU time (/usr/bin/time) is required" >&2; exit 69; }

if [ -n "${BIN:-}" ]; then NO_BUILD=1; fi
BIN="${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/mta-stsd}"
if [ -z "${NO_BUILD:-}" ]; then
    echo "== building: cargo build --release --locked" >&2
    cargo build --release --locked --quiet
fi
[ -x "$BIN" ] || { echo "$0: no binary at $BIN" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mta-stsd-million.XXXXXX")"
pid=""
pg=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -n "$pg" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$pg/data" -m immediate stop >/dev/null 2>&1
    if [ -n "${KEEP:-}" ]; then echo "== kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTPS_PORT=$(free_port)
ADMIN_PORT=$(free_port)

# --- config (bench/check-scale.sh's generator, with our ports and a state dir) ---------------
python3 "$ROOT/bench/gen-config.py" "$WORK" "$N" "$PER_FILE" "$HTTPS_PORT" "$ADMIN_PORT"
if [ "$STORE" = postgres ]; then
    [ -x "$PGBIN/initdb" ] || { echo "$0: no PostgreSQL at $PGBIN (set PGBIN)" >&2; exit 69; }
    pg="$WORK/pg"; mkdir -m 700 "$pg"; chown postgres: "$pg"; chmod o+x "$WORK"
    PG_PORT=$(free_port)
    runuser -u postgres -- "$PGBIN/initdb" -D "$pg/data" -U mta --auth=trust -E UTF8 >"$pg/initdb.log"
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$pg/data" -l "$pg/log" -w \
        -o "-p $PG_PORT -k $pg -c listen_addresses=127.0.0.1 -c fsync=on" start >/dev/null
    runuser -u postgres -- "$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U mta mtasts
    export MTA_STSD_BENCH_STATE_URL="postgres://mta@127.0.0.1:$PG_PORT/mtasts"
    sed -i 's|^dir = "state"$|dir = "state"\nurl_env = "MTA_STSD_BENCH_STATE_URL"|' "$WORK/mta-stsd.toml"
    grep -q '^url_env = "MTA_STSD_BENCH_STATE_URL"' "$WORK/mta-stsd.toml" \
        || { echo "$0: no [state] dir line to add url_env to" >&2; exit 1; }
fi
files=$(find "$WORK/domains.d" -name '*.toml' | wc -l)
echo "== store: $STORE" >&2
echo "== $N domains in $files files ($(du -sm "$WORK/domains.d" | cut -f1) MB), $(nproc) cores, $("$BIN" --version 2>/dev/null | head -1)" >&2

# --- 1. check --------------------------------------------------------------------------------
t0=$(date +%s%N)
/usr/bin/time -v -o "$WORK/time.txt" "$BIN" --config "$WORK/mta-stsd.toml" check >"$WORK/check.out" 2>&1 \
    || { echo "!! check failed:" >&2; head -20 "$WORK/check.out" >&2; exit 1; }
check_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check_mib=$(awk '/Maximum resident set size/ {printf "%.0f", $NF / 1024}' "$WORK/time.txt")

# --- 2.-4. serve, first answer, edits under load ------------------------------------------------
# The domain edited: a bare one in the middle file; the other client's domain is in file 0.
EDITED=$(printf 'd%06d.example' $(( (files / 2) * PER_FILE < N ? (files / 2) * PER_FILE : 0 )))
EDITED_FILE="$WORK/domains.d/$(cd "$WORK/domains.d" && ls | sed -n "$(( files / 2 + 1 ))p")"
[ "$files" -gt 1 ] || EDITED_FILE="$WORK/domains.d/$(ls "$WORK/domains.d" | head -1)"
OTHER="d000001.example"

start_ns=$(date +%s%N)
RUST_LOG=info ${WRAP:-} "$BIN" --config "$WORK/mta-stsd.toml" serve >"$WORK/serve.log" 2>&1 &
pid=$!
# Polls /metrics every 0.2 s: pending events seen, then none (or none once `ready` is logged).
python3 - "$ADMIN_PORT" "$start_ns" "$WORK/serve.log" >"$WORK/stored_ms" <<'PY' &
import sys, time, urllib.request
port, start_ns, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seen, ready, deadline = False, False, time.time() + 1200
f = None
while time.time() < deadline:
    # The log read on from where it was (a million warnings at the start).
    try:
        f = f or open(log, errors="replace")
        ready |= any(" ready " in l for l in f.readlines())
    except OSError:
        pass
    try:
        m = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port, timeout=5).read().decode()
        line = [l for l in m.splitlines() if l.startswith("mta_stsd_store_pending_events ")]
        if line:
            pending = int(float(line[0].split()[1]))
            seen |= pending > 0
            if pending == 0 and (seen or ready):
                print((time.time_ns() - start_ns) // 1000000)
                break
    except OSError:
        pass
    time.sleep(0.2)
PY

python3 - "$pid" "$start_ns" "$HTTPS_PORT" "$EDITED" "$EDITED_FILE" "$OTHER" "$EDITS" "$EDIT" \
    "$check_ms" "$check_mib" "$N" <<'PY'
import http.client, os, socket, ssl, statistics, sys, threading, time

pid, start_ns, port, edited, edited_file, other, edits, how, check_ms, check_mib, n = sys.argv[1:]
pid, start_ns, port, edits = int(pid), int(start_ns), int(port), int(edits)
PATH = "/.well-known/mta-sts.txt"
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

def status(field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
    raise SystemExit("serve exited (see serve.log)")

def connect(domain):
    host = "mta-sts." + domain
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    c = http.client.HTTPConnection(host, port, timeout=5)
    c.sock = ctx.wrap_socket(s, server_hostname=host)
    return c

def fetch(c):
    """Status, body, and whether the server closes the connection after this answer (its
    max_requests_per_connection): then the caller connects anew, by address (http.client
    would reconnect by the host name, which does not resolve here)."""
    c.request("GET", PATH, headers={"Connection": "keep-alive"})
    r = c.getresponse()
    return r.status, r.read(), r.will_close

# First answer: poll until a policy comes back.
first = None
while first is None:
    if not os.path.exists("/proc/%d" % pid):
        raise SystemExit("serve exited before answering (see serve.log)")
    try:
        c = connect(other)
        st, body, _ = fetch(c)
        c.close()
        if st == 200:
            first = (time.time_ns() - start_ns) / 1e9
            break
    except (OSError, http.client.HTTPException):
        pass
    time.sleep(0.01)
ready_rss, ready_hwm = status("VmRSS"), status("VmHWM")

class Client(threading.Thread):
    """Fetches one domain's policy in a loop on one keep-alive connection."""
    def __init__(self, domain):
        super().__init__(daemon=True)
        self.domain, self.ok, self.failed, self.stop = domain, 0, 0, False
        self.body, self.changed_at, self.errors = None, None, []
    def run(self):
        c = None
        while not self.stop:
            try:
                if c is None:
                    c = connect(self.domain)
                st, body, closing = fetch(c)
                if closing:
                    c.close()
                    c = None
                if st != 200:
                    self.failed += 1
                    self.errors.append("status %d" % st)
                    continue
                self.ok += 1
                if body != self.body:
                    self.body, self.changed_at = body, time.monotonic()
                # About 1,000 requests a second each: the clients must not take the cores the
                # reload needs.
                time.sleep(0.001)
            except (OSError, http.client.HTTPException) as e:
                self.failed += 1
                self.errors.append(repr(e))
                c = None

clients = [Client(edited), Client(other)]
for cl in clients:
    cl.start()
time.sleep(1)
header = '[domains."%s"]\n' % edited
lat = []
for k in range(edits):
    with open(edited_file) as f:
        text = f.read()
    mode = "testing" if k % 2 == 0 else "enforce"
    at = text.index(header) + len(header)
    rest = text[at:]
    if rest.startswith("mode = "):
        rest = rest[rest.index("\n") + 1:]
    new = text[:at] + 'mode = "%s"\n' % mode + rest
    assert new != text, "the edit changed nothing"
    want = ("mode: %s" % mode).encode()
    before = clients[0].changed_at
    t = time.monotonic()
    if how == "inplace":
        with open(edited_file, "w") as f:
            f.write(new)
    else:
        tmp = edited_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(new)
        os.rename(tmp, edited_file)
    deadline = t + 60
    while not (clients[0].body and want in clients[0].body and clients[0].changed_at != before):
        if time.monotonic() > deadline:
            raise SystemExit("edit %d: the new policy was not served within 60 s" % k)
        time.sleep(0.002)
    lat.append(clients[0].changed_at - t)
    print("   edit %d (mode %s): served after %.3f s" % (k + 1, mode, lat[-1]), file=sys.stderr)
    time.sleep(1.5)
time.sleep(6)        # the trimmer runs every 5 s
for cl in clients:
    cl.stop = True
for cl in clients:
    cl.join(10)
after_rss, after_hwm = status("VmRSS"), status("VmHWM")
ok = sum(c.ok for c in clients)
failed = sum(c.failed for c in clients)
errs = sorted(set(e for c in clients for e in c.errors))[:5]

print()
print("mta-stsd serve, %s domains, %d edits by %s" % (n, edits, how))
print("  check:          %6.2f s, %5d MiB peak RSS        (goal < 5 s)" % (int(check_ms) / 1000, int(check_mib)))
print("  first answer:   %6.2f s, VmRSS %4d MiB, VmHWM %4d MiB (goal < 5 s, < 512 MiB)" % (first, ready_rss, ready_hwm))
print("  edit -> served: median %.3f s (%s)              (goal < 1.5 s)" % (
    statistics.median(lat), ", ".join("%.3f" % l for l in lat)))
print("  requests:       %d ok, %d failed%s   (goal: 0 failed)" % (ok, failed, (" " + "; ".join(errs)) if errs else ""))
print("  after:          VmRSS %4d MiB, VmHWM %4d MiB          (goal < 768 MiB)" % (after_rss, after_hwm))
PY
grep -c "config reloaded" "$WORK/serve.log" | sed 's/^/  reloads logged: /'
# Start to the "ready" line (logged once the store has the history of every domain), by its
# timestamp (the same clock as start_ns); waited for up to 15 minutes after the edits.
for ((i = 0; i < 9000; i++)); do
    grep -qE 'INFO.* ready' "$WORK/serve.log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
ready_at=$(grep -m1 -E 'INFO.* ready' "$WORK/serve.log" | grep -oE '^[0-9T:.-]+Z' || true)
if [ -n "$ready_at" ]; then
    echo "  start -> ready: $(( ($(date -d "$ready_at" +%s%N) - start_ns) / 1000000 )) ms (store: $STORE), then VmRSS $(awk '/^VmRSS/ {print int($2/1024)}' /proc/$pid/status) MiB, VmHWM $(awk '/^VmHWM/ {print int($2/1024)}' /proc/$pid/status) MiB"
else
    echo "  start -> ready: not within 15 minutes (store: $STORE)"
fi
# `ready` waits 30 s at most for the store: the poller started with `serve` has the time the
# store had the start's history (mta_stsd_store_pending_events back to 0 on /metrics).
for ((i = 0; i < 9000; i++)); do [ -s "$WORK/stored_ms" ] && break; sleep 0.1; done
stored_ms=$(cat "$WORK/stored_ms" 2>/dev/null || true)
echo "  start -> history stored: ${stored_ms:-not within 15 minutes} ms (store: $STORE), then VmRSS $(awk '/^VmRSS/ {print int($2/1024)}' /proc/$pid/status) MiB, VmHWM $(awk '/^VmHWM/ {print int($2/1024)}' /proc/$pid/status) MiB"
if [ "$STORE" = postgres ]; then
    echo "  store rows:     $(runuser -u postgres -- "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U mta -Atc 'SELECT count(*) FROM store_history' mtasts) in store_history"
else
    echo "  store file:     $(du -m "$WORK/state/state.sqlite" 2>/dev/null | cut -f1) MiB state.sqlite"
fi
