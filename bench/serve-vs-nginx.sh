#!/usr/bin/env bash
# bench/serve-vs-nginx.sh — mta-stsd against nginx serving the same MTA-STS policy over HTTPS.
#
# What it measures
#   Both servers get the same throwaway ECDSA P-256 certificate for mta-sts.example.org, TLS 1.3
#   only, and byte-for-byte the same policy body (`mta-stsd policy example.org`, which nginx
#   serves as a static file at /.well-known/mta-sts.txt with default_type text/plain). Each
#   server is pinned to CPU 0 (`taskset -c 0`), the client to CPU 1. Before measuring, curl
#   checks that both return 200, text/plain and identical bodies. Then, per server:
#
#     1. keep-alive  `wrk -t1 -c$CONNS -d${DURATION}s`: requests per server-CPU-second
#                    (utime+stime of the whole server process from /proc/PID/stat, all
#                    threads, read before and after the run) and raw requests per second.
#     2. handshakes  the same with `Connection: close` on every request (a Lua script), so
#                    each request is a new TCP connection and a new, FULL TLS 1.3 handshake
#                    (X25519 + ECDSA P-256 signature): handshakes per server-CPU-second.
#     3. idle memory a fresh server process; IDLE_CONNS (2000) TLS connections are opened by
#                    a Python client, each does one GET and then stays open and idle; the
#                    growth of the server's VmRSS divided by the connections still open
#                    gives kB per idle TLS connection (lower is better).
#
#     4. many domains  a fresh server with DOMAINS (1000) domains on a plain-HTTP listener (TLS
#                    ended by a proxy in front; over TLS the 421 check ties a connection to its
#                    SNI's domain), keep-alive, each request naming the next Host of a cycle of
#                    DOMAINS served names and 9 % unknown ones (404 from both servers): requests
#                    per server-CPU-second. nginx serves one directory per host (root .../$host).
#
#   Printed: a table of metric, nginx, mta-stsd and the ratio mta-stsd/nginx, with the goals
#   of the performance issue (27): >= 2.2x nginx keep-alive requests per server-CPU-second,
#   >= 2.4x nginx full handshakes per server-CPU-second, >= 2.2x with many domains, and
#   under 10 kB per idle TLS connection.
#   The floor (BARE=1, the default): examples/bare_tls.rs, tokio-rustls with mta-stsd's TLS
#   setup and one fixed answer, measured in the same run (keep-alive, handshakes, idle memory):
#   what is left beyond it is what mta-stsd's own code costs. BARE=0 skips it.
#   BEFORE=path/to/an/older/mta-stsd runs that binary too, in the same run and the same way
#   (its column and ratio printed beside this build's), for a before/after from one run.
#   PROFILE=1 records every load phase of every server with `perf record -g` (software clock,
#   999 Hz; mta-stsd built with `--profile profiling`, the release build with symbols) and
#   prints, per phase: the share of the server's samples in the kernel, in the server's own
#   code and in its libraries, the top user-space symbols, and the CEILING: the ratio to nginx mta-stsd
#   would reach if all its user-space work cost nothing (nginx's CPU per request divided by
#   mta-stsd's kernel CPU per request). A goal above the ceiling cannot be met by mta-stsd's
#   own code on that machine. The sampling costs a little CPU on both sides alike.
#   An extra keep-alive run uses nginx with `open_file_cache` (otherwise nginx does
#   open/fstat/pread/close of the policy file on every request, ~5 of its ~7 syscalls per
#   request), the stricter baseline for the first goal (NGINX_OFC=0 skips it).
#   Other processes on the server's CPU (a build, say) are measured; the report warns when
#   they took more than FOREIGN_MAX (5) % of a phase. Before each phase the script waits
#   until both CPUs are under QUIET_MAX (10) % busy, within a total of QUIET_WAIT (60) s.
#
#   Fairness details
#   - nginx: 1 process (`master_process off`, `worker_processes 1`), access_log off,
#     keepalive_requests 1000000, `ssl_session_cache off` and `ssl_session_tickets off`, so it
#     never resumes a session. rustls in mta-stsd keeps its defaults: a 256-entry stateful
#     session cache and 2 TLS 1.3 tickets per handshake, which it DOES honour. Stock wrk keeps
#     the last session of each connection (SSL_clear keeps it) and offers it on reconnect, so
#     against mta-stsd most "Connection: close" handshakes would be cheap PSK resumptions.
#     To make phase 2 a real full-handshake comparison, wrk runs with a tiny LD_PRELOAD shim
#     (built here with gcc) that drops the session after each connection and counts full and
#     resumed handshakes; the script fails if any handshake of phase 2 was resumed. The same
#     run with stock wrk session reuse is printed as an extra, informational line.
#   - The shim also makes wrk send SNI mta-sts.example.org while connecting to 127.0.0.1 (wrk
#     takes its SNI from the URL host), so /etc/hosts is never touched; the Host header is
#     given with -H.
#   - mta-stsd runs a tokio multi-thread runtime with default settings; the runtime sizes
#     itself from available_parallelism(), which honours the taskset mask, so it would start
#     one worker anyway; TOKIO_WORKER_THREADS=1 (honoured by tokio's default builder) makes it
#     explicit. Its other threads (the main thread blocked in block_on, the file watcher)
#     share CPU 0 and their CPU time is counted.
#   - No HTTP/2: wrk and the Python client offer no ALPN, so both servers speak HTTP/1.1.
#   - With 2 cores the client (which verifies the ECDSA signature: dearer than signing) may
#     be the bottleneck; the "server CPU busy" lines show how loaded each server was.
#
# How to run (as root: it may apt-get install nginx-light, wrk, gcc; Debian 12)
#   bench/serve-vs-nginx.sh
#   DURATION=5 IDLE_CONNS=1000 bench/serve-vs-nginx.sh      # shorter
#   NO_BUILD=1 bench/serve-vs-nginx.sh                       # use the existing release binary
#   RESUME_INFO=0 bench/serve-vs-nginx.sh                    # skip the informational phase
#   BEFORE=/tmp/old/mta-stsd bench/serve-vs-nginx.sh          # an older build beside this one
#   DOMAINS=0 bench/serve-vs-nginx.sh                        # skip the many-domain phase
#   PORT_BASE=28440 (default) uses PORT_BASE+3 (mta-stsd), +4 (nginx), +5 (mta-stsd admin),
#   +6 (mta-stsd plain HTTP), +7 (nginx plain HTTP).
#
#   Loopback only. Every phase is bounded: about 25 + 7*DURATION seconds (about 1m40s with
#   the defaults) plus at most QUIET_WAIT seconds of waiting, plus the build. Everything it
#   starts is stopped and the temporary directory removed on exit. Exit status 0 when every
#   check passed (meeting the goals is reported, not enforced).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10}"
CONNS="${CONNS:-50}"
IDLE_CONNS="${IDLE_CONNS:-2000}"
RESUME_INFO="${RESUME_INFO:-1}"
NGINX_OFC="${NGINX_OFC:-1}"
DOMAINS="${DOMAINS:-1000}"
BEFORE="${BEFORE:-}"
BARE="${BARE:-1}"
PROFILE="${PROFILE:-0}"
PORT_BASE="${PORT_BASE:-28440}"
M_PORT=$((PORT_BASE + 3))
N_PORT=$((PORT_BASE + 4))
ADMIN_PORT=$((PORT_BASE + 5))
MH_PORT=$((PORT_BASE + 6))
NH_PORT=$((PORT_BASE + 7))
HOST=mta-sts.example.org
PATH_=/.well-known/mta-sts.txt
SERVER_CPU=0
CLIENT_CPU=1
BIN="$ROOT/target/release/mta-stsd"
[ "$PROFILE" = 0 ] || BIN="$ROOT/target/profiling/mta-stsd"

