#!/usr/bin/env python3
"""Architecture figures of the source tree (issue 29), printed as `name value` lines.

Rough by design (a brace counter, not a parser), but the same script before and after a
refactor gives comparable numbers. Run from the repository root:

    python3 bench/arch-figures.py            # figures
    python3 bench/arch-figures.py --list     # and the long functions and large files
    python3 bench/arch-figures.py --deps     # and the duplicate crates (runs cargo tree)
"""

import re
import subprocess
import sys
from pathlib import Path

ROOTS = [Path("src"), Path("providers/src")]
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")
PUB_ITEM = re.compile(
    r"^\s*pub\s+(async\s+)?(fn|struct|enum|trait|type|const|static|mod|use|union)\b"
)
PUB_FIELD = re.compile(r"^\s*pub\s+\w+\s*:")
PUB_RESTRICTED = re.compile(r"^\s*pub\([^)]*\)\s+")
TOP_MOD = re.compile(r"^(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)")


def code_before_tests(text):
    """The file's text up to its `#[cfg(test)] mod tests` (tests are not the code measured)."""
    m = re.search(r"#\[cfg\(test\)\]\s*\n\s*mod tests\b", text)
    return text[: m.start()] if m else text


def strip_comment(line):
    # Good enough: `//` inside a string literal is rare in this tree.
    i = line.find("//")
    return line if i < 0 else line[:i]


def code_lines(text):
    return sum(1 for l in code_before_tests(text).splitlines() if strip_comment(l).strip())


def functions(path, text):
    """(qualified name, lines) of each fn outside tests, its body measured by braces."""
    lines = code_before_tests(text).splitlines()
    out = []
    for i, line in enumerate(lines):
        m = FN.match(strip_comment(line))
        if not m:
            continue
        depth, opened, end = 0, False, None
        for j in range(i, len(lines)):
            s = strip_comment(lines[j])
            s = re.sub(r"'(\\.|[^'\\])'", "", s)  # char literals such as '{'
            s = re.sub(r'"(\\.|[^"\\])*"', "", s)  # one-line string literals
            if not opened and ";" in s and "{" not in s:
                break  # a declaration (trait method without body)
            for c in s:
                if c == "{":
                    depth += 1
                    opened = True
                elif c == "}":
                    depth -= 1
            if opened and depth <= 0:
                end = j
                break
        if end is not None:
            out.append((f"{path}:{i + 1} {m.group(6)}", end - i + 1))
    return out


def main():
    files = sorted(p for r in ROOTS for p in r.rglob("*.rs"))
    long_fns, big_files = [], []
    pub_items = pub_fields = restricted = 0
    for p in files:
        text = p.read_text()
        n = code_lines(text)
        if n > 400:
            big_files.append((str(p), n))
        for name, n in functions(p, text):
            if n > 100:
                long_fns.append((name, n))
        for l in code_before_tests(text).splitlines():
            if PUB_ITEM.match(l):
                pub_items += 1
            elif PUB_FIELD.match(l):
                pub_fields += 1
            elif PUB_RESTRICTED.match(l):
                restricted += 1
    lib = Path("src/lib.rs").read_text()
    top = [m.group(1) for m in map(TOP_MOD.match, lib.splitlines()) if m]
    print(f"files {len(files)}")
    print(f"top_level_modules {len(top)}")
    print(f"functions_over_100_lines {len(long_fns)}")
    print(f"files_over_400_code_lines {len(big_files)}")
    print(f"pub_items {pub_items}")
    print(f"pub_fields {pub_fields}")
    print(f"restricted_pub {restricted}")
    if "--list" in sys.argv:
        for name, n in sorted(long_fns, key=lambda x: -x[1]):
            print(f"  fn {n:4} {name}")
        for name, n in sorted(big_files, key=lambda x: -x[1]):
            print(f"  file {n:4} {name}")
    if "--deps" in sys.argv:
        out = subprocess.run(
            ["cargo", "tree", "-d", "--depth", "0", "--workspace", "-e", "normal,build"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        dups = sorted({l.split()[0] for l in out.splitlines() if l and l[0].isalpha()})
        print(f"duplicate_crates {len(dups)}")
        print(f"  {' '.join(dups)}")


if __name__ == "__main__":
    main()
