#!/usr/bin/env python3
# bench/gen-config.py OUT DOMAINS PER_FILE [HTTPS_PORT ADMIN_PORT]: the many-domain config the
# scale benches use (bench/check-scale.sh, bench/million.sh): OUT/mta-stsd.toml with [server]
# on loopback, [tls] self_signed, [state] dir = "state", [policy], [dns] and
# `include = ["domains.d/*.toml"]`, plus OUT/domains.d/part-NNNN.toml with PER_FILE domains
# each; about 1 domain in 10 overrides something (alternately `mode = "testing"` and its own mx).
import os, sys

out, total, per_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
https, admin = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else ("8443", "9464")
os.makedirs(os.path.join(out, "domains.d"), exist_ok=True)
with open(os.path.join(out, "mta-stsd.toml"), "w") as f:
    f.write('''include = ["domains.d/*.toml"]

[server]
https = ["127.0.0.1:%s"]
admin = "127.0.0.1:%s"

[tls]
self_signed = true

[state]
dir = "state"

[policy]
mode = "enforce"
mx = ["mail.example.org", "*.mx.example.net"]
max_age = 604800

[dns]
target = "mail.example.org."
ttl = 3600
tlsrpt = ["mailto:tlsrpt@example.org"]
''' % (https, admin))
files = max(1, (total + per_file - 1) // per_file)
width = max(4, len(str(files - 1)))
for n in range(files):
    lo, hi = n * per_file, min(total, (n + 1) * per_file)
    parts = []
    for i in range(lo, hi):
        name = "d%06d.example" % i
        if i % 10 == 3:                   # 1 in 10 overrides something
            if (i // 10) % 2:
                parts.append('[domains."%s"]\nmode = "testing"\n\n' % name)
            else:
                parts.append('[domains."%s"]\nmx = ["mx1.%s", "mx2.%s"]\n\n' % (name, name, name))
        else:
            parts.append('[domains."%s"]\n\n' % name)
    with open(os.path.join(out, "domains.d", "part-%0*d.toml" % (width, n)), "w") as f:
        f.write("".join(parts))