say() { printf '%s\n' "$*" >&2; }
die() { say "serve-vs-nginx: $*"; exit 1; }

# --- tools --------------------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
command -v taskset >/dev/null || missing+=(util-linux)
command -v python3 >/dev/null || missing+=(python3)
[ "$PROFILE" = 0 ] || command -v perf >/dev/null || missing+=(linux-perf)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing: ${missing[*]}"
    [ "$(id -u)" = 0 ] || die "not root: install ${missing[*]} first"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; then
        apt-get update -q >/dev/null
        apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
            apt-get install -y -q "${missing[@]/nginx-light/nginx}" >/dev/null
    fi
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (server on CPU $SERVER_CPU, client on CPU $CLIENT_CPU)"

if [ -z "${NO_BUILD:-}" ]; then
    if [ "$PROFILE" = 0 ]; then
        say "building: cargo build --release --locked"
        cargo build --release --locked >&2
    else
        say "building: cargo build --profile profiling --locked"
        cargo build --profile profiling --locked --bin mta-stsd >&2
    fi
    [ "$BARE" = 0 ] || cargo build --release --locked --example bare_tls >&2
fi
[ -x "$BIN" ] || die "$BIN not found (run without NO_BUILD)"
[ -z "$BEFORE" ] || [ -x "$BEFORE" ] || die "BEFORE=$BEFORE is not an executable"
BARE_BIN="$ROOT/target/release/examples/bare_tls"
[ "$BARE" = 0 ] || [ -x "$BARE_BIN" ] || die "$BARE_BIN not found (run without NO_BUILD, or BARE=0)"
SERVERS=(nginx)
[ -z "$BEFORE" ] || SERVERS+=(before)
SERVERS+=(mta-stsd)

for p in "$M_PORT" "$N_PORT" "$ADMIN_PORT" "$MH_PORT" "$NH_PORT"; do
    if ss -Hltn "sport = :$p" | grep -q .; then die "port $p is in use (set PORT_BASE)"; fi
