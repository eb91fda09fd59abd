#!/usr/bin/env bash
# Narrows `pub` in the main crate (src/) to what is used from outside it, so that rustc's
# dead-code lint sees the rest again (issue 29). Mechanical and re-runnable: run it after merging
# a branch that adds `pub` items or new uses from tests/, fuzz/, examples/ or src/main.rs, then
# `cargo fmt --all` is done for you; review `git diff` and commit it.
#
#   scripts/narrow-pub.sh            # rewrite src/ in place (the tree may be dirty)
#
# How: every module in src/lib.rs becomes `pub(crate)` for a moment, a temporary module
# re-exports exactly the paths in API below, and `cargo fix` applies rustc's `unreachable_pub`
# lint (on in lib.rs) so every `pub` not reachable through them becomes `pub(crate)`. Then the
# modules and submodules on those paths are made `pub` again and the temporary module goes.
# Unused imports and dead code this uncovers are left as warnings for a person to look at.
#
# When an outside user (a test, a fuzz target) needs a new path, add it to API (and its module,
# if new, to PUBLIC_MODS / PUBLIC_SUBMODS) and run the script again.
set -euo pipefail
cd "$(dirname "$0")/.."

# What outside users name: `grep -rn 'mta_stsd::' src/main.rs tests fuzz/fuzz_targets examples`.
API='
pub use crate::certs::provider;
pub use crate::cli::{run, Cli};
pub use crate::clock::rfc3339;
pub use crate::config::load;
pub use crate::dns::providers::build;
pub use crate::dns::sync::{apply_zone, targets};
pub use crate::fuzzing::{config, dns_answer, drift_text, http1, tlsrpt_json, tlsrpt_mail};
pub use crate::tlsrpt::budget::ingest_slot;
pub use crate::tlsrpt::matching::same_body;
pub use crate::tlsrpt::store::{
    Backend, Source, Store, StoreError, Stored, MAX_COUNT, SQLITE_FILE,
};
pub use crate::tlsrpt::{is_sts_failure, PolicyType, Report};
'
# Top-level modules on those paths, and `file:submodule` for the submodules on them.
PUBLIC_MODS='certs cli clock config dns fuzzing tlsrpt'
PUBLIC_SUBMODS='src/dns/mod.rs:providers src/dns/mod.rs:sync src/tlsrpt/mod.rs:budget
src/tlsrpt/mod.rs:matching src/tlsrpt/mod.rs:store'

LIB=src/lib.rs
MARK='// narrow-pub: temporary'
grep -q "$MARK" "$LIB" && {
  echo "narrow-pub: $LIB still has the temporary lines of a run that failed; remove them" >&2
  exit 1
}
grep -q '^#!\[warn(unreachable_pub)\]' "$LIB" || {
  echo "narrow-pub: $LIB needs #![warn(unreachable_pub)] (with its comment) first" >&2
  exit 1
}

# `pub use a::{b, c};` is one `pub` for rustc's suggestion: when only `c` is unreachable, the fix
# would narrow `b` too and `cargo fix` gives up. So such lists are split one name a line for the
# run, and joined again after it.
uselists() {
  python3 - "$1" <<'EOF'
import re, sys
from pathlib import Path
MARK = " // narrow-pub: split"
for p in Path("src").rglob("*.rs"):
    text = p.read_text()
    if sys.argv[1] == "split":
        def split(m):
            names = [n.strip() for n in m.group(3).split(",") if n.strip()]
            return "".join(f"{m.group(1)}pub use {m.group(2)}::{n};{MARK}\n" for n in names)
        new = re.sub(r"^([ \t]*)pub use ([\w:]+)::\{([^{}]*)\};[ \t]*\n", split, text, flags=re.M)
    else:
        line = re.compile(r"^([ \t]*)(pub(?:\([^)]*\))?) use ([\w:]+)::([^;]+);" + re.escape(MARK) + r"\n", re.M)
        runs = []  # [start, end, (indent, vis, prefix), names] of consecutive split lines
        for m in line.finditer(text):
            if runs and runs[-1][1] == m.start() and runs[-1][2] == m.groups()[:3]:
                runs[-1][1] = m.end()
                runs[-1][3].append(m.group(4))
            else:
                runs.append([m.start(), m.end(), m.groups()[:3], [m.group(4)]])
        new, pos = [], 0
        for start, end, (ind, vis, prefix), names in runs:
            new.append(text[pos:start])
            body = names[0] if len(names) == 1 else "{" + ", ".join(names) + "}"
            new.append(f"{ind}{vis} use {prefix}::{body};\n")
            pos = end
        new.append(text[pos:])
        new = "".join(new)
    if new != text:
        p.write_text(new)
EOF
}

# 1. Every module crate-private, the outside paths re-exported from one temporary module. Unused
#    imports and dead code are allowed meanwhile, so `cargo fix` does not remove them.
uselists split
perl -0pi -e 's/^pub mod (\w+);/pub(crate) mod $1;/mg' "$LIB"
perl -0pi -e "s{^(#!\[warn\(unreachable_pub\)\])\n}{\$1\n#![allow(unused_imports, dead_code)] $MARK\n}m" "$LIB"
{
  echo "#[doc(hidden)] $MARK"
  echo "pub mod narrow_pub_api {"
  echo "$API"
  echo "} $MARK"
} >>"$LIB"

# 2. `pub` that nothing outside can reach becomes `pub(crate)` (the library as built and as
#    built for its unit tests).
fix() {
  cargo fix --lib --allow-dirty --allow-staged -p mta-stsd "$@" 2>&1 | tee "$log"
  if grep -q 'failed to automatically apply fixes' "$log"; then
    echo "narrow-pub: cargo fix gave up (see above); src/lib.rs has temporary lines" >&2
    exit 1
  fi
}
log=$(mktemp)
fix
fix --profile test
rm -f "$log"

# 3. The paths back to `pub`, the temporary lines out.
perl -0pi -e "s{^#\[doc\(hidden\)\] \Q$MARK\E.*\z}{}ms" "$LIB"
perl -ni -e "print unless m{\Q$MARK\E}" "$LIB"
for m in $PUBLIC_MODS; do
  perl -pi -e "s/^pub\(crate\) mod $m;/pub mod $m;/" "$LIB"
done
for fm in $PUBLIC_SUBMODS; do
  f=${fm%%:*} m=${fm#*:}
  perl -pi -e "s/^pub\(crate\) mod $m;/pub mod $m;/" "$f"
done
uselists join
cargo fmt --all

# 4. What the lint and the compiler say now (dead code to look at, by hand).
cargo check --lib -p mta-stsd --profile test 2>&1 | grep -E '^(warning|error)' | sort | uniq -c || true
cargo check --lib -p mta-stsd 2>&1 | grep -E -A3 '^(warning|error)' || true
