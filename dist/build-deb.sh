#!/usr/bin/env bash
# Builds the Debian package: the release binary, then the man page and completions generated
# by that binary into target/assets/, then `cargo deb --no-build`. Prints the .deb's path.
# A release build takes minutes, so `cargo test` only checks the package's inputs
# (tests/it/operator.rs); dist/test-deb.sh builds, inspects, lints and unpacks the real thing.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_deb=3.8.0
# `cargo deb --version` prints the version after the tool's name: match it as a whole word.
is_wanted() { grep -Eq "(^|[^0-9.])${cargo_deb//./\\.}([^0-9.]|$)"; }
if ! cargo deb --version 2>/dev/null | is_wanted; then
  cargo install cargo-deb --version "$cargo_deb" --locked >&2
fi
cargo build --release --locked >&2
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target/release/mta-stsd"

mkdir -p target/assets
"$bin" man | gzip -9n >target/assets/mta-stsd.8.gz
"$bin" completions bash >target/assets/mta-stsd.bash
"$bin" completions zsh >target/assets/_mta-stsd
"$bin" completions fish >target/assets/mta-stsd.fish

cargo deb --no-build --locked --output target/debian/ >&2
deb=$(ls -t target/debian/mta-stsd_*.deb | head -n 1)
echo "$deb"