done

# Idle connections need descriptors on both sides (the servers inherit this limit).
ulimit -n "$(( IDLE_CONNS * 2 + 1024 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $(( IDLE_CONNS + 256 )) ] || die "ulimit -n $(ulimit -n) too low for $IDLE_CONNS connections"

# --- scratch directory and cleanup ----------------------------------------------------------------
TMP="$(mktemp -d /tmp/serve-vs-nginx.XXXXXX)"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- certificate, configs, policy -------------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -days 90 -subj "/CN=$HOST" \
    -addext "subjectAltName=DNS:$HOST" >/dev/null 2>&1

cat >"$TMP/mta-stsd.toml" <<EOF
[server]
https = ["127.0.0.1:$M_PORT"]
http = []
admin = "127.0.0.1:$ADMIN_PORT"
idle_timeout = "300s"
# Every client here is 127.0.0.1: the per-address cap (default 64) would refuse the idle phase.
max_connections_per_ip = 1000000

[tls]
certs = [{ cert = "$TMP/cert.pem", key = "$TMP/key.pem" }]

# Its own store: never /var/lib/mta-stsd, which another build may have migrated further.
[state]
dir = "$TMP/state"

[policy]
mode = "enforce"
mx = ["mail.example.org", "*.mx.example.net"]
max_age = 604800

[domains."example.org"]
EOF
"$BIN" --config "$TMP/mta-stsd.toml" check >/dev/null 2>"$TMP/check.err" ||
    { cat "$TMP/check.err" >&2; die "mta-stsd check failed"; }
mkdir -p "$TMP/www/.well-known" "$TMP/nginx-tmp"
"$BIN" --config "$TMP/mta-stsd.toml" policy example.org >"$TMP/policy.txt" 2>/dev/null
cp "$TMP/policy.txt" "$TMP/www/.well-known/mta-sts.txt"

cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx-tmp/body;
    proxy_temp_path $TMP/nginx-tmp/proxy;
    fastcgi_temp_path $TMP/nginx-tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx-tmp/uwsgi;
    scgi_temp_path $TMP/nginx-tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$N_PORT ssl;
        server_name $HOST;
        ssl_certificate $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        ssl_protocols TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        root $TMP/www;
        location = $PATH_ { default_type text/plain; }
        location / { return 404; }
    }
}
EOF
# The same plus open_file_cache (a usual tuning for static files: no open/fstat/close per request).
sed 's|^    keepalive_timeout 300s;|&\n    open_file_cache max=64 inactive=60s;\n    open_file_cache_valid 60s;|' \
    "$TMP/nginx.conf" >"$TMP/nginx-ofc.conf"
grep -q open_file_cache "$TMP/nginx-ofc.conf" || die "could not write the open_file_cache variant"

# The many-domain phase: DOMAINS served names on plain HTTP, every one with the same policy.
if [ "$DOMAINS" -gt 0 ]; then
    {
        printf '[server]\nhttps = []\nhttp = ["127.0.0.1:%s"]\nadmin = "127.0.0.1:%s"\n' "$MH_PORT" "$ADMIN_PORT"
        printf 'idle_timeout = "300s"\nmax_connections_per_ip = 1000000\n\n'
        printf '[state]\ndir = "%s"\n\n' "$TMP/state-many"
        printf '[policy]\nmode = "enforce"\nmx = ["mail.example.org", "*.mx.example.net"]\nmax_age = 604800\n\n'
        for i in $(seq "$DOMAINS"); do printf '[domains."d%s.example"]\n' "$i"; done
    } >"$TMP/many.toml"
    "$BIN" --config "$TMP/many.toml" check >/dev/null 2>"$TMP/check.err" ||
        { cat "$TMP/check.err" >&2; die "mta-stsd check of the many-domain config failed"; }
    for i in $(seq "$DOMAINS"); do
        mkdir -p "$TMP/www-many/mta-sts.d$i.example/.well-known"
        ln "$TMP/www/.well-known/mta-sts.txt" "$TMP/www-many/mta-sts.d$i.example/.well-known/mta-sts.txt"
    done
    sed -e "s|^        listen 127.0.0.1:$N_PORT ssl;|        listen 127.0.0.1:$NH_PORT;|" \
        -e '/^        ssl_/d' -e '/^        server_name /d' \
        -e "s|^        root $TMP/www;|        root $TMP/www-many/\$host;|" "$TMP/nginx.conf" >"$TMP/nginx-many.conf"
    grep -q 'www-many/\$host' "$TMP/nginx-many.conf" || die "could not write the many-domain nginx config"
    # Every 11th name is unknown to both (9 %): 404.
    cat >"$TMP/many.lua" <<EOF
