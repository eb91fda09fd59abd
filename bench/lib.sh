# Shared by the bench scripts: `source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"`.

# A TCP port free on 127.0.0.1 now (the kernel's pick; loopback only).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits up to SECONDS (default 20) for the daemon's "ready" line in LOG; on timeout prints the
# log and exits 1, so a daemon that never started is never measured.
wait_ready() {
  local log=$1 secs=${2:-20} i
  for ((i = 0; i < secs * 20; i++)); do
    grep -q ready "$log" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "the daemon did not get ready in ${secs}s; its log ($log):" >&2
  tail -n 30 "$log" >&2
  exit 1
}
