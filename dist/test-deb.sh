#!/usr/bin/env bash
# Builds the package (dist/build-deb.sh), then checks it as an operator would meet it: its
# files and maintainer scripts, lintian, and the binary started from an unpacked root
# (`--help`, `check` on the shipped example), then installed, upgraded, removed and purged with
# dpkg in a throwaway Debian root (debootstrap, kept in target/deb-root), so the maintainer
# scripts really run. Needs root. Exits non-zero on the first failure.
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
grep -q 'state=/var/lib/mta-stsd' "$ctl/postrm" || fail "purge does not remove the state"
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

echo "== installed into a throwaway Debian root: dpkg runs the maintainer scripts there"
command -v debootstrap >/dev/null || fail "debootstrap is not installed (apt-get install debootstrap)"
[ "$(id -u)" = 0 ] || fail "installing into a root needs root (chroot)"
# A minimal bookworm with adduser, made once (debootstrap takes minutes) and copied per run.
base=target/deb-root
if [ ! -x "$base/usr/bin/dpkg" ]; then
  rm -rf "$base.new"
  debootstrap --variant=minbase --include=adduser bookworm "$base.new" http://deb.debian.org/debian >&2
  mv "$base.new" "$base"
fi
sys=$(mktemp -d)
trap 'rm -rf "$ctl" "$root" "$sys"' EXIT
cp -a "$base/." "$sys/"
cp "$deb" "$sys/tmp/mta-stsd.deb"
in_sys() { chroot "$sys" "$@"; }
conf=/etc/mta-stsd/mta-stsd.toml

out=$(in_sys dpkg -i /tmp/mta-stsd.deb 2>&1) || fail "dpkg -i: $out"
grep -q "edit $conf" <<<"$out" || fail "the first install does not say what to do next: $out"
in_sys getent passwd mta-stsd | grep -q ':/var/lib/mta-stsd:' || fail "postinst made no system user mta-stsd"
# Names as the root's own passwd and group files say (the host's may give its ids other names).
mode=$(in_sys stat -c '%U:%G %a' /etc/mta-stsd)
[ "$mode" = "root:mta-stsd 750" ] || fail "/etc/mta-stsd is $mode, not root:mta-stsd 750"
in_sys dpkg-query -W -f='${Conffiles}' mta-stsd | grep -q " *$conf " || fail "dpkg does not know $conf as a conffile"
in_sys mta-stsd --help >/dev/null || fail "--help in the installed root"
in_sys runuser -u mta-stsd -- mta-stsd --config "$conf" check || fail "check as the service user"
echo "== installed: system user, /etc/mta-stsd root:mta-stsd 750, conffile registered, check runs as mta-stsd"

# An upgrade (the same package again): an edited conffile and the state stay, no first-install hint.
echo '# edited by the admin' >>"$sys$conf"
mkdir -p "$sys/var/lib/mta-stsd" && echo '{}' >"$sys/var/lib/mta-stsd/history.jsonl"
: >"$sys/var/lib/mta-stsd/tlsrpt.sqlite"
out=$(in_sys dpkg -i --force-confold /tmp/mta-stsd.deb 2>&1) || fail "dpkg -i again: $out"
if grep -q "edit $conf" <<<"$out"; then fail "an upgrade repeats the first-install hint"; fi
grep -q '^# edited by the admin$' "$sys$conf" || fail "an upgrade lost the admin's edit"
in_sys dpkg -r mta-stsd >/dev/null 2>&1 || fail "dpkg -r"
[ ! -e "$sys/usr/bin/mta-stsd" ] || fail "remove left the binary"
[ -e "$sys$conf" ] && [ -e "$sys/var/lib/mta-stsd/history.jsonl" ] || fail "remove (not purge) lost config or state"
out=$(in_sys dpkg --purge mta-stsd 2>&1) || fail "dpkg --purge: $out"
[ ! -e "$sys$conf" ] || fail "purge left $conf"
[ ! -e "$sys/var/lib/mta-stsd/history.jsonl" ] || fail "purge left the id history"
[ -e "$sys/var/lib/mta-stsd/tlsrpt.sqlite" ] || fail "purge deleted the TLS report store"
grep -q "kept the TLS report store" <<<"$out" || fail "purge kept the report store without a word"
echo "== upgrade keeps the edited conffile; remove keeps config and state; purge removes both but the report store, and says so"

echo "== lintian"
lintian --fail-on error,warning --info --display-info "$deb" || fail "lintian reported errors or warnings"
echo "== package OK"