local reqs, i = {}, 0
init = function(args)
    for n = 1, $DOMAINS do
        reqs[#reqs + 1] = wrk.format(nil, nil, { Host = "mta-sts.d" .. n .. ".example" })
        if n % 10 == 0 then
            reqs[#reqs + 1] = wrk.format(nil, nil, { Host = "mta-sts.u" .. n .. ".example" })
        end
    end
end
request = function()
    i = i % #reqs + 1
    return reqs[i]
end
EOF
fi

# --- wrk helpers: the LD_PRELOAD shim and the Connection: close script ----------------------------
# SSL_connect: count full/resumed handshakes. SSL_clear (wrk's reconnect path): optionally drop
# the session so that the next handshake is a full one. SSL_ctrl: replace the SNI wrk sends.
cat >"$TMP/shim.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef struct ssl_st SSL;
#define SSL_CTRL_SET_TLSEXT_HOSTNAME 55
static unsigned long full, resumed;
static int no_resume = -1;
int SSL_connect(SSL *s) {
    static int (*real)(SSL *);
    static int (*reused)(const SSL *);
    if (!real) {
        real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
        reused = (int (*)(const SSL *))dlsym(RTLD_NEXT, "SSL_session_reused");
    }
    int r = real(s);
    if (r == 1) { if (reused(s)) resumed++; else full++; }
    return r;
}
int SSL_clear(SSL *s) {
    static int (*real)(SSL *);
    static int (*set_session)(SSL *, void *);
    if (!real) {
        real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
        set_session = (int (*)(SSL *, void *))dlsym(RTLD_NEXT, "SSL_set_session");
    }
    int r = real(s);
    if (no_resume < 0) {
        const char *e = getenv("SHIM_NO_RESUME");
        no_resume = e && strcmp(e, "1") == 0;
    }
    if (no_resume) set_session(s, NULL);
    return r;
}
long SSL_ctrl(SSL *s, int cmd, long larg, void *parg) {
    static long (*real)(SSL *, int, long, void *);
    if (!real) real = (long (*)(SSL *, int, long, void *))dlsym(RTLD_NEXT, "SSL_ctrl");
    if (cmd == SSL_CTRL_SET_TLSEXT_HOSTNAME && getenv("SHIM_SNI")) parg = getenv("SHIM_SNI");
    return real(s, cmd, larg, parg);
}
__attribute__((destructor)) static void report(void) {
    const char *p = getenv("SHIM_OUT");
    FILE *f = p ? fopen(p, "w") : NULL;
    if (f) { fprintf(f, "%lu %lu\n", full, resumed); fclose(f); }
}
EOF
gcc -O2 -shared -fPIC -o "$TMP/shim.so" "$TMP/shim.c" -ldl
echo 'wrk.headers["Connection"] = "close"' >"$TMP/close.lua"

# --- the idle-connection client ---------------------------------------------------------------------
cat >"$TMP/idle.py" <<'EOF'
import select, socket, ssl, sys, time
port, n, pid, host, cafile = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=cafile)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
req = ("GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode()

def rss():
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def connect():
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=host)
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("connection closed before the response")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    if lines[0].split()[1] != "200":
        raise SystemExit("status: " + lines[0])
    length = next(int(l.split(":", 1)[1]) for l in lines if l.lower().startswith("content-length:"))
    while len(body) < length:
        body += s.recv(4096)
    return s

def alive(conns):
    # An idle connection the server has not closed is not readable (no EOF, no data).
    p = select.poll()
    for s in conns:
        p.register(s.fileno(), select.POLLIN)
    return len(conns) - len(p.poll(0))

for s in [connect() for _ in range(20)]:  # warm up lazily built state, then drop it
    s.close()
time.sleep(1)
before = rss()
start = time.monotonic()
conns = [connect() for _ in range(n)]
opened = time.monotonic() - start
time.sleep(2)
after = rss()
print(before, after, alive(conns), "%.1f" % opened)
for s in conns:
    s.close()
EOF

# Each mta-stsd binary gets its own [state] dir: a newer build migrates its store, which an
# older one then refuses to open.
server_config() { # name (mta-stsd, before) base (mta-stsd, many) -> the config path
    [ "$1" = mta-stsd ] && { echo "$TMP/$2.toml"; return; }
    sed "s#^dir = \"$TMP/state#dir = \"$TMP/$1-state#" "$TMP/$2.toml" >"$TMP/$1-$2.toml"
    echo "$TMP/$1-$2.toml"
}

# --- server control and measurement -------------------------------------------------------------------
start_server() { # name (mta-stsd, before, nginx, nginx-ofc) [many] -> sets SRV_PID
    local name=$1 many=${2:-} port url bin
    case "$name" in
        bare)
            port=$M_PORT
            TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CPU" \
                "$BARE_BIN" "$port" "$TMP/cert.pem" "$TMP/key.pem" "$TMP/policy.txt" >>"$TMP/bare.log" 2>&1 &
            ;;
        mta-stsd | before)
            port=$M_PORT
            bin=$BIN
            [ "$name" = mta-stsd ] || bin=$BEFORE
            TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CPU" \
                "$bin" --config "$(server_config "$name" "${many:-mta-stsd}")" serve >>"$TMP/mta-stsd.log" 2>&1 &
            [ -z "$many" ] || port=$MH_PORT
            ;;
        *)
            port=$N_PORT
            [ -z "$many" ] || { port=$NH_PORT; name=nginx-many; }
            taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP" -e "$TMP/nginx-error.log" \
                -c "$TMP/$name.conf" >>"$TMP/nginx.out" 2>&1 &
            ;;
    esac
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    url="https://$HOST:$port$PATH_"
    [ -z "$many" ] || url="http://mta-sts.d1.example:$port$PATH_"
    local i
    for i in $(seq 100); do
        if curl -sf -o /dev/null --cacert "$TMP/cert.pem" --resolve "$HOST:$port:127.0.0.1" \
            --resolve "mta-sts.d1.example:$port:127.0.0.1" "$url"; then
            return 0
        fi
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -5 "$TMP/mta-stsd.log" "$TMP/nginx-error.log" "$TMP/nginx.out" 2>/dev/null >&2 || true
    die "$name did not start"
}

