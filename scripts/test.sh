#!/usr/bin/env bash
# The whole test suite from a fresh Debian 12 machine: installs what the tests need (Debian
# packages, Rust components), then runs the gates CI runs: fmt, clippy, every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real servers the integration tests start themselves on loopback ports (nginx: in front of the
# plain listener; man-db: the man page is rendered; curl: a second HTTP/2 client, whose timing
# differs from hyper's).
packages=(ca-certificates iproute2 bind9 bind9-utils bind9-dnsutils knot knot-dnsutils pdns-server pdns-backend-sqlite3 sqlite3 pebble postgresql postfix nginx man-db curl python3-venv nodejs chromium prometheus pgbouncer)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python tools the tests run, each in a venv that tests/it/harness/venv.rs finds here (or at
# the variable): moto's server (a third-party emulator of the AWS API) for Route 53, octoDNS
# reading `records --format octodns`, dns-lexicon under dist/exec/mta-stsd-lexicon. (nodejs
# above evaluates `records --format dnscontrol`.)
venv() { # dir, program, requirement
  if [ ! -x "$1/bin/$2" ]; then
    python3 -m venv "$1"
    "$1/bin/pip" install -q "$3"
  fi
}
venv "${MTA_STSD_MOTO_VENV:-target/moto-venv}" moto_server "moto[server]==5.2.5"
venv "${MTA_STSD_OCTODNS_VENV:-target/octodns-venv}" octodns-validate "octodns==1.*"
venv "${MTA_STSD_LEXICON_VENV:-target/lexicon-venv}" lexicon "dns-lexicon==3.*"

# The drift tests run two BIND primaries on 127.0.0.2 and 127.0.0.3; BIND listens only on
# addresses an interface has, so give them to lo (loopback only; routing is unchanged).
lo_addrs=$(ip -4 addr show dev lo) # not piped into grep -q: with pipefail, SIGPIPE would lie
for ip in 127.0.0.2 127.0.0.3; do
  if ! grep -q "inet $ip/" <<<"$lo_addrs"; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo ip addr add "$ip/32" dev lo
  fi
done

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs), then run this again" >&2
  exit 1
fi
if command -v rustup >/dev/null; then
  rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed | grep -q '^clippy' || rustup component add clippy
fi

# The build, the test binaries and the fuzz build take about 5 GB here; a full disk shows up
# late and obscurely (a linker killed by SIGBUS), so say so at the start.
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if ((free_kb < 8 * 1024 * 1024)); then
  echo "warning: only $((free_kb / 1024)) MiB free here; the suite's builds need about 5 GB" >&2
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

# A smoke run of every fuzz target (coverage-guided, libFuzzer on stable Rust; see fuzz/run.sh):
# 200,000 inputs each from a fixed seed (the same inputs on every run, so CI never fails by
# chance; 60 s at most), so a parser change that panics on the seeds or near them fails here.
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
SEED=1 RUNS=200000 bash fuzz/run.sh 60
