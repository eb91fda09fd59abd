#!/usr/bin/env bash
# Builds the package (dist/build-deb.sh), then checks it as an operator would meet it: its
# files and maintainer scripts, lintian, and the binary started from an unpacked root
# (`--help`, `check` on the shipped example). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v lintian >/dev/null || { echo "lintian is not installed (apt-get install lintian)" >&2; exit 1; }

deb=$(bash dist/build-deb.sh)
echo "== $deb ($(du -h "$deb" | cut -f1))"
fail() { echo "FAIL: $*" >&2; exit 1; }

contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/mta-stsd ./usr/lib/systemd/system/mta-stsd.service ./etc/mta-stsd/mta-stsd.toml \
  ./usr/share/man/man8/mta-stsd.8.gz ./usr/share/bash-completion/completions/mta-stsd \
  ./usr/share/zsh/vendor-completions/_mta-stsd ./usr/share/fish/vendor_completions.d/mta-stsd.fish; do
  grep -q " $f\$" <<<"$contents" || fail "$f is not in the package"
done
echo "== files: binary, unit, conffile, man page, completions present"

ctl=$(mktemp -d)
root=$(mktemp -d)
trap 'rm -rf "$ctl" "$root"' EXIT
dpkg-deb -e "$deb" "$ctl"
grep -qx /etc/mta-stsd/mta-stsd.toml "$ctl/conffiles" || fail "mta-stsd.toml is not a conffile"
grep -q 'adduser --system' "$ctl/postinst" || fail "postinst creates no system user"
grep -q 'rm -rf /var/lib/mta-stsd' "$ctl/postrm" || fail "purge does not remove the state"
for s in postinst postrm prerm; do [ ! -e "$ctl/$s" ] || sh -n "$ctl/$s" || fail "$s is not valid sh"; done
if grep -q 'deb-systemd-invoke start' "$ctl/postinst"; then fail "postinst starts the unconfigured service"; fi
echo "== control: conffile, system user, purge, service not started"

dpkg-deb -x "$deb" "$root"
unit="$root/usr/lib/systemd/system/mta-stsd.service"
for want in Type=notify 'ExecReload=/bin/kill -HUP $MAINPID' ProtectSystem=strict StateDirectory=mta-stsd \
  CapabilityBoundingSet=CAP_NET_BIND_SERVICE NoNewPrivileges=yes; do
  grep -qxF "$want" "$unit" || fail "unit lacks $want"
done
file "$root/usr/bin/mta-stsd" | grep -q 'stripped' && ! file "$root/usr/bin/mta-stsd" | grep -q 'not stripped' ||
  fail "binary is not stripped: $(file "$root/usr/bin/mta-stsd")"
"$root/usr/bin/mta-stsd" --help >/dev/null || fail "--help"
"$root/usr/bin/mta-stsd" --config "$root/etc/mta-stsd/mta-stsd.toml" check || fail "check on the shipped example"
zcat "$root/usr/share/man/man8/mta-stsd.8.gz" | grep -q '^\.SH CONFIGURATION' || fail "man page has no CONFIGURATION"
echo "== unpacked: unit hardened, binary stripped ($(du -h "$root/usr/bin/mta-stsd" | cut -f1)), --help and check run"

echo "== lintian"
lintian --fail-on error,warning --info --display-info "$deb" || fail "lintian reported errors or warnings"
echo "== package OK"