stop_server() {
    kill "$SRV_PID" 2>/dev/null || true
    wait "$SRV_PID" 2>/dev/null || true
}

cpu_ticks() { # utime+stime of the whole process (all threads, living and dead)
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
cpu_busy() { # jiffies: busy and total of one CPU, from /proc/stat
    awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}
HZ=$(getconf CLK_TCK)

# On a shared machine, wait (within a total budget) until neither CPU is busy with others.
QUIET_LEFT="${QUIET_WAIT:-60}"
wait_quiet() {
    local a0 a1 b0 b1 busy0 busy1
    while :; do
        read -r a0 _ < <(cpu_busy "$SERVER_CPU"); read -r a1 _ < <(cpu_busy "$CLIENT_CPU")
        sleep 1
        read -r b0 _ < <(cpu_busy "$SERVER_CPU"); read -r b1 _ < <(cpu_busy "$CLIENT_CPU")
        busy0=$(( 100 * (b0 - a0) / HZ )); busy1=$(( 100 * (b1 - a1) / HZ ))
        [ "$busy0" -gt "${QUIET_MAX:-10}" ] || [ "$busy1" -gt "${QUIET_MAX:-10}" ] || return 0
        [ "$QUIET_LEFT" -gt 0 ] || return 0
        say "  waiting for a quiet machine (CPU busy: $busy0% / $busy1%; ${QUIET_LEFT}s of waiting left)"
        sleep 4
        QUIET_LEFT=$(( QUIET_LEFT - 5 ))
    done
}

declare -A R
NOISY=()
run_wrk() { # name phase port resume(0|1) [wrk args...]; the many phase: plain HTTP, 404s allowed
    local name=$1 phase=$2 port=$3 resume=$4 scheme=https
    shift 4
    local out="$TMP/wrk.$name.$phase" t0 t1 c0 c1 s0 s1
    [ "$phase" != many ] || scheme=http
    wait_quiet
    t0=$(cpu_ticks "$SRV_PID")
    read -r c0 _ < <(cpu_busy "$CLIENT_CPU")
    read -r s0 _ < <(cpu_busy "$SERVER_CPU")
    local perf_pid=""
    if [ "$PROFILE" = 1 ]; then
        perf record -F 999 -g -p "$SRV_PID" -o "$TMP/perf.$name.$phase" -- sleep "$DURATION" \
            >/dev/null 2>&1 &
        perf_pid=$!
    fi
    SHIM_OUT="$out.tls" SHIM_SNI="$HOST" SHIM_NO_RESUME=$((1 - resume)) LD_PRELOAD="$TMP/shim.so" \
        taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s \
        -H "Host: $HOST" "$@" "$scheme://127.0.0.1:$port$PATH_" >"$out" 2>&1 ||
        { cat "$out" >&2; die "wrk failed against $name"; }
    [ -z "$perf_pid" ] || wait "$perf_pid" || true
    t1=$(cpu_ticks "$SRV_PID")
    read -r c1 _ < <(cpu_busy "$CLIENT_CPU")
    read -r s1 _ < <(cpu_busy "$SERVER_CPU")
    local reqs secs non2xx errs full resumed
    reqs=$(awk '/requests in/ { print $1 }' "$out")
    secs=$(awk '/requests in/ { sub(/s,$/, "", $4); print $4 }' "$out")
    non2xx=$(awk -F': *' '/Non-2xx/ { print $2 }' "$out")
    errs=$(awk '/Socket errors/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$out")
    full=0 resumed=0
    [ ! -s "$out.tls" ] || read -r full resumed <"$out.tls"
    [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || { cat "$out" >&2; die "no requests against $name"; }
    R[$name,$phase,non2xx]=${non2xx:-0}
    [ "${non2xx:-0}" = 0 ] || [ "$phase" = many ] || { cat "$out" >&2; die "$name: $non2xx non-2xx responses"; }
    R[$name,$phase,reqs]=$reqs
    R[$name,$phase,cpu]=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }')
    R[$name,$phase,rps]=$(awk -v r="$reqs" -v s="$secs" 'BEGIN { printf "%.0f", r / s }')
    R[$name,$phase,per_cpu]=$(awk -v r="$reqs" -v c="${R[$name,$phase,cpu]}" 'BEGIN { printf "%.0f", (c > 0 ? r / c : 0) }')
    R[$name,$phase,busy]=$(awk -v c="${R[$name,$phase,cpu]}" -v s="$secs" 'BEGIN { printf "%.0f", 100 * c / s }')
    R[$name,$phase,client]=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v s="$secs" 'BEGIN { printf "%.0f", 100 * (b - a) / hz / s }')
    # Busy time of the server's CPU not spent by the server: other processes (e.g. a build).
    R[$name,$phase,foreign]=$(awk -v a="$s0" -v b="$s1" -v t="$((t1 - t0))" -v hz="$HZ" -v s="$secs" \
        'BEGIN { f = 100 * ((b - a) - t) / hz / s; printf "%.0f", (f < 0 ? 0 : f) }')
    [ "${R[$name,$phase,foreign]}" -le "${FOREIGN_MAX:-5}" ] || NOISY+=("$name $phase: ${R[$name,$phase,foreign]}%")
    R[$name,$phase,errs]=${errs:-0}
    R[$name,$phase,full]=$full
    R[$name,$phase,resumed]=$resumed
    say "  $phase: ${R[$name,$phase,reqs]} requests in ${secs}s, server CPU ${R[$name,$phase,cpu]}s" \
        "(${R[$name,$phase,busy]}% busy, other load on its CPU ${R[$name,$phase,foreign]}%, client CPU ${R[$name,$phase,client]}%)," \
        "TLS handshakes full $full / resumed $resumed, socket errors ${R[$name,$phase,errs]}"
}

# --- checks before measuring -------------------------------------------------------------------------
say "checking both servers answer the same"
for name in "${SERVERS[@]}"; do
    start_server "$name"
    port=$([ "$name" = nginx ] && echo "$N_PORT" || echo "$M_PORT")
    info=$(curl -sS --http1.1 --tlsv1.3 --cacert "$TMP/cert.pem" --resolve "$HOST:$port:127.0.0.1" \
        -o "$TMP/body.$name" -w '%{http_code} %{content_type}' "https://$HOST:$port$PATH_")
    [ "$info" = "200 text/plain" ] || die "$name answered: $info"
    cmp -s "$TMP/body.$name" "$TMP/policy.txt" || die "$name serves a different body"
    tls=$(openssl s_client -connect "127.0.0.1:$port" -servername "$HOST" -brief </dev/null 2>&1 |
        awk -F': ' '/^Protocol version|^Ciphersuite|^Server Temp Key|^Signature type/ { printf "%s%s", sep, $2; sep=", " }')
    R[$name,tls]=$tls
    R[$name,threads]=$(ls "/proc/$SRV_PID/task" | wc -l)
    say "  $name: 200 text/plain, $(wc -c <"$TMP/body.$name") bytes identical to \`mta-stsd policy\`; $tls;" \
        "${R[$name,threads]} thread(s)"
    stop_server
done

# --- the phases --------------------------------------------------------------------------------------
for name in "${SERVERS[@]}"; do
    port=$([ "$name" = nginx ] && echo "$N_PORT" || echo "$M_PORT")
    say "$name (pinned to CPU $SERVER_CPU), client on CPU $CLIENT_CPU"
    start_server "$name"
    run_wrk "$name" keepalive "$port" 1
    run_wrk "$name" handshake "$port" 0 -s "$TMP/close.lua"
    [ "${R[$name,handshake,resumed]}" = 0 ] || die "$name: resumed handshakes in the full-handshake phase"
    if [ "$RESUME_INFO" = 1 ]; then
        run_wrk "$name" resume "$port" 1 -s "$TMP/close.lua"
    fi
    stop_server

    start_server "$name" # a fresh process: no heap left over from the load phases
    wait_quiet
    read -r before after alive opened < <(taskset -c "$CLIENT_CPU" python3 "$TMP/idle.py" \
        "$port" "$IDLE_CONNS" "$SRV_PID" "$HOST" "$TMP/cert.pem")
    [ "$alive" -gt 0 ] || die "$name closed every idle connection"
    R[$name,rss0]=$before
    R[$name,kb_conn]=$(awk -v a="$before" -v b="$after" -v n="$alive" 'BEGIN { printf "%.1f", (b - a) / n }')
    say "  idle: $alive of $IDLE_CONNS connections open (opened in ${opened}s), VmRSS $before -> $after kB"
    stop_server

    if [ "$DOMAINS" -gt 0 ]; then
        start_server "$name" many
        port=$([ "$name" = nginx ] && echo "$NH_PORT" || echo "$MH_PORT")
        run_wrk "$name" many "$port" 1 -s "$TMP/many.lua"
        stop_server
    fi
done
if [ "$NGINX_OFC" = 1 ]; then
    say "nginx-ofc (nginx plus open_file_cache), keep-alive only"
    start_server nginx-ofc
    run_wrk nginx-ofc keepalive "$N_PORT" 1
    stop_server
fi

if [ "$BARE" = 1 ]; then
    say "bare (tokio-rustls and a fixed answer: the floor), keep-alive, handshakes, idle"
    start_server bare
    run_wrk bare keepalive "$M_PORT" 1
    run_wrk bare handshake "$M_PORT" 0 -s "$TMP/close.lua"
    [ "${R[bare,handshake,resumed]}" = 0 ] || die "bare: resumed handshakes in the full-handshake phase"
    stop_server
    start_server bare
    wait_quiet
    read -r before after alive opened < <(taskset -c "$CLIENT_CPU" python3 "$TMP/idle.py" \
        "$M_PORT" "$IDLE_CONNS" "$SRV_PID" "$HOST" "$TMP/cert.pem")
    R[bare,kb_conn]=$(awk -v a="$before" -v b="$after" -v n="$alive" 'BEGIN { printf "%.1f", (b - a) / n }')
    say "  idle: $alive of $IDLE_CONNS connections open, VmRSS $before -> $after kB"
    stop_server
fi

# --- report ---------------------------------------------------------------------------------------------
row() { # metric nginx [before] mta-stsd goal(>=x, <=x, <x or -); before only with BEFORE
    local n=$2 b="" m=$3 goal=$4 ratio bratio="" verdict=""
    if [ -n "$BEFORE" ]; then b=$3; m=$4; goal=$5; fi
    ratio=$(awk -v n="$n" -v m="$m" 'BEGIN { if (n > 0) printf "%.2f", m / n; else print "-" }')
    [ -z "$BEFORE" ] || bratio=$(awk -v n="$n" -v m="$b" 'BEGIN { if (n > 0) printf "%.2f", m / n; else print "-" }')
    case "$goal" in
        ">="*) verdict=$(awk -v r="$ratio" -v g="${goal#>=}" 'BEGIN { print (r >= g ? "met" : "MISSED") " (goal >= " g ")" }') ;;
        "<="*) verdict=$(awk -v r="$ratio" -v g="${goal#<=}" 'BEGIN { print (r <= g ? "met" : "MISSED") " (goal <= " g ", lower is better)" }') ;;
        "<"*) verdict=$(awk -v v="$m" -v g="${goal#<}" 'BEGIN { print (v < g ? "met" : "MISSED") " (goal < " g ", the value itself)" }') ;;
    esac
    if [ -n "$BEFORE" ]; then
        printf '%-48s %10s %10s %10s %6s %6s  %s\n' "$1" "$n" "$b" "$m" "$bratio" "$ratio" "$verdict"
    else
        printf '%-48s %12s %12s %8s  %s\n' "$1" "$n" "$m" "$ratio" "$verdict"
    fi
}
rowk() { # metric key goal: the row of R[<server>,key] for every server, nginx first
    local s vals=()
    for s in "${SERVERS[@]}"; do vals+=("${R[$s,$2]:-}"); done
    row "$1" "${vals[@]}" "$3"
}
echo
if [ -n "$BEFORE" ]; then
    printf '%-48s %10s %10s %10s %6s %6s\n' "metric" "nginx" "before" "mta-stsd" "b/n" "m/n"
else
    printf '%-48s %12s %12s %8s\n' "metric" "nginx" "mta-stsd" "ratio"
    printf '%-48s %12s %12s %8s\n' "" "" "" "m/n"
fi
rowk "keep-alive requests per server-CPU-second" keepalive,per_cpu ">=2.2"
rowk "keep-alive requests per second" keepalive,rps -
if [ "$NGINX_OFC" = 1 ]; then
    R[nginx,ofc]=${R[nginx-ofc,keepalive,per_cpu]}
    for s in "${SERVERS[@]:1}"; do R[$s,ofc]=${R[$s,keepalive,per_cpu]}; done
    rowk "  req/server-CPU-s, nginx with open_file_cache" ofc ">=2.2"
fi
rowk "  server CPU busy during it (%)" keepalive,busy -
rowk "full handshakes per server-CPU-second" handshake,per_cpu ">=2.4"
rowk "full handshakes per second" handshake,rps -
rowk "  server CPU busy during it (%)" handshake,busy -
if [ "$DOMAINS" -gt 0 ]; then
    rowk "$DOMAINS domains, Host cycling: req/server-CPU-s" many,per_cpu ">=2.2"
    rowk "  non-2xx answers (the unknown hosts)" many,non2xx -
fi
rowk "kB per idle TLS connection" kb_conn "<10"
rowk "  VmRSS before the idle connections (kB)" rss0 -
echo
echo "setup: ${CONNS} connections, ${DURATION}s per load phase, ${IDLE_CONNS} idle connections;" \
    "servers on CPU $SERVER_CPU, client on CPU $CLIENT_CPU ($(nproc) CPUs)"
echo "TLS: nginx ${R[nginx,tls]}; mta-stsd ${R[mta-stsd,tls]}"
echo "threads at start: nginx ${R[nginx,threads]}, mta-stsd ${R[mta-stsd,threads]} (TOKIO_WORKER_THREADS=1)"
[ -z "$BEFORE" ] || echo "before: $BEFORE"
echo "client CPU $CLIENT_CPU busy: keep-alive ${R[nginx,keepalive,client]}% / ${R[mta-stsd,keepalive,client]}%," \
    "handshakes ${R[nginx,handshake,client]}% / ${R[mta-stsd,handshake,client]}% (nginx / mta-stsd)"
if [ "$RESUME_INFO" = 1 ]; then
    echo "informational, stock wrk session reuse on Connection: close (nginx resumes nothing by config," \
        "rustls resumes by default):"
    echo "  nginx ${R[nginx,resume,per_cpu]} handshakes per server-CPU-second" \
        "(${R[nginx,resume,resumed]} of $(( R[nginx,resume,full] + R[nginx,resume,resumed] )) resumed);" \
        "mta-stsd ${R[mta-stsd,resume,per_cpu]} (${R[mta-stsd,resume,resumed]} of" \
        "$(( R[mta-stsd,resume,full] + R[mta-stsd,resume,resumed] )) resumed)"
fi
if [ "$BARE" = 1 ]; then
    echo
    echo "the floor: a bare tokio-rustls server (examples/bare_tls.rs), same TLS setup, a fixed answer:"
    floor() { # metric key: bare, mta-stsd, nginx and mta-stsd/bare
        printf '  %-46s bare %8s  mta-stsd %8s (%s of bare)  nginx %8s\n' "$1" "${R[bare,$2]}" \
            "${R[mta-stsd,$2]}" "$(awk -v b="${R[bare,$2]}" -v m="${R[mta-stsd,$2]}" \
            'BEGIN { if (b > 0) printf "%.2f", m / b; else print "-" }')" "${R[nginx,$2]}"
    }
    floor "keep-alive requests per server-CPU-second" keepalive,per_cpu
    floor "full handshakes per server-CPU-second" handshake,per_cpu
    floor "kB per idle TLS connection" kb_conn
fi
if [ "${#NOISY[@]}" -gt 0 ]; then
    echo "WARNING: other processes used the server CPU during: ${NOISY[*]} (of wall time);" \
        "raw req/s and client-bound numbers are unreliable, per-server-CPU numbers less affected"
fi

# --- profiles (PROFILE=1) --------------------------------------------------------------------------------
if [ "$PROFILE" = 1 ]; then
    share() { # perf file, dso pattern (awk regex) -> percent of samples
        perf report -i "$1" --no-children --sort dso --stdio 2>/dev/null |
            awk -v p="$2" '/^ +[0-9.]+%/ { v = $1; sub(/%/, "", v); $1 = ""; if ($0 ~ p) s += v } END { printf "%.1f", s }'
    }
    echo
    echo "profiles (perf record -g, 999 Hz; share of the server's samples):"
    for phase in keepalive handshake many; do
        for name in "${SERVERS[@]}" bare; do
            f="$TMP/perf.$name.$phase"
            [ -s "$f" ] || continue
            k=$(share "$f" 'kernel')
            R[$name,$phase,kernel]=$k
            printf '  %-9s %-9s kernel %5s%%  %s\n' "$phase" "$name" "$k" \
                "$(perf report -i "$f" --no-children --sort dso --stdio 2>/dev/null |
                    awk '/^ +[0-9.]+%/ && !/kernel/ && n++ < 4 { printf "%s %s  ", $2, $1 }')"
            perf report -i "$f" --no-children --sort sym --stdio 2>/dev/null |
                awk -v top="${PROFILE_TOP:-8}" '/^ +[0-9.]+%/ && !/\[k\]/ && n++ < top { $2 = ""; print "      " $0 }'
        done
        n=${R[nginx,$phase,per_cpu]:-0} m=${R[mta-stsd,$phase,per_cpu]:-0} k=${R[mta-stsd,$phase,kernel]:-0}
        awk -v n="$n" -v m="$m" -v k="$k" -v p="$phase" 'BEGIN {
            if (n > 0 && m > 0 && k > 0)
                printf "  %s: the ceiling (mta-stsd with user-space work free): %.2fx nginx (now %.2fx; its kernel part %.1f us of %.1f us per request, nginx %.1f us)\n",
                    p, m / (n * k / 100), m / n, 1e6 * k / 100 / m, 1e6 / m, 1e6 / n }'
    done
fi
